import pytest
import torch

from scripts.features import DEFAULT_TAPS, encode_with_features
from scripts.foundation import PROFILES, build_vae


def test_taps_give_full_half_and_quarter_resolution_with_profile_channels():
    vae = build_vae(PROFILES["mini"])
    features = encode_with_features(vae, torch.rand(1, 1, 16, 16, 16))
    assert [tuple(f.shape) for f in features.levels] == [(1, c, s, s, s) for c, s in zip(PROFILES["mini"].feature_channels, (16, 8, 4))]


def test_latent_equals_the_vae_encoder_mean():
    vae = build_vae(PROFILES["mini"])
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        z_mu, _ = vae.encode(x)
        features = encode_with_features(vae, x)
    torch.testing.assert_close(features.latent, z_mu)
    assert DEFAULT_TAPS == (2, 5, 8)


def test_taps_outside_the_encoder_are_rejected():
    with pytest.raises(ValueError, match="must index the encoder"):
        encode_with_features(build_vae(PROFILES["mini"]), torch.rand(1, 1, 8, 8, 8), taps=(2, 40))
