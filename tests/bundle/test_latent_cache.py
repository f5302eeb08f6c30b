"""The diffusion stage's latent cache: the latent of a volume as inference encodes it, one cache
folder per VAE weights, and latent crops that cover the image patch."""

import pytest
import torch

from scripts.checkpoints import save_vae_weights
from scripts.foundation import PROFILES, build_vae
from scripts.latent_cache import EncodeLatentd, latent_cache_dir, latent_patch_size, latent_scale_factor_of_latents


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return build_vae(PROFILES["mini"], "cpu")


def test_the_latent_of_a_one_window_volume_is_the_vaes_latent_mean(vae):
    image = torch.rand(1, 128, 128, 128)
    item = EncodeLatentd("image", vae, profile=PROFILES["mini"])({"image": image, "spacing": torch.ones(3)})
    with torch.no_grad():
        expected = vae.encode(image[None])[0][0]  # z_mu, the latent inference uses
    assert item["latent"].shape == (4, 32, 32, 32)
    assert torch.allclose(item["latent"], expected, atol=1e-5)
    assert "image" not in item and "spacing" in item  # the cache holds latents, not images


def test_a_volume_smaller_than_the_window_gets_a_latent_of_its_own_size(vae):
    item = EncodeLatentd("image", vae, profile=PROFILES["mini"], drop_image=False)({"image": torch.rand(1, 48, 64, 32)})
    assert item["latent"].shape == (4, 12, 16, 8) and item["image"].shape == (1, 48, 64, 32)


def test_the_cache_folder_is_named_by_the_weights_file(vae, tmp_path):
    first, copy = tmp_path / "a.pt", tmp_path / "copy.pt"
    save_vae_weights(vae, first)
    copy.write_bytes(first.read_bytes())
    assert latent_cache_dir(tmp_path / "cache", first, PROFILES["mini"]) == latent_cache_dir(tmp_path / "cache", copy, PROFILES["mini"])
    with torch.no_grad():
        next(vae.parameters()).add_(1e-3)
    save_vae_weights(vae, copy)  # retrained weights
    assert latent_cache_dir(tmp_path / "cache", first, PROFILES["mini"]) != latent_cache_dir(tmp_path / "cache", copy, PROFILES["mini"])
    assert latent_cache_dir(tmp_path / "cache", first, PROFILES["mini"]).startswith(str(tmp_path / "cache" / "mini-"))


def test_the_latent_crop_covers_the_image_patch():
    assert latent_patch_size([64, 64, 32], PROFILES["mini"]) == [16, 16, 8]
    with pytest.raises(ValueError, match="multiple of the VAE's downsampling 4"):
        latent_patch_size([64, 62, 64], PROFILES["mini"])


def test_the_scale_factor_makes_the_latents_unit_variance():
    dataset = [{"latent": 3.0 * torch.randn(4, 8, 8, 8)} for _ in range(4)]
    assert latent_scale_factor_of_latents(dataset) == pytest.approx(1 / 3.0, rel=0.05)
    with pytest.raises(ValueError, match="constant"):
        latent_scale_factor_of_latents([{"latent": torch.zeros(4, 2, 2, 2)}])
