"""DiffuGTS end to end: a volume, its geometry, modality and prompts in; mask and probability out,
and the AOVA map and pseudo-healthy image when asked for (``PipelineConfig.maps``), each on the
input grid.

Stages (method.md): intensity normalisation and working grid -> frozen VAE encoder features ->
AOVA map and coarse mask -> latent space inpainting with the frozen diffusion UNet -> pixel and
feature residuals -> refiner -> threshold and clean-up. Large volumes run patch by patch through
MONAI's ``SlidingWindowInferer`` so memory is bounded by the patch size, not the volume.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer

from .checkpoints import file_sha256, load_diffusion_weights, load_vae_weights
from .errors import UserError
from .foundation import FoundationProfile, SchedulerKind, build_diffusion_unet, build_scheduler, build_vae, modality_class_label, spacing_condition
from .heads import DiffuGTSHeads, heads_for_profile, load_heads_weights
from .inpainting import InpaintingMode
from .memory_budget import check_memory_budget
from .method import FrozenFoundation, PatchSettings, segment_patch
from .preprocessing import (
    Modality,
    VolumeGeometry,
    as_volume,
    denormalize_intensity,
    intensity_window,
    normalize_intensity,
)
from .residual import bounding_box, postprocess_mask
from .text import PromptBuilder, PromptEmbedding, PromptSet, SentenceEncoder

if TYPE_CHECKING:
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi

__all__ = ["OutputMap", "OPTIONAL_MAPS", "PipelineConfig", "SegmentationResult", "PipelineOutput", "DiffuGTSPipeline", "build_pipeline", "WEIGHT_FILES"]

logger = logging.getLogger(__name__)


class OutputMap(StrEnum):
    """The maps a run brings back for each prompt, on the input grid (``SegmentationResult``'s
    fields of the same names; the bundle's file suffixes and the app's options use these names)."""

    MASK = "mask"
    PROBABILITY = "probability"
    AOVA_MAP = "aova_map"
    PSEUDO_HEALTHY = "pseudo_healthy"


#: Maps a caller may ask for besides the mask and the probability (``PipelineConfig.maps``).
OPTIONAL_MAPS = (OutputMap.AOVA_MAP, OutputMap.PSEUDO_HEALTHY)
#: What a patch hands the sliding-window inferer besides the maps: where it was inpainted (the
#: weight that blends the pseudo-healthy patch into the scan).
_INPAINTED_REGION = "inpainted_region"


def _patch_key(name: str, prompt_index: int) -> str:
    """The key of one prompt's map in the dictionary the sliding-window inferer stitches."""
    return f"{name}_{prompt_index}"


#: File names of a profile's weights folder (``bundle/models/<profile>/``).
WEIGHT_FILES = {"vae": "autoencoder.pt", "diffusion": "diffusion_unet.pt", "heads": "diffugts_heads.pt"}


def _number(name: str, value: Any, valid: str, ok: Any) -> float:
    """``value`` as a finite float satisfying ``ok``; ``UserError`` naming the knob otherwise."""
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number) or not ok(number):
        raise UserError(f"{name} must be a number {valid}, got {value!r}")
    return number


def _integer(name: str, value: Any, valid: str, minimum: int) -> int:
    try:
        return int(_number(name, value, valid, lambda v: v == int(v) and v >= minimum))
    except UserError:
        raise UserError(f"{name} must be an integer {valid}, got {value!r}") from None


def checked_seed(seed: Any) -> int:
    """The ``seed`` setting as an integer >= 0; ``UserError`` otherwise."""
    return _integer("seed", seed, ">= 0", 0)


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise UserError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def _triple(name: str, value: Any, valid: str, ok: Any) -> tuple[float, float, float]:
    """Three numbers each satisfying ``ok`` (a list or tuple, as configs and the command line give it)."""
    items = list(value) if isinstance(value, (list, tuple)) else None
    try:
        if items is None or len(items) != 3:
            raise UserError(name)
        return tuple(_number(name, item, valid, ok) for item in items)  # type: ignore[return-value]
    except UserError:
        raise UserError(f"{name} must be {valid}, got {value!r}") from None


