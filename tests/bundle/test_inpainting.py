import pytest
import torch

from scripts.foundation import PROFILES, build_diffusion_unet, build_scheduler
from scripts.inpainting import latent_inpaint, latent_region


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return build_diffusion_unet(PROFILES["mini"])


def _inputs():
    latent = torch.randn(1, 4, 8, 8, 8, generator=torch.Generator().manual_seed(3))
    region = torch.zeros(1, 1, 8, 8, 8)
    region[..., 2:6, 2:6, 3:7] = 1
    return latent, region


def _run(unet, scheduler, latent, region, seed, **kwargs):
    return latent_inpaint(
        unet,
        scheduler,
        latent,
        region,
        spacing=torch.tensor([[150.0, 150.0, 150.0]]),
        class_labels=torch.tensor([1]),
        num_steps=kwargs.pop("num_steps", 3),
        strength=kwargs.pop("strength", 0.8),
        generator=torch.Generator().manual_seed(seed),
    )


@pytest.mark.parametrize("kind", ["rflow", "ddpm"])
def test_latent_outside_the_region_is_kept_bit_for_bit(unet, kind):
    latent, region = _inputs()
    out = _run(unet, build_scheduler(kind), latent, region, seed=0)
    keep = region.expand_as(latent) == 0
    assert torch.equal(out[keep], latent[keep])
    assert not torch.allclose(out[~keep], latent[~keep])


@pytest.mark.parametrize("kind", ["rflow", "ddpm"])
def test_same_seed_same_output_and_other_seed_differs(unet, kind):
    latent, region = _inputs()
    first = _run(unet, build_scheduler(kind), latent, region, seed=7)
    again = _run(unet, build_scheduler(kind), latent, region, seed=7)
    other = _run(unet, build_scheduler(kind), latent, region, seed=8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_direct_generation_changes_the_whole_latent(unet):
    latent, _ = _inputs()
    out = _run(unet, build_scheduler("rflow"), latent, torch.ones(1, 1, 8, 8, 8), seed=0)
    assert ((out - latent).abs() > 1e-6).float().mean() > 0.99


def test_lower_strength_stays_closer_to_the_input(unet):
    latent, region = _inputs()
    scheduler = build_scheduler("rflow")
    weak = _run(unet, scheduler, latent, region, seed=0, strength=0.1)
    strong = _run(unet, scheduler, latent, region, seed=0, strength=1.0)
    assert (weak - latent).abs().sum() < (strong - latent).abs().sum()


@pytest.mark.parametrize("kwargs,message", [({"num_steps": 0}, "num_steps"), ({"strength": 0.0}, "strength"), ({"strength": 1.5}, "strength")])
def test_bad_knobs_are_rejected(unet, kwargs, message):
    latent, region = _inputs()
    with pytest.raises(ValueError, match=message):
        _run(unet, build_scheduler("rflow"), latent, region, seed=0, **kwargs)


def test_pixel_mask_is_max_pooled_onto_the_latent_grid():
    mask = torch.zeros(1, 1, 16, 16, 16)
    mask[0, 0, 5, 9, 0] = 1
    region = latent_region(mask, (1, 4, 4, 4, 4))
    assert region.shape == (1, 1, 4, 4, 4) and region.sum() == 1 and region[0, 0, 1, 2, 0] == 1
    with pytest.raises(ValueError, match="not a multiple"):
        latent_region(torch.zeros(1, 1, 15, 16, 16), (1, 4, 4, 4, 4))
