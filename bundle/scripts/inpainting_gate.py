"""What latent space inpainting does to a known lesion: the diffusion stage's gate.

The campaign's gate for the frozen diffusion model (issue "training campaign", method.md section
5): with the true lesion mask, dilated, as the coarse mask,

* the lesion's contrast to its host organ falls by at least 70% in the pseudo-healthy image, and
* outside the lesion but inside the mask, the pseudo-healthy image stays within 1.5 times the
  VAE's own reconstruction error there (the inpainting may not do worse than encoding and
  decoding the scan).

:func:`inpainting_effect` measures both on one working-grid volume with the same
:meth:`FrozenFoundation.pseudo_healthy` as inference; the diffusion stage's validation
(:class:`scripts.training_handlers.InpaintingHistory`) and ``benchmarks/inpainting_gate.py``
average it over cases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from monai.transforms.utils_morphological_ops import dilate

from .aova import coarse_mask
from .method import FrozenFoundation

__all__ = ["CONTRAST_DROP", "OUTSIDE_ERROR_RATIO", "InpaintingEffect", "inpainting_effect", "gate_passed"]

#: The gate: contrast falls by at least this fraction, and the error outside the lesion stays
#: within this multiple of the VAE's reconstruction error.
CONTRAST_DROP, OUTSIDE_ERROR_RATIO = 0.70, 1.5


@dataclass(frozen=True)
class InpaintingEffect:
    """One case.

    Attributes:
        contrast_before: host ring mean minus lesion mean in the scan (image units, [0, 1]).
        contrast_after: the same in the pseudo-healthy image (the host ring is kept outside the
            mask, so only the lesion's side changes).
        contrast_drop: ``1 - |after| / |before|``, 1 = the lesion is gone.
        outside_error: mean |pseudo-healthy - scan| inside the mask, outside the lesion.
        vae_error: mean |reconstruction - scan| on the same voxels.
        outside_ratio: ``outside_error / vae_error``.
    """

    contrast_before: float
    contrast_after: float
    contrast_drop: float
    outside_error: float
    vae_error: float
    outside_ratio: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def _host_ring(lesion: torch.Tensor, organs: torch.Tensor, width: int) -> torch.Tensor:
    """Voxels of the lesion's host organ (its most frequent label) within ``width`` voxels of it."""
    labels = organs[lesion].round().long()
    host = organs.round().long() == int(torch.mode(labels).values) if labels.numel() else torch.zeros_like(lesion)
    near = dilate(lesion[None, None].float(), filter_size=2 * width + 1)[0, 0] > 0
    ring = host & near & ~lesion
    return ring if ring.any() else host & ~lesion


@torch.no_grad()
def inpainting_effect(
    foundation: FrozenFoundation,
    image: torch.Tensor,
    lesion: torch.Tensor,
    organs: torch.Tensor,
    *,
    spacing: torch.Tensor,
    class_labels: torch.Tensor,
    num_steps: int = 10,
    strength: float = 0.8,
    dilation: int = 2,
    ring: int = 3,
    seed: int = 0,
) -> InpaintingEffect:
    """Inpaint the dilated ``lesion`` of ``image`` and measure the gate's two quantities.

    Args:
        foundation: the frozen VAE and the diffusion UNet under test.
        image: (1, 1, X, Y, Z) working-grid volume in [0, 1], each size a multiple of the
            profile's divisor.
        lesion: (X, Y, Z) boolean tumor mask, not empty.
        organs: (X, Y, Z) organ label map (the lesion's voxels carry its host's label).
        spacing, class_labels: the UNet's conditioning (mm x 100, (1, 3); modality label, (1,)).
        num_steps, strength: the inference defaults of the profile.
        dilation: coarse-mask margin in voxels, as ``coarse_mask`` applies it.
        ring: width in voxels of the host-organ shell the lesion is compared with.
        seed: the diffusion noise.

    Raises:
        ValueError: for an empty lesion.
    """
    lesion = lesion.bool()
    if not lesion.any():
        raise ValueError("the lesion mask is empty: nothing to inpaint")
    region = coarse_mask(lesion[None, None].float(), 0.5, dilation)
    features = foundation.encode(image)
    generator = torch.Generator(device=image.device).manual_seed(seed)
    pseudo = foundation.pseudo_healthy(
        image, features.latent, region, num_steps=num_steps, strength=strength, spacing=spacing, class_labels=class_labels, generator=generator
    )[0, 0]
    reconstruction = foundation.decode(features.latent * foundation.scale_factor)[0, 0]
    scan = image[0, 0]
    host = _host_ring(lesion, organs.to(scan.device), ring)
    before = float(scan[host].mean() - scan[lesion].mean())
    after = float(pseudo[host].mean() - pseudo[lesion].mean())
    margin = (region[0, 0] > 0) & ~lesion
    margin = margin if margin.any() else lesion
    outside = float((pseudo - scan).abs()[margin].mean())
    vae = float((reconstruction - scan).abs()[margin].mean())
    return InpaintingEffect(
        contrast_before=before,
        contrast_after=after,
        contrast_drop=1.0 - abs(after) / max(abs(before), 1e-6),
        outside_error=outside,
        vae_error=vae,
        outside_ratio=outside / max(vae, 1e-6),
    )


def gate_passed(summary: dict[str, Any], contrast_drop: float = CONTRAST_DROP, outside_ratio: float = OUTSIDE_ERROR_RATIO) -> bool:
    """Whether case means ``{contrast_drop, outside_ratio}`` meet the gate."""
    return summary.get("contrast_drop", -1.0) >= contrast_drop and summary.get("outside_ratio", float("inf")) <= outside_ratio
