"""One corpus case from a category and a seed: anatomy, lesions, imaging effects.

>>> case = generate_case("liver tumor", seed=7)          # doctest: +SKIP
>>> case.image.shape, case.modality.value, case.prompt   # doctest: +SKIP
((128, 128, 128), 'CT', 'liver tumor')

A seed fixes everything bit for bit. It feeds three independent streams (anatomy, lesions,
imaging), so ``generate_case("healthy CT", s)`` is the exact tumor-free counterpart of any CT
tumor case with seed ``s`` (same body, same noise), a ground truth for pseudo-healthy images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from scripts.lesion_synthesis import LESION_LAWS, IntensityLaw, synthesize_lesions
from scripts.preprocessing import Modality

from .anatomy import Anatomy, TissueContrast
from .anatomy_ct import build_torso
from .anatomy_mr import build_head
from .categories import Category, parse_category
from .geometry import VoxelGrid
from .labels import OrganLabel, TumorPart
from .lesions import LesionRecord, insert_lesions
from .real_anatomy import RealVolume, host_anatomy
from .realism import add_correlated_noise, add_rician_noise, apply_bias_field, partial_volume_blur

__all__ = [
    "PhantomCase",
    "generate_case",
    "downsample_anatomy",
    "SUPERSAMPLE",
    "generate_hosted_case",
    "real_healthy_case",
    "DEFAULT_SIZE",
    "DEFAULT_SPACING",
    "NOISE_SD_HU_RANGE",
]

DEFAULT_SIZE = (128, 128, 128)
#: Default voxel spacing (mm): 2 mm CT puts a 256 mm torso field in 128^3, 1.5 mm MR a 192 mm head.
DEFAULT_SPACING = {Modality.CT: (2.0, 2.0, 2.0), Modality.MR: (1.5, 1.5, 1.5)}
#: CT noise standard deviation, drawn per case (benchmark.md: 10 to 20 HU).
NOISE_SD_HU_RANGE = (10.0, 20.0)
#: MR Rician noise SD relative to white matter, drawn per case.
MR_NOISE_RELATIVE_RANGE = (0.025, 0.05)
_LABEL_VALUES = frozenset(int(label) for label in OrganLabel)
#: Default anatomy supersampling per axis: 2 puts 8 sub-voxels in each voxel, enough for partial-
#: volume edges (the surface position is resolved to an eighth of a voxel's volume).
SUPERSAMPLE = 2


def _block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor``^3 blocks (torch's pooling: about ten times numpy's strided block sums)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    return torch.nn.functional.avg_pool3d(tensor, factor)[0, 0].numpy()


def downsample_anatomy(anatomy: Anatomy, grid: VoxelGrid, factor: int) -> Anatomy:
    """An anatomy drawn ``factor`` times finer, averaged down to ``grid``.

    Intensities are the mean of each block (partial volume: a voxel on an organ surface mixes the
    tissues it holds); the organ label and each location region are the block's majority.
    """
    image = _block_mean(anatomy.image, factor)
    best = np.zeros(grid.shape, dtype=np.float32)
    labels = np.zeros(grid.shape, dtype=np.uint8)
    for value in np.unique(anatomy.labels):
        share = _block_mean(anatomy.labels == value, factor)
        better = share > best
        labels[better], best[better] = value, share[better]
    regions = {name: _block_mean(region, factor) > 0.5 for name, region in anatomy.regions.items()}
    return Anatomy(grid=grid, image=image, labels=labels, contrast=anatomy.contrast, regions=regions, noise_sd=anatomy.noise_sd)


@dataclass
class PhantomCase:
    """One case of the corpus.

    Attributes:
        case_id: file stem, e.g. ``"liver_tumor_3000007"``.
        category: what the case shows.
        seed: the seed that generated it.
        image: float32; Hounsfield units for CT, arbitrary units for MR.
        organ_labels: uint8 :class:`~.labels.OrganLabel` map (tumor voxels keep their organ label).
        tumor_mask: uint8, 1 on the tumor (gliomas: whole tumor, edema included); all 0 if healthy.
        tumor_parts: uint8 :class:`~.labels.TumorPart` map.
        spacing: voxel spacing in mm along the array axes.
        affine: 4x4 voxel-to-world affine in RAS+ mm (NIfTI convention).
        modality: CT or MR.
        prompt: what a user would type to find the tumor (the category name); ``""`` if healthy.
        description: one sentence with every lesion's drawn attributes.
        attributes: the drawn attributes of the largest lesion (empty if healthy).
        lesions: one record per lesion, largest first.
        source: ``"phantom"`` or the real host's name.
        imaging: the drawn imaging parameters (blur, noise, gain).
    """

    case_id: str
    category: Category
    seed: int
    image: np.ndarray
    organ_labels: np.ndarray
    tumor_mask: np.ndarray
    tumor_parts: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    modality: Modality
    prompt: str
    description: str
    attributes: dict[str, str] = field(default_factory=dict)
    lesions: list[LesionRecord] = field(default_factory=list)
    source: str = "phantom"
    imaging: dict[str, float] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description of the case (everything but the arrays)."""
        voxel_ml = float(np.prod(self.spacing)) / 1000.0
        present = sorted(int(v) for v in np.unique(self.organ_labels))
        return {
            "case_id": self.case_id,
            "category": self.category.value,
            "modality": self.modality.value,
            "seed": int(self.seed),
            "source": self.source,
            "prompt": self.prompt,
            "description": self.description,
            "attributes": dict(self.attributes),
            "lesions": [record.to_json() for record in self.lesions],
            "tumor_volume_ml": round(float(self.tumor_mask.sum()) * voxel_ml, 4),
            "shape": list(self.image.shape),
            "spacing_mm": [round(float(s), 6) for s in self.spacing],
            "affine_ras": np.asarray(self.affine, dtype=float).round(6).tolist(),
            "orientation": "RAS+",
            "intensity_unit": "HU" if self.modality is Modality.CT else "arbitrary",
            "organ_labels_present": {str(v): OrganLabel(v).name for v in present if v in _LABEL_VALUES},
            "imaging": {k: round(float(v), 6) for k, v in self.imaging.items()},
        }


