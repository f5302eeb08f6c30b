"""Weights files: the official formats round-trip on the official architectures, and a wrong,
truncated, foreign or missing file is one error line naming it."""

import pytest
import torch

from scripts.checkpoints import CheckpointError, load_diffusion_weights, load_vae_weights, save_diffusion_weights, save_vae_weights
from scripts.foundation import PROFILES, build_diffusion_unet, build_vae


def _tensors_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items())


@pytest.mark.slow
def test_official_maisi_architectures_round_trip_through_official_checkpoint_formats(tmp_path):
    torch.manual_seed(1)
    vae, unet = build_vae(PROFILES["maisi"]), build_diffusion_unet(PROFILES["maisi"])
    # Official hyper-parameters: the published parameter counts of MAISI's VAE and rflow UNet.
    assert sum(p.numel() for p in vae.parameters()) == 20_944_897
    assert sum(p.numel() for p in unet.parameters()) == 180_500_868
    vae_file, unet_file = tmp_path / "autoencoder_v2.pt", tmp_path / "diff_unet_3d_rflow-mr.pt"
    torch.save(vae.state_dict(), vae_file)  # the official VAE format: a plain state_dict
    torch.save({"unet_state_dict": unet.state_dict(), "scale_factor": torch.tensor(1.0055)}, unet_file)

    torch.manual_seed(2)
    vae2, unet2 = build_vae(PROFILES["maisi"]), build_diffusion_unet(PROFILES["maisi"])
    assert not _tensors_equal(vae, vae2)
    load_vae_weights(vae2, vae_file)
    scale_factor = load_diffusion_weights(unet2, unet_file)
    assert _tensors_equal(vae, vae2) and _tensors_equal(unet, unet2)
    assert scale_factor == pytest.approx(1.0055)


def test_project_writers_produce_the_official_formats(tmp_path):
    vae, unet = build_vae(PROFILES["mini"]), build_diffusion_unet(PROFILES["mini"])
    save_vae_weights(vae, tmp_path / "vae.pt")
    save_diffusion_weights(unet, 0.5, tmp_path / "unet.pt")
    assert set(torch.load(tmp_path / "vae.pt", weights_only=True)) == set(vae.state_dict())
    checkpoint = torch.load(tmp_path / "unet.pt", weights_only=True)
    assert set(checkpoint) == {"unet_state_dict", "scale_factor"}
    assert load_diffusion_weights(build_diffusion_unet(PROFILES["mini"]), tmp_path / "unet.pt") == pytest.approx(0.5)


def test_weights_of_the_wrong_profile_name_the_file_and_the_mismatched_keys(tmp_path):
    path = tmp_path / "mini_autoencoder.pt"
    save_vae_weights(build_vae(PROFILES["mini"]), path)
    with pytest.raises(CheckpointError, match=r"VAE weights file .*mini_autoencoder\.pt does not fit.*\d+ shape-mismatched keys \(decoder\.blocks"):
        load_vae_weights(build_vae(PROFILES["maisi"]), path)


def test_checkpoint_with_missing_and_unexpected_keys_lists_them(tmp_path):
    vae = build_vae(PROFILES["mini"])
    state = vae.state_dict()
    state["encoder.extra.weight"] = state.pop("quant_conv_mu.conv.weight")
    torch.save(state, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match=r"1 missing keys \(quant_conv_mu\.conv\.weight\); 1 unexpected keys \(encoder\.extra\.weight\)"):
        load_vae_weights(vae, tmp_path / "renamed.pt")


def test_truncated_checkpoint_is_reported_not_raised_raw(tmp_path):
    path = tmp_path / "vae.pt"
    save_vae_weights(build_vae(PROFILES["mini"]), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"cannot read weights file .*vae\.pt"):
        load_vae_weights(build_vae(PROFILES["mini"]), path)


def test_diffusion_checkpoint_needs_state_dict_and_scale_factor(tmp_path):
    unet = build_diffusion_unet(PROFILES["mini"])
    torch.save({"unet_state_dict": unet.state_dict()}, tmp_path / "no_scale.pt")
    torch.save(unet.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no 'scale_factor'"):
        load_diffusion_weights(unet, tmp_path / "no_scale.pt")
    with pytest.raises(CheckpointError, match="no 'unet_state_dict'"):
        load_diffusion_weights(unet, tmp_path / "plain.pt")


def test_pickled_code_in_a_checkpoint_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot read weights file"):
        load_vae_weights(build_vae(PROFILES["mini"]), tmp_path / "evil.pt")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"weights file not found: .*absent\.pt"):
        load_vae_weights(build_vae(PROFILES["mini"]), tmp_path / "absent.pt")