@dataclass(frozen=True)
class PipelineConfig:
    """Knobs of a run, with their valid ranges.

    Attributes:
        num_steps: diffusion steps of the inpainting, >= 1 (None: the profile's default).
        strength: noise level the inpainted region starts from, in (0, 1].
        inpainting: ``latent`` (regenerate the coarse-mask region; the method) or ``direct``
            (regenerate the whole latent; ablation).
        scheduler: ``rflow`` (MAISI rectified flow) or ``ddpm`` (:class:`~.foundation.SchedulerKind`).
        coarse_threshold: AOVA level that enters the coarse mask, in (0, 1) (None: the profile's).
        coarse_dilation: margin added to the coarse mask, in working-grid voxels, >= 0.
        threshold: probability above which a voxel is tumor, in (0, 1).
        confine_to_coarse_mask: keep the final mask inside the coarse mask. [ours] Outside it the
            scan was not inpainted, so no residual speaks for a tumor there; without this the
            refiner alone answers healthy scans and misleading prompts.
        min_tumor_volume_ml: connected components smaller than this are removed, >= 0.
        overlap: overlap of sliding-window patches, in [0, 1).
        patch_size: patch in working-grid voxels, each a multiple of the profile divisor
            (None: the profile's).
        working_spacing: voxel size (mm) to run at (None: the profile's for the modality, else
            the input's own).
        seed: seeds the diffusion noise; the same seed gives the same output.
        memory_budget_gb: a volume whose estimated peak memory exceeds this many GiB is refused
            before it is processed (None: the memory available at the time).
        progress: show progress bars.
        maps: the maps besides the mask and probability that are brought back to the input grid:
            any of ``aova_map`` and ``pseudo_healthy`` (the others are ``None`` in the result).
            Each is as large as the input volume; leave out what the caller does not use.
    """

    num_steps: int | None = None
    strength: float = 0.8
    inpainting: InpaintingMode = InpaintingMode.LATENT
    scheduler: SchedulerKind = SchedulerKind.RFLOW
    coarse_threshold: float | None = None
    coarse_dilation: int = 2
    threshold: float = 0.5
    confine_to_coarse_mask: bool = True
    min_tumor_volume_ml: float = 0.05
    overlap: float = 0.25
    patch_size: tuple[int, int, int] | None = None
    working_spacing: tuple[float, float, float] | None = None
    seed: int = 0
    memory_budget_gb: float | None = None
    progress: bool = True
    maps: tuple[OutputMap, ...] = OPTIONAL_MAPS

    def validated(self, profile: FoundationProfile) -> PipelineConfig:
        """A copy with defaults filled in from ``profile`` and every knob of its type.

        A value of the wrong type or out of range (``strength "0.8."``, ``working_spacing [0, 0, 0]``,
        ``working_spacing 3``) is a ``UserError`` naming the knob, its valid range and the value.
        """
        steps = _integer("num_steps", profile.num_inference_steps if self.num_steps is None else self.num_steps, ">= 1", 1)
        strength = _number("strength", self.strength, "in (0, 1]", lambda v: 0.0 < v <= 1.0)
        coarse_threshold = _number(
            "coarse_threshold",
            profile.coarse_threshold if self.coarse_threshold is None else self.coarse_threshold,
            "in (0, 1)",
            lambda v: 0.0 < v < 1.0,
        )
        patch = _triple(
            "patch_size",
            self.patch_size or profile.patch_size,
            f"three multiples of {profile.divisor}",
            lambda v: v > 0 and v == int(v) and int(v) % profile.divisor == 0,
        )
        spacing = (
            None
            if self.working_spacing is None
            else _triple("working_spacing", self.working_spacing, "three voxel sizes in mm, each > 0", lambda v: 0.0 < v < 100.0)
        )
        budget = (
            None
            if self.memory_budget_gb is None
            else _number("memory_budget_gb", self.memory_budget_gb, "> 0 (or null for the available memory)", lambda v: v > 0)
        )
        checks = [
            (self.inpainting in [m.value for m in InpaintingMode], f"inpainting must be 'latent' or 'direct', got {self.inpainting!r}"),
            (
                not isinstance(self.maps, str) and set(self.maps) <= set(OPTIONAL_MAPS),
                f"maps must be a subset of {[m.value for m in OPTIONAL_MAPS]}, got {self.maps!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        return replace(
            self,
            num_steps=steps,
            strength=strength,
            coarse_threshold=coarse_threshold,
            coarse_dilation=_integer("coarse_dilation", self.coarse_dilation, ">= 0", 0),
            threshold=_number("threshold", self.threshold, "in (0, 1)", lambda v: 0.0 < v < 1.0),
            confine_to_coarse_mask=_boolean("confine_to_coarse_mask", self.confine_to_coarse_mask),
            min_tumor_volume_ml=_number("min_tumor_volume_ml", self.min_tumor_volume_ml, ">= 0", lambda v: v >= 0),
            overlap=_number("overlap", self.overlap, "in [0, 1)", lambda v: 0.0 <= v < 1.0),
            patch_size=(int(patch[0]), int(patch[1]), int(patch[2])),
            working_spacing=spacing,
            seed=_integer("seed", self.seed, ">= 0", 0),
            memory_budget_gb=budget,
            progress=_boolean("progress", self.progress),
            inpainting=InpaintingMode(self.inpainting),
            scheduler=SchedulerKind.parse(self.scheduler),
            maps=tuple(OutputMap(m) for m in self.maps),
        )


@dataclass
class SegmentationResult:
    """Outputs for one prompt, on the input grid (same shape and axes as the input array).

    Attributes:
        prompt: the prompt and the sentences it expanded to.
        mask: uint8 tumor mask {0, 1}.
        probability: tumor probability in [0, 1].
        aova_map: anomaly-aware attention map in [0, 1] (``None`` unless in ``PipelineConfig.maps``).
        pseudo_healthy: the pseudo-healthy counterpart, in input units (HU for CT; ``None``
            unless in ``PipelineConfig.maps``).
        tumor_volume_ml: volume of ``mask`` in mL.
    """

    prompt: PromptSet
    mask: np.ndarray
    probability: np.ndarray
    aova_map: np.ndarray | None
    pseudo_healthy: np.ndarray | None
    tumor_volume_ml: float


@dataclass
class PipelineOutput:
    """All prompts' results, the input affine, and wall time per stage in seconds."""

    results: list[SegmentationResult]
    affine: np.ndarray
    stage_seconds: dict[str, float] = field(default_factory=dict)


class StageTimer:
    """Wall time accumulated per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


class DiffuGTSPipeline:
    """The whole method around frozen MAISI networks and trained DiffuGTS heads.

    Build it with :func:`build_pipeline` (or the bundle's ``inference.json``), then call
    :meth:`segment`. Networks are moved to ``device``; CUDA autocast is used only on CUDA.
    """

    def __init__(
        self,
        *,
        profile: FoundationProfile,
        vae: AutoencoderKlMaisi,
        unet: torch.nn.Module,
        scale_factor: float,
        heads: DiffuGTSHeads,
        text_encoder: SentenceEncoder,
        prompt_builder: PromptBuilder | None = None,
        config: PipelineConfig | None = None,
        device: str | torch.device = "cpu",
        weights: dict[str, str] | None = None,
    ) -> None:
        self.profile = profile  # resolved where the name comes in (get_profile)
        self.device = torch.device(device)
        self.vae = vae.to(self.device).eval()
        self.unet = unet.to(self.device).eval()
        self.heads = heads.to(self.device).eval()
        self.scale_factor = float(scale_factor)
        self.text_encoder = text_encoder
        self.prompt_builder = prompt_builder or PromptBuilder()
        self.config = (config or PipelineConfig()).validated(self.profile)
        self.scheduler = build_scheduler(self.config.scheduler)
        self.weights = dict(weights or {})
        self.foundation = FrozenFoundation(self.vae, self.unet, self.scheduler, self.scale_factor)

    @property
    def patch_settings(self) -> PatchSettings:
        """The patch step's knobs, from the validated config."""
        c = self.config
        assert c.coarse_threshold is not None and c.num_steps is not None  # validated() filled them in
        return PatchSettings(
            coarse_threshold=c.coarse_threshold,
            coarse_dilation=c.coarse_dilation,
            inpainting=c.inpainting,
            num_steps=c.num_steps,
            strength=c.strength,
            confine_to_coarse_mask=c.confine_to_coarse_mask,
            progress=c.progress,
        )

    def working_spacing(self, modality: Modality) -> tuple[float, float, float] | None:
        return self.config.working_spacing or self.profile.working_spacing.get(modality)

    def check_memory(self, shape: Sequence[int], spacing: Sequence[float], modality: Modality | str, prompts: int) -> int:
        """Refuse (``ValueError``) a volume too large for ``memory_budget_gb``; return the estimate in bytes.

        Called by :meth:`segment`, and by callers that know the shape from a file header before
        loading the voxels. The budget is host memory: on an accelerator the working grid and the
        patches are not counted.
        """
        if min(int(n) for n in shape) < 1:
            raise UserError(f"the volume has a zero-size dimension: shape {tuple(int(n) for n in shape)}")
        assert self.config.patch_size is not None  # validated() filled it in
        return check_memory_budget(
            shape,
            spacing,
            working_spacing=self.working_spacing(Modality.parse(modality)),
            divisor=self.profile.divisor,
            patch_size=self.config.patch_size,
            prompts=prompts,
            budget_gb=self.config.memory_budget_gb,
            host_only=self.device.type != "cpu",
        )

    @torch.no_grad()
    def segment(
        self,
        image: np.ndarray | torch.Tensor,
        *,
        modality: Modality | str,
        prompts: str | Sequence[str],
        spacing: Sequence[float] | None = None,
        affine: np.ndarray | None = None,
    ) -> PipelineOutput:
        """Segment what each prompt names.

        Args:
            image: 3D volume (X, Y, Z) in HU (CT) or scanner units (MR); a ``MetaTensor`` keeps
                its affine.
            modality: ``CT`` or ``MR``.
            prompts: one prompt or several, e.g. ``"liver tumor"``.
            spacing: voxel size in mm (when no affine is given).
            affine: 4x4 voxel-to-world RAS matrix.

        Raises:
            ValueError: bad volume, modality, prompt or geometry (the message says which).
        """
        timer = StageTimer()
        modality = Modality.parse(modality)
        prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompt_list:
            raise UserError("give at least one prompt, e.g. 'liver tumor'")
        prompt_sets = [self.prompt_builder.build(p) for p in prompt_list]
        with timer("preprocessing"):
            volume = as_volume(image, spacing=spacing, affine=affine)
            self.check_memory(volume.shape[1:], volume.pixdim.tolist(), modality, len(prompt_sets))
            window = intensity_window(volume, modality)
            geometry = VolumeGeometry(working_spacing=self.working_spacing(modality), divisor=self.profile.divisor)
            working = geometry(normalize_intensity(volume, window))
        with timer("text"):
            embeddings = [self.text_encoder.embed_prompt(p) for p in prompt_sets]
        working_spacing = cast(tuple[float, float, float], tuple(float(s) for s in working.pixdim.tolist()))  # three: the volume is 3D
        patch = _PatchSegmenter(self, embeddings, modality, working_spacing, timer)
        assert self.config.patch_size is not None  # validated() filled it in
        roi = tuple(min(p, s) for p, s in zip(self.config.patch_size, working.shape[1:]))
        inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=1, overlap=self.config.overlap, mode="gaussian", progress=self.config.progress)
        logger.info(
            "segmenting %s volume %s (working grid %s at %s mm) for %d prompt(s)",
            modality.value,
            tuple(volume.shape[1:]),
            tuple(working.shape[1:]),
            working_spacing,
            len(prompt_list),
        )
        with _autocast(self.device):
            # _PatchSegmenter returns a dict of tensors, so the inferer does too.
            outputs = cast(dict[str, torch.Tensor], inferer(working.as_tensor()[None].to(self.device), patch))
        with timer("postprocessing"):
            input_spacing = tuple(np.linalg.norm(volume.affine.numpy()[:3, :3], axis=0))
            maps = self.config.maps
            names = [OutputMap.PROBABILITY] + [m for m in OPTIONAL_MAPS if m in maps] + ([_INPAINTED_REGION] if OutputMap.PSEUDO_HEALTHY in maps else [])
            results = []
            for index, prompt in enumerate(prompt_sets):
                # One resampling of the maps together: on a 512^2 MR each is 40M voxels.
                stacked = torch.cat([outputs[_patch_key(name, index)][0].float().cpu() for name in names])
                restored = dict(zip(names, geometry.invert(stacked, working)))
                probability = np.asarray(restored[OutputMap.PROBABILITY].clamp_(0, 1), dtype=np.float32)
                mask = postprocess_mask(
                    probability,
                    input_spacing,
                    threshold=self.config.threshold,
                    min_volume_ml=self.config.min_tumor_volume_ml,
                )
                results.append(
                    SegmentationResult(
                        prompt=prompt,
                        mask=mask,
                        probability=probability,
                        aova_map=np.asarray(restored[OutputMap.AOVA_MAP].clamp_(0, 1), dtype=np.float32) if OutputMap.AOVA_MAP in restored else None,
                        pseudo_healthy=_pseudo_healthy(restored, volume.as_tensor()[0], window) if _INPAINTED_REGION in restored else None,
                        tumor_volume_ml=float(mask.sum()) * float(np.prod(input_spacing)) / 1000.0,
                    )
                )
        logger.info("stage times (s): %s", ", ".join(f"{k} {v:.2f}" for k, v in timer.seconds.items()))
        return PipelineOutput(results, volume.affine.numpy(), dict(timer.seconds))


def _pseudo_healthy(restored: dict[str, torch.Tensor], original: torch.Tensor, window: Any) -> np.ndarray:
    """The scan with the inpainted region replaced, in input units, on the input grid.

    Only the region's bounding box is blended: elsewhere the scan is copied as it is, which on a
    512^2 MR saves several passes over 40M voxels.
    """
    pseudo_healthy = original.clone()
    region = restored[_INPAINTED_REGION].clamp_(0, 1)
    inside = (region > 0).numpy()
    if inside.any():
        box = bounding_box(inside)
        weight, scan = region[box], original[box]
        blended = weight * denormalize_intensity(restored[OutputMap.PSEUDO_HEALTHY][box], window) + (1 - weight) * scan
        if torch.equal(scan, scan.round()):  # whole-number units (CT in HU, most MR) stay whole
            blended = blended.round()
        pseudo_healthy[box] = blended
    return pseudo_healthy.numpy()


class _PatchSegmenter:
    """The per-patch predictor handed to the sliding-window inferer: :func:`~.method.segment_patch`
    for every prompt, the encoder run once per patch."""

    def __init__(
        self,
        pipeline: DiffuGTSPipeline,
        embeddings: list[PromptEmbedding],
        modality: Modality,
        spacing: tuple[float, float, float],
        timer: StageTimer,
    ) -> None:
        self.p = pipeline
        self.embeddings = [(e.embeddings.to(pipeline.device), e.abnormal.to(pipeline.device)) for e in embeddings]
        self.class_labels = torch.tensor([modality_class_label(modality)], device=pipeline.device)
        self.spacing = spacing_condition(spacing, 1, pipeline.device)
        self.timer = timer
        self.patch_index = 0

    def __call__(self, patch: torch.Tensor) -> dict[str, torch.Tensor]:
        p, timer = self.p, self.timer
        # Seed per patch (patches come in a fixed order): the same input gives the same output.
        generator = torch.Generator(device=p.device).manual_seed(p.config.seed + self.patch_index)
        self.patch_index += 1
        with timer("features"):
            features = p.foundation.encode(patch)
        outputs: dict[str, torch.Tensor] = {}
        for index, (keys, abnormal) in enumerate(self.embeddings):
            step = segment_patch(
                p.foundation,
                p.heads,
                patch,
                features,
                keys,
                abnormal,
                p.patch_settings,
                spacing=self.spacing,
                class_labels=self.class_labels,
                generator=generator,
                timer=timer,
            )
            assert step.probability is not None  # segment_patch always sets it
            outputs[_patch_key(OutputMap.PROBABILITY, index)] = step.probability
            outputs[_patch_key(OutputMap.AOVA_MAP, index)] = step.aova_map.float()
            outputs[_patch_key(OutputMap.PSEUDO_HEALTHY, index)] = step.pseudo_healthy.float()
            outputs[_patch_key(_INPAINTED_REGION, index)] = step.region.float()
        return outputs


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    # CUDA autocast only: on CPU the MAISI networks run in float32.
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device: ``None`` or ``auto`` is CUDA when available, else CPU.

    ``UserError`` for a name torch does not know, or a CUDA device this machine does not have
    (torch would only fail at the first tensor moved there, with a traceback).
    """
    if device is None or str(device).strip().lower() == "auto":
        return default_device()
    try:
        resolved = torch.device(str(device).strip().lower())
    except (RuntimeError, ValueError):
        raise UserError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if resolved.type == "cuda" and (not torch.cuda.is_available() or (resolved.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"device {device!r} is not available on this machine (CUDA devices: {torch.cuda.device_count()}); use auto or cpu")
    if resolved.type not in ("cpu", "cuda"):
        raise UserError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return resolved


def build_pipeline(
    profile: FoundationProfile,
    *,
    weights_dir: str | os.PathLike | None = None,
    vae_weights: str | os.PathLike | None = None,
    diffusion_weights: str | os.PathLike | None = None,
    heads_weights: str | os.PathLike | None = None,
    heads: DiffuGTSHeads | None = None,
    heads_options: dict[str, Any] | None = None,
    config: PipelineConfig | None = None,
    device: str | torch.device | None = None,
    text_encoder: SentenceEncoder | None = None,
    init_seed: int = 0,
) -> DiffuGTSPipeline:
    """Build the networks of ``profile`` and load whatever weights are given.

    Args:
        profile: the foundation profile (:func:`~.foundation.get_profile` resolves a name).
        weights_dir: a folder holding :data:`WEIGHT_FILES`; files missing there are left at
            their seeded random initialisation, with a warning (the outputs then mean nothing).
        vae_weights, diffusion_weights, heads_weights: explicit files; override ``weights_dir``.
        heads: the trainable heads to use (the bundle's ``network_def``); else built from
            ``heads_options``, keyword arguments of :class:`DiffuGTSHeads` (e.g. ``levels``).
        config: run-time knobs.
        device: default CUDA when available, else CPU.
        text_encoder: share one encoder between pipelines.
        init_seed: seeds the initialisation of networks without weights.
    """
    device = resolve_device(device)
    files = {"vae": vae_weights, "diffusion": diffusion_weights, "heads": heads_weights}
    for key, name in WEIGHT_FILES.items():
        if files[key] is None and weights_dir is not None and (Path(weights_dir) / name).is_file():
            files[key] = Path(weights_dir) / name
    torch.manual_seed(init_seed)
    vae = build_vae(profile, device)
    unet = build_diffusion_unet(profile, device)
    text_encoder = text_encoder or SentenceEncoder()
    if heads is None:
        heads = heads_for_profile(profile, text_dim=text_encoder.dimension, **(heads_options or {}))
    heads = heads.to(device)
    scale_factor = 1.0
    provenance: dict[str, str] = {}
    for key, path in files.items():
        if path is None:
            logger.warning("no %s weights for profile '%s': using a seeded random initialisation", key, profile.name)
            provenance[key] = f"random-init(seed={init_seed})"
            continue
        if key == "vae":
            load_vae_weights(vae, path)
        elif key == "diffusion":
            scale_factor = load_diffusion_weights(unet, path)
        else:
            load_heads_weights(heads, path)
        provenance[key] = f"{Path(path).name} sha256:{file_sha256(path)}"
        logger.info("loaded %s weights from %s", key, path)
    return DiffuGTSPipeline(
        profile=profile,
        vae=vae,
        unet=unet,
        scale_factor=scale_factor,
        heads=heads,
        text_encoder=text_encoder,
        config=config,
        device=device,
        weights=provenance,
    )