def _describe(category: Category, lesions: Sequence[LesionRecord]) -> str:
    if not lesions:
        return f"{category.value}: no tumor"
    parts = []
    for record in lesions:
        a = record.attributes
        words = [f"{record.diameter_mm:.0f} mm", a.get("shape", ""), a.get("margin", ""), a.get("intensity", ""), record.finding]
        tail = ", ".join(v for v in (a.get("location"), a.get("texture"), a.get("enhancement")) if v)
        parts.append(" ".join(w for w in words if w) + (f" ({tail})" if tail else ""))
    return f"{len(lesions)} lesion{'s' if len(lesions) > 1 else ''}: " + "; ".join(parts)


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    anatomy, lesions, imaging = np.random.SeedSequence(int(seed)).spawn(3)
    return np.random.default_rng(anatomy), np.random.default_rng(lesions), np.random.default_rng(imaging)


def _insert(category: Category, anatomy: Anatomy, lesion_rng: np.random.Generator):
    """Image, tumor mask, tumor parts, organ labels and lesion records of a case.

    CT tumors follow their :data:`~scripts.lesion_synthesis.LESION_LAWS` (the published
    synthetic-tumor recipe and a law per organ); MR gliomas keep the attribute-driven builder of
    :mod:`.lesions` (solid part, necrotic core and edema relative to white matter).
    """
    shape = anatomy.grid.shape
    if category.is_healthy:
        return anatomy.image, np.zeros(shape, np.uint8), np.zeros(shape, np.uint8), anatomy.labels, []
    if anatomy.contrast is TissueContrast.CT and category.value in LESION_LAWS:
        synthesis = synthesize_lesions(anatomy.image, anatomy.labels, category.value, anatomy.grid.spacing, lesion_rng)
        parts = np.where(synthesis.tumor_mask > 0, np.uint8(TumorPart.SOLID), np.uint8(0)).astype(np.uint8)
        records = [_record(category.value, lesion, anatomy) for lesion in synthesis.lesions if lesion.voxels > 0]
        records.sort(key=lambda r: -r.volume_ml)
        return synthesis.image, synthesis.tumor_mask, parts, synthesis.organ_labels, records
    inserted = insert_lesions(anatomy, category.value, lesion_rng)
    return inserted.image, inserted.tumor_mask, inserted.tumor_parts, anatomy.labels, inserted.lesions


