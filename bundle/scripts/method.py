"""The DiffuGTS patch step, one function shared by inference and training.

:func:`segment_patch` runs the method on one working-grid patch (method.md sections 4-6):
frozen encoder features -> AOVA map -> coarse mask -> latent space inpainting -> pseudo-healthy
image -> pixel and feature residuals -> refiner. The pipeline's sliding-window predictor calls it
for every patch and prompt; the refiner's training calls :func:`pseudo_healthy_inputs`, the same
code up to the refiner, so the refiner is trained on exactly the inputs it sees at inference.

:class:`FrozenFoundation` owns the frozen MAISI networks of a profile and their latent scale
factor, as MONAI's ``LatentDiffusionInfererMaisi`` owns its ``scale_factor``: latents are
multiplied by it after encoding and divided by it before decoding, nowhere else.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch

from .aova import coarse_mask
from .features import EncoderFeatures, encode_with_features
from .heads import DiffuGTSHeads
from .inpainting import InpaintingMode, latent_inpaint, latent_region
from .residual import feature_residuals

__all__ = ["FrozenFoundation", "PatchSettings", "PatchOutputs", "pseudo_healthy_inputs", "segment_patch"]

Timer = Callable[[str], ContextManager[None]]


def _no_timer(stage: str) -> ContextManager[None]:
    return contextlib.nullcontext()


@dataclass
class FrozenFoundation:
    """The frozen VAE and diffusion UNet of a profile, their scheduler and latent scale factor."""

    vae: torch.nn.Module
    unet: torch.nn.Module
    scheduler: Any
    scale_factor: float

    def encode(self, image: torch.Tensor) -> EncoderFeatures:
        """Encoder features of ``image`` (B, 1, ...) in [0, 1]; ``latent`` is z_mu, unscaled."""
        return encode_with_features(self.vae, image)

    def decode(self, scaled_latent: torch.Tensor) -> torch.Tensor:
        """The image of a scaled latent, clamped to [0, 1]."""
        return self.vae.decode_stage_2_outputs(scaled_latent / self.scale_factor).clamp(0, 1)


@dataclass(frozen=True)
class PatchSettings:
    """The knobs of the patch step (see ``PipelineConfig`` for their ranges)."""

    coarse_threshold: float
    coarse_dilation: int = 2
    inpainting: InpaintingMode = InpaintingMode.LATENT
    num_steps: int = 10
    strength: float = 0.8
    confine_to_coarse_mask: bool = True
    progress: bool = False


@dataclass
class PatchOutputs:
    """What the patch step computes for one prompt, all on the patch grid (B, C, ...).

    Attributes:
        aova_map: AOVA map in [0, 1].
        coarse: the coarse mask (thresholded, dilated AOVA map).
        region: what was regenerated: the coarse mask, or everything for direct generation.
        pseudo_healthy: the pseudo-healthy image in [0, 1] (the patch itself where nothing was
            inpainted).
        residuals: the feature residuals per level, upsampled to the patch grid.
        probability: the refiner's tumor probability (confined to the coarse mask when set);
            None from :func:`pseudo_healthy_inputs`.
    """

    aova_map: torch.Tensor
    coarse: torch.Tensor
    region: torch.Tensor
    pseudo_healthy: torch.Tensor
    residuals: list[torch.Tensor]
    probability: torch.Tensor | None = None


def pseudo_healthy_inputs(
    foundation: FrozenFoundation,
    heads: DiffuGTSHeads,
    patch: torch.Tensor,
    features: EncoderFeatures,
    keys: torch.Tensor,
    abnormal: torch.Tensor,
    settings: PatchSettings,
    *,
    spacing: torch.Tensor,
    class_labels: torch.Tensor,
    generator: torch.Generator,
    timer: Timer = _no_timer,
) -> PatchOutputs:
    """Everything the refiner reads, for one prompt: AOVA map, coarse mask, pseudo-healthy image
    and feature residuals (no gradient).

    Args:
        foundation: the frozen networks.
        heads: the AOVA head and refiner.
        patch: (B, 1, ...) working-grid patch in [0, 1].
        features: ``foundation.encode(patch)`` (shared by the prompts of a patch).
        keys, abnormal: the prompt's attribute embeddings and its abnormal-key mask.
        settings: thresholds, inpainting mode and steps.
        spacing: the UNet's spacing input (B, 3), mm x 100.
        class_labels: the UNet's modality label (B,).
        generator: the diffusion noise (seeded by the caller).
        timer: a context-manager factory per stage name, for stage times.
    """
    with torch.no_grad():
        with timer("aova"):
            aova_map = heads.aova(features.levels, keys, abnormal).aova_map
            coarse = coarse_mask(aova_map, settings.coarse_threshold, settings.coarse_dilation)
            # Direct generation (the ablation) regenerates the whole patch, not only the coarse mask.
            region = torch.ones_like(coarse) if settings.inpainting is InpaintingMode.DIRECT else coarse
        with timer("inpainting"):
            pseudo_healthy = patch
            if region.any():
                latent = features.latent * foundation.scale_factor
                inpainted = latent_inpaint(
                    foundation.unet, foundation.scheduler, latent, latent_region(region, latent.shape),
                    spacing=spacing, class_labels=class_labels, num_steps=settings.num_steps,
                    strength=settings.strength, generator=generator, progress=settings.progress,
                )
                # Blend in pixel space: outside the region the scan is kept as it is.
                pseudo_healthy = region * foundation.decode(inpainted) + (1 - region) * patch
        with timer("residual"):
            # Nothing inpainted: every residual is zero, and the encoder need not run again.
            pseudo_levels = features.levels if pseudo_healthy is patch else foundation.encode(pseudo_healthy).levels
            residuals = feature_residuals(features.levels, pseudo_levels, patch.shape[2:])
    return PatchOutputs(aova_map=aova_map, coarse=coarse, region=region, pseudo_healthy=pseudo_healthy, residuals=residuals)


def segment_patch(
    foundation: FrozenFoundation,
    heads: DiffuGTSHeads,
    patch: torch.Tensor,
    features: EncoderFeatures,
    keys: torch.Tensor,
    abnormal: torch.Tensor,
    settings: PatchSettings,
    *,
    spacing: torch.Tensor,
    class_labels: torch.Tensor,
    generator: torch.Generator,
    timer: Timer = _no_timer,
) -> PatchOutputs:
    """The whole patch step for one prompt: :func:`pseudo_healthy_inputs`, then the refiner's
    tumor probability (arguments as there)."""
    outputs = pseudo_healthy_inputs(
        foundation, heads, patch, features, keys, abnormal, settings,
        spacing=spacing, class_labels=class_labels, generator=generator, timer=timer,
    )
    with torch.no_grad(), timer("residual"):
        logits = heads.refiner(patch, outputs.pseudo_healthy, outputs.aova_map, outputs.residuals)
    probability = torch.sigmoid(logits.float())
    if settings.confine_to_coarse_mask:
        probability = probability * outputs.coarse
    outputs.probability = probability
    return outputs
