"""Profiles, builders and conditioning of the frozen foundation."""

import pytest
import torch

from scripts.foundation import PROFILES, build_diffusion_unet, build_scheduler, build_vae, modality_class_label, runtime_settings


def test_cpu_settings_disable_flash_attention_fp16_norms_and_splitting():
    assert runtime_settings("cpu") == {"use_flash_attention": False, "norm_float16": False, "num_splits": 1}
    assert runtime_settings("cuda")["use_flash_attention"] is True


def test_profile_divisors_follow_the_networks_downsampling():
    assert PROFILES["mini"].divisor == 16
    assert PROFILES["maisi"].divisor == 32


def test_mini_networks_run_on_cpu_at_the_profile_divisor():
    vae, unet = build_vae(PROFILES["mini"]), build_diffusion_unet(PROFILES["mini"])
    x = torch.rand(1, 1, 16, 16, 32)
    z = vae.encode_stage_2_inputs(x)
    assert z.shape == (1, 4, 4, 4, 8)
    v = unet(z, torch.tensor([500.0]), spacing_tensor=torch.tensor([[150.0, 150.0, 150.0]]), class_labels=torch.tensor([1]))
    assert v.shape == z.shape and torch.isfinite(v).all()
    assert vae.decode_stage_2_outputs(z).shape == x.shape


def test_modality_labels_follow_maisi_mapping():
    assert modality_class_label("CT") == 1 and modality_class_label("MR") == 8


def test_unknown_scheduler_is_rejected_naming_the_valid_ones():
    with pytest.raises(ValueError, match="scheduler must be 'rflow' or 'ddpm', got 'euler'"):
        build_scheduler("euler")


def test_schedulers_are_named_by_their_kind_or_its_text():
    from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

    from scripts.foundation import SchedulerKind

    assert isinstance(build_scheduler(SchedulerKind.DDPM), DDPMScheduler)
    assert isinstance(build_scheduler("rflow"), RFlowScheduler)
    assert SchedulerKind.parse("ddpm") is SchedulerKind.DDPM


def test_fused_group_norm_computes_what_maisi_group_norm_computes():
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import MaisiGroupNorm3D

    from scripts.foundation import FusedMaisiGroupNorm3D, fuse_group_norms

    torch.manual_seed(0)
    norm = MaisiGroupNorm3D(8, 32, eps=1e-6, save_mem=False)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 32, 6, 5, 4) * 3 + 1
    expected = norm(x.clone())
    fuse_group_norms(norm)
    assert type(norm) is FusedMaisiGroupNorm3D
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)
    assert any(type(m) is FusedMaisiGroupNorm3D for m in build_vae(PROFILES["mini"]).modules())