def _record(finding: str, lesion, anatomy: Anatomy) -> LesionRecord:
    """A synthesized lesion as a :class:`~.lesions.LesionRecord` of the case metadata."""
    if lesion.law == IntensityLaw.REPLACE.value:
        intensity = "part-solid" if lesion.part_solid else "soft-tissue density"
    else:
        intensity = "hypodense"
    attributes = {"size": lesion.size_class, "intensity": intensity}
    if lesion.exophytic:
        attributes["shape"] = "exophytic"
    world = anatomy.affine @ np.append(np.asarray(lesion.center_voxel, dtype=np.float64), 1.0)
    return LesionRecord(
        finding=finding,
        attributes=attributes,
        center_mm=[round(float(c), 2) for c in world[:3]],
        diameter_mm=round(2.0 * lesion.radius_mm, 2),
        volume_ml=lesion.volume_ml,
        intensity_mode=lesion.law,
        intensity_target=lesion.contrast_hu,
        location_region="whole organ",
        extras={"subtle": float(lesion.subtle)},
    )


def generate_case(
    category: str | Category,
    seed: int,
    *,
    size: Sequence[int] = DEFAULT_SIZE,
    spacing: Sequence[float] | None = None,
    supersample: int = SUPERSAMPLE,
) -> PhantomCase:
    """Generate one phantom case.

    Args:
        category: a :class:`~.categories.Category` or its name (``"liver tumor"``, ``"healthy MR"``).
        seed: non-negative integer; the same seed gives byte-identical arrays.
        size: array shape (each >= 16). Default 128^3.
        spacing: voxel spacing in mm; default 2 mm for CT, 1.5 mm for MR. The anatomy scales to
            the field of view (size x spacing), lesion sizes stay in mm.
        supersample: the anatomy is drawn on a grid this many times finer per axis and averaged
            down (1 to 4), so that organ surfaces are smooth with partial-volume edges instead of
            voxel staircases; 1 draws it on the output grid.

    Returns:
        A :class:`PhantomCase` with RAS-aligned voxel axes (``nibabel.aff2axcodes == RAS``).

    Raises:
        ValueError: for an unknown category, a negative seed, or a bad size or spacing.
    """
    category = parse_category(category)
    modality = category.modality
    # VoxelGrid checks that there are three of each.
    grid = VoxelGrid(
        cast(tuple[int, int, int], tuple(size)), cast(tuple[float, float, float], tuple(spacing if spacing is not None else DEFAULT_SPACING[modality]))
    )
    if supersample not in (1, 2, 3, 4):
        raise ValueError(f"supersample must be 1, 2, 3 or 4, got {supersample!r}")
    anatomy_rng, lesion_rng, imaging_rng = _streams(seed)
    fine = VoxelGrid(
        cast(tuple[int, int, int], tuple(n * supersample for n in grid.shape)), cast(tuple[float, float, float], tuple(s / supersample for s in grid.spacing))
    )
    anatomy = build_torso(fine, anatomy_rng) if modality is Modality.CT else build_head(fine, anatomy_rng)
    if supersample > 1:
        anatomy = downsample_anatomy(anatomy, grid, supersample)
    case_id = f"{category.slug}_{int(seed):07d}"
    image, tumor_mask, parts, organ_labels, lesions = _insert(category, anatomy, lesion_rng)

    blur = float(imaging_rng.uniform(0.45, 0.75))
    image = partial_volume_blur(image, blur)
    if modality is Modality.CT:
        noise_sd = float(imaging_rng.uniform(*NOISE_SD_HU_RANGE))
        image = add_correlated_noise(image, noise_sd, imaging_rng)
        imaging = {"blur_sigma_voxels": blur, "noise_sd_hu": noise_sd}
    else:
        image = apply_bias_field(image, imaging_rng)
        gain = float(imaging_rng.uniform(300.0, 1200.0))
        relative = float(imaging_rng.uniform(*MR_NOISE_RELATIVE_RANGE))
        image = add_rician_noise(image * np.float32(gain), relative * gain, imaging_rng)
        imaging = {"blur_sigma_voxels": blur, "gain": gain, "noise_sd": relative * gain, "noise_sd_relative_to_white_matter": relative}
    return PhantomCase(
        case_id=case_id,
        category=category,
        seed=int(seed),
        image=image,
        organ_labels=organ_labels,
        tumor_mask=tumor_mask,
        tumor_parts=parts,
        spacing=grid.spacing,
        affine=grid.affine,
        modality=modality,
        prompt="" if category.is_healthy else category.value,
        description=_describe(category, lesions),
        attributes=dict(lesions[0].attributes) if lesions else {},
        lesions=lesions,
        imaging=imaging,
    )


