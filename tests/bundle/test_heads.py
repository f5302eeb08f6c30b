"""The trainable heads: one module for both stages, a tensor-forward twin with the same weights,
profile-sized construction, and strict loading that names a wrong file."""

import pytest
import torch

from scripts.checkpoints import CheckpointError
from scripts.foundation import PROFILES, get_profile
from scripts.heads import DiffuGTSHeads, DiffuGTSNetwork, heads_for_profile, load_heads_weights, network_for_profile

CHANNELS = (4, 8, 8)


def _features(size=8):
    return [torch.rand(1, c, size // 2**i, size // 2**i, size // 2**i) for i, c in enumerate(CHANNELS)]


def test_the_stage_argument_runs_the_aova_head_or_the_refiner_and_refuses_anything_else():
    torch.manual_seed(0)
    heads = DiffuGTSHeads(CHANNELS, text_dim=6, embed_dim=4, refiner_channels=(4, 8))
    keys = torch.rand(3, 6)
    aova_map = heads("aova", _features(), keys, torch.tensor([True, False, False]))
    assert tuple(aova_map.shape) == (1, 1, 8, 8, 8) and float(aova_map.min()) >= 0 and float(aova_map.max()) <= 1
    image = torch.rand(1, 1, 8, 8, 8)
    logits = heads("refiner", image, image.flip(2), aova_map, torch.rand(1, len(CHANNELS), 8, 8, 8))
    assert tuple(logits.shape) == (1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="stage must be 'aova' or 'refiner'"):
        heads("decoder", image)


def test_the_network_def_twin_shares_the_state_dict_and_returns_the_refiners_probability():
    torch.manual_seed(0)
    heads = DiffuGTSHeads(CHANNELS, text_dim=6, embed_dim=4, refiner_channels=(4, 8))
    twin = DiffuGTSNetwork(CHANNELS, text_dim=6, embed_dim=4, refiner_channels=(4, 8))
    twin.load_state_dict(heads.state_dict())
    image, healthy, aova_map, features = torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8), torch.rand(1, 3, 8, 8, 8)
    stack = torch.cat([image, healthy, (image - healthy).abs(), aova_map, features], dim=1)
    torch.testing.assert_close(twin(stack), torch.sigmoid(heads("refiner", image, healthy, aova_map, features)))


def test_profile_sized_heads_take_the_profiles_options_and_accept_overrides():
    profile = get_profile("mini")
    heads = heads_for_profile(PROFILES["mini"])
    assert heads.refiner.in_channels == 4 + len(profile.feature_channels)
    assert set(network_for_profile(PROFILES["mini"]).state_dict()) == set(heads.state_dict())
    assert heads_for_profile(PROFILES["mini"], refiner_channels=(8, 16)).refiner.network.model[0].conv.unit0.conv.out_channels == 8


def test_loading_checks_the_file_against_the_network(tmp_path):
    torch.manual_seed(0)
    source = heads_for_profile(PROFILES["mini"])
    path = tmp_path / "diffugts_heads.pt"
    torch.save(source.state_dict(), path)
    target = heads_for_profile(PROFILES["mini"])
    load_heads_weights(target, path)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))
    torch.save(heads_for_profile(PROFILES["mini"], refiner_channels=(8, 16)).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"diffugts_heads.pt does not fit the network .*shape-mismatched"):
        load_heads_weights(target, path)
