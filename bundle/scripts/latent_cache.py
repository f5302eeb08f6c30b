"""Latents of the frozen VAE, computed once per volume and per VAE weights, for diffusion training.

The diffusion stage learns on latents of a frozen encoder. Encoding random image patches again at
every iteration spends most of a training step in that encoder, for an output that never changes
while the VAE stays the same. :class:`EncodeLatentd` replaces an item's image by the latent mean
(``z_mu``, before the scale factor) of its whole working-grid volume, encoded window by window
with the profile's patch as inference encodes it (MONAI's ``SlidingWindowInferer``); MONAI's
``PersistentDataset`` keeps the result on disk in a folder named by the VAE weights' sha256
(:func:`latent_cache_dir`), so a retrained VAE gets a new cache and a later sitting reuses the
old one. Random crops are then taken on the latent grid (:func:`latent_patch_size`).
``benchmarks/diffusion_step.py`` prints the step time with and without the cache.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.config import KeysCollection
from monai.inferers import SlidingWindowInferer
from monai.transforms import MapTransform

from .checkpoints import file_sha256
from .foundation import FoundationProfile

if TYPE_CHECKING:
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi

__all__ = ["EncodeLatentd", "latent_cache_dir", "latent_patch_size", "latent_scale_factor_of_latents"]


def latent_cache_dir(root: str | os.PathLike, vae_weights: str | os.PathLike, profile: FoundationProfile) -> str:
    """``root/<profile>-<first 16 hex digits of the VAE file's sha256>``: one cache per weights."""
    return str(Path(root) / f"{profile.name}-{file_sha256(vae_weights)[:16]}")


def latent_patch_size(patch_size: Sequence[int], profile: FoundationProfile) -> list[int]:
    """The latent crop that covers an image patch of ``patch_size`` voxels."""
    factor = 2 ** (len(profile.vae["num_channels"]) - 1)
    if any(int(s) % factor for s in patch_size):
        raise ValueError(f"patch_size {list(patch_size)} must be a multiple of the VAE's downsampling {factor}")
    return [int(s) // factor for s in patch_size]


class EncodeLatentd(MapTransform):
    """Replace ``item[key]`` (a working-grid volume, (1, X, Y, Z) in [0, 1]) by its latent mean.

    The image is dropped from the item (``drop_image``) so that the cache holds latents only: a
    128^3 CT is 8 MB as an image and 0.5 MB as a mini latent.

    Args:
        keys: the image key.
        vae: the frozen ``AutoencoderKlMaisi``.
        profile: its profile, whose patch is the encoding window, as at inference.
        latent_key: where the latent goes.
        device: where the VAE runs.
        overlap: window overlap of the sliding-window encoding.
        drop_image: remove the image from the item.
    """

    def __init__(
        self,
        keys: KeysCollection,
        vae: AutoencoderKlMaisi,
        profile: FoundationProfile,
        latent_key: str = "latent",
        device: torch.device | str = "cpu",
        overlap: float = 0.25,
        drop_image: bool = True,
    ) -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError(f"keys must name the image only, got {self.keys!r}")
        self.vae = vae.eval().requires_grad_(False)
        self.latent_key, self.device, self.drop_image = latent_key, torch.device(device), drop_image
        self.inferer = SlidingWindowInferer(roi_size=list(profile.patch_size), sw_batch_size=1, overlap=overlap, mode="gaussian")

    @torch.no_grad()
    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        (key,) = self.keys
        image = torch.as_tensor(item[key]).as_subclass(torch.Tensor)  # a MetaTensor's metadata stays out of the cache
        # z_mu, as inference encodes (``encode_stage_2_inputs`` would draw a sample around it).
        latent = self.inferer(image[None].float().to(self.device), lambda x: self.vae.encode(x)[0])
        item[self.latent_key] = latent[0].cpu()
        if self.drop_image:
            del item[key]
        return item


def latent_scale_factor_of_latents(dataset: Any, count: int = 8, key: str = "latent") -> float:
    """MAISI's scale factor (1 / std of the latents) over the first ``count`` items' latents."""
    latents = torch.cat([torch.as_tensor(dataset[i][key]).flatten() for i in range(min(count, len(dataset)))])
    std = float(latents.std())
    if not std > 0:
        raise ValueError("the cached latents are constant: the VAE weights are broken")
    return 1.0 / std