def generate_hosted_case(volume: RealVolume, category: str | Category, seed: int, *, host: Anatomy | None = None) -> PhantomCase:
    """Insert synthetic tumors of ``category`` into a real volume (tumor synthesis on real anatomy).

    The volume keeps its geometry, intensities and noise; lesions copy the host's noise level so
    they are not smoother than the tissue around them, and follow the host's contrast (a glioma
    in a T1 host is dark, in the FLAIR-like phantoms bright).

    Args:
        volume: a labelled real volume (:func:`~.real_anatomy.load_real_volume`).
        category: a tumor category of the volume's modality whose organ the volume has.
        seed: non-negative integer; same volume and seed give byte-identical arrays.
        host: ``host_anatomy(volume)`` if already computed (it costs a distance transform).

    Raises:
        ValueError: if the category's modality differs from the volume's, or the organ is absent.
    """
    category = parse_category(category)
    if category.modality is not volume.modality:
        raise ValueError(f"category {category.value!r} is {category.modality.value}, {volume.source.value} is {volume.modality.value}")
    host = host if host is not None else host_anatomy(volume)
    _, lesion_rng, _ = _streams(seed)
    image, tumor_mask, parts, organ_labels, lesions = _insert(category, host, lesion_rng)
    return PhantomCase(
        case_id=f"{volume.source.value}_{category.slug}_{int(seed):07d}",
        category=category,
        seed=int(seed),
        image=image.astype(np.float32),
        organ_labels=organ_labels,
        tumor_mask=tumor_mask,
        tumor_parts=parts,
        spacing=volume.spacing,
        affine=np.asarray(volume.affine, dtype=np.float64),
        modality=volume.modality,
        prompt="" if category.is_healthy else category.value,
        description=_describe(category, lesions),
        attributes=dict(lesions[0].attributes) if lesions else {},
        lesions=lesions,
        source=volume.source.value,
        imaging={"noise_sd_estimate": host.noise_sd},
    )


def real_healthy_case(volume: RealVolume) -> PhantomCase:
    """A real volume as a healthy corpus case (seed 0; organ labels all 0 where it has none)."""
    category = Category.HEALTHY_CT if volume.modality is Modality.CT else Category.HEALTHY_MR
    shape = volume.image.shape
    labels = volume.organ_labels if volume.organ_labels is not None else np.zeros(shape, np.uint8)
    return PhantomCase(
        case_id=volume.source.value,
        category=category,
        seed=0,
        image=volume.image.astype(np.float32),
        organ_labels=labels,
        tumor_mask=np.zeros(shape, np.uint8),
        tumor_parts=np.zeros(shape, np.uint8),
        spacing=volume.spacing,
        affine=np.asarray(volume.affine, dtype=np.float64),
        modality=volume.modality,
        prompt="",
        description=f"real healthy volume: {volume.description} (licence {volume.licence})",
        source=volume.source.value,
    )
