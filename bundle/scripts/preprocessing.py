"""Intensity normalisation and invertible geometry for DiffuGTS inputs.

Intensity (method.md section 3, supplementary A.3):

* CT: Hounsfield units clipped to [-1000, 1000] and scaled to [0, 1].
* MR: the 0th..99.5th percentile of the volume scaled to [0, 1], clipped.

Geometry: every volume is oriented to RAS, resampled to the profile's working spacing and padded
to a multiple of the network divisor. The same MONAI transforms, traced on a ``MetaTensor``, are
inverted for every output so masks land exactly on the input grid.

Plausibility (:func:`plausibility_warnings`): a volume that runs but whose result means little is
warned about, not refused: fewer than :data:`MIN_SLICES` voxels along an axis (a slice or a thin
slab), and intensities that contradict the modality (CT without air, MR with CT's air values).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar, cast

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, DivisiblePad, InvertibleTransform, Orientation, Spacing
from monai.utils import TraceKeys

from .errors import UserError
from .resampling import axis_aligned_scales, resample_axis_aligned

__all__ = [
    "Modality",
    "IntensityWindow",
    "intensity_window",
    "normalize_intensity",
    "denormalize_intensity",
    "VolumeGeometry",
    "as_volume",
    "plausibility_warnings",
]

_TensorT = TypeVar("_TensorT", bound=torch.Tensor)

#: Orientation of every array the networks see. The same code is used by the bundle and the app.
CANONICAL_ORIENTATION = "RAS"


class Modality(str, Enum):
    """Imaging modality of the input series."""

    CT = "CT"
    MR = "MR"

    @classmethod
    def parse(cls, value: str | Modality) -> Modality:
        """Accept 'CT', 'MR' or 'MRI' in any case; raise ``ValueError`` naming the valid values."""
        if isinstance(value, Modality):
            return value
        key = str(value).strip().upper()
        if key == "MRI":
            key = "MR"
        try:
            return cls(key)
        except ValueError:
            raise UserError(f"unknown modality {value!r}: expected one of CT, MR") from None


@dataclass(frozen=True)
class IntensityWindow:
    """Input intensities mapped to 0 and 1 (HU for CT, scanner units for MR)."""

    low: float
    high: float


#: CT window: -1000 HU (air) to 1000 HU (dense bone) maps to [0, 1].
CT_WINDOW = IntensityWindow(-1000.0, 1000.0)
#: Soft-tissue display window (HU) of the pictures a reader sees (montages, reports): not the
#: pipeline's input window above.
CT_DISPLAY_WINDOW = (-160.0, 240.0)
#: MR window: 0th to 99.5th percentile of the volume maps to [0, 1].
MR_PERCENTILES = (0.0, 99.5)


#: Fewer voxels than this along an axis is a slice or a thin slab: the VAE's coarsest tap (1/4
#: resolution) would have under two voxels across it, and the 3D context the method reads is padding.
MIN_SLICES = 8
#: Air is -1000 HU; below -500 HU lie only air (outside the body, lungs, bowel gas) and a scanner's
#: padding value. Fat (-100) and every tissue lie above it, and MR magnitude images have no negative
#: values (z-scored MR stays within a few units of 0).
AIR_HU = -500.0
#: A "CT" with less than this fraction of voxels below :data:`AIR_HU` has no air: an MR, a CT not
#: rescaled to HU (air at 0), or a crop inside the body. Lenient: a little bowel gas is enough.
CT_MIN_AIR_FRACTION = 0.001
#: An "MR" with more than this fraction of voxels below :data:`AIR_HU` holds CT numbers (a CT's
#: field of view is typically 20-60% air).
MR_MAX_AIR_FRACTION = 0.01


def plausibility_warnings(image: np.ndarray | torch.Tensor, modality: Modality | str) -> list[str]:
    """What makes this volume's result doubtful, one sentence each (empty: nothing).

    Rules: fewer than :data:`MIN_SLICES` voxels along an axis; for CT, fewer than 0.1% of the
    voxels below -500 HU (no air); for MR, more than 1% below -500 (CT's air). One pass over the
    voxels (a comparison), as cheap as the normalisation.
    """
    modality = Modality.parse(modality)
    data = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image if isinstance(image, torch.Tensor) else np.asarray(image))
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    warnings = []
    shape = tuple(int(n) for n in data.shape)
    for axis, size in enumerate(shape):
        if 0 < size < MIN_SLICES:
            warnings.append(
                f"the volume has only {size} voxel(s) along axis {axis} (shape {shape}): DiffuGTS is a 3D method "
                f"that needs at least {MIN_SLICES}; on a slice or a thin slab its result is unreliable"
            )
    if data.numel() == 0:
        return warnings
    air = float(torch.count_nonzero(data < AIR_HU)) / data.numel()
    if modality is Modality.CT and air < CT_MIN_AIR_FRACTION:
        warnings.append(
            f"the intensities do not look like CT in Hounsfield units: {100 * air:.2g}% of the voxels are below "
            f"{AIR_HU:g} (a CT has air at -1000 HU outside the body and in the lungs and bowel); "
            "is it an MR, a CT not rescaled to HU, or a crop inside the body?"
        )
    if modality is Modality.MR and air > MR_MAX_AIR_FRACTION:
        warnings.append(
            f"the intensities look like CT in Hounsfield units, not MR: {100 * air:.2g}% of the voxels are below "
            f"{AIR_HU:g} (air in CT is -1000 HU; MR magnitude images have no negative values)"
        )
    return warnings


def intensity_window(image: np.ndarray | torch.Tensor, modality: Modality | str) -> IntensityWindow:
    """The window that :func:`normalize_intensity` maps to [0, 1] for this volume."""
    if Modality.parse(modality) is Modality.CT:
        return CT_WINDOW
    values = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32).reshape(-1)
    low, high = (_percentile(values, q) for q in MR_PERCENTILES)
    if high <= low:  # a constant volume: keep the mapping defined
        high = low + 1.0
    return IntensityWindow(float(low), float(high))


def _percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear), without partitioning all of ``values`` for q near 100.

    A 512x512x155 MR is 40M values, and numpy copies and partitions them all. The
    two order statistics near the top lie above a bound read from a strided sample; only the values
    above it are partitioned. Same result; where the bound misses them, numpy does it all.
    (Timed against ``np.percentile`` by ``python -m benchmarks.hot_paths``.)
    """
    if q <= 0:
        return float(values.min())
    if values.size < 1_000_000:
        return float(np.percentile(values, q))
    rank = q / 100.0 * (values.size - 1)
    below = int(np.floor(rank))
    bound = np.percentile(values[:: values.size // 200_000], max(0.0, q - 1.0))
    candidates = values[values >= bound]
    first = below - (values.size - candidates.size)  # the lower statistic's place among them
    if first < 0:
        return float(np.percentile(values, q))
    second = min(first + 1, candidates.size - 1)
    ordered = np.partition(candidates, [first, second])
    lower, upper = float(ordered[first]), float(ordered[second])
    return lower + (upper - lower) * (rank - below)


def normalize_intensity(image: _TensorT, window: IntensityWindow) -> _TensorT:
    """Scale ``window`` to [0, 1] and clip: MONAI's ``ScaleIntensityRange`` with ``clip=True``,
    in two passes instead of its four (``benchmarks.hot_paths`` times both); a ``MetaTensor``
    keeps its metadata."""
    # Tensor arithmetic keeps the subclass (``__torch_function__``): a MetaTensor stays one.
    return cast(_TensorT, ((image - window.low) / (window.high - window.low)).clamp_(0.0, 1.0))


def denormalize_intensity(image: torch.Tensor, window: IntensityWindow) -> torch.Tensor:
    """Map [0, 1] back to input units (the inverse of :func:`normalize_intensity` inside the window)."""
    return image * (window.high - window.low) + window.low


def as_volume(
    image: np.ndarray | torch.Tensor,
    *,
    spacing: Sequence[float] | None = None,
    affine: np.ndarray | torch.Tensor | None = None,
) -> MetaTensor:
    """A channel-first float32 ``MetaTensor`` (1, X, Y, Z) with its affine.

    Args:
        image: a 3D array (X, Y, Z), or (1, X, Y, Z). A ``MetaTensor`` keeps its own affine.
        spacing: voxel size in mm when no affine is given; the affine is then ``diag(spacing)``
            (RAS axes, as MONAI assumes for arrays without geometry).
        affine: 4x4 voxel-to-world (RAS) matrix; takes precedence over ``spacing``.

    Raises:
        ValueError: the array is not 3D, has a zero-size axis, or holds NaN or infinite values.
    """
    if isinstance(image, MetaTensor) and affine is None and spacing is None:
        affine = image.affine
    if isinstance(image, MetaTensor):
        data = image.as_tensor()
    elif isinstance(image, torch.Tensor):
        data = image
    else:
        data = torch.as_tensor(np.asarray(image))
    data = data.detach().float()
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 3:
        raise UserError(f"expected a 3D volume, got an array of shape {tuple(data.shape)}")
    if min(data.shape) == 0:
        raise UserError(f"the volume has a zero-size dimension: shape {tuple(data.shape)}")
    # NaN and infinities reach the extremes (aminmax propagates NaN): one reduction, where
    # isfinite(data).all() first writes a mask of every voxel (benchmarks.hot_paths times both).
    if not all(torch.isfinite(extreme) for extreme in torch.aminmax(data)):
        raise UserError("the volume contains NaN or infinite voxel values")
    if affine is None:
        if spacing is None:
            raise UserError("give the voxel spacing or the affine of the volume")
        spacing = _check_spacing(spacing)
        affine = np.diag([*spacing, 1.0])
    affine = torch.as_tensor(np.asarray(affine, dtype=np.float64))
    if affine.shape != (4, 4) or not torch.isfinite(affine).all() or abs(torch.det(affine[:3, :3])) < 1e-9:
        raise UserError("the affine must be a finite, invertible 4x4 matrix")
    return MetaTensor(data[None], affine=affine)


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(np.isfinite(values)) or min(values) <= 0:
        raise UserError(f"spacing must be three positive numbers in mm, got {tuple(spacing)}")
    return values  # type: ignore[return-value]


class VolumeGeometry:
    """Orientation, resampling and padding to the network grid, and their exact inverse.

    Args:
        working_spacing: voxel size (mm) the networks run at, or ``None`` to keep the input spacing.
        divisor: every padded dimension is a multiple of this (the VAE's 4x downsampling times the
            diffusion UNet's downsamplings: 16 for ``mini``, 32 for ``maisi``).
        mode: interpolation of the resampling: ``bilinear`` for images, ``nearest`` for labels.

    Example:
        >>> geometry = VolumeGeometry(working_spacing=(1.5, 1.5, 1.5), divisor=16)
        >>> working = geometry(volume)                  # RAS, 1.5 mm, padded
        >>> mask = geometry.invert(probability, working)  # back on the input grid
    """

    def __init__(self, *, working_spacing: Sequence[float] | None, divisor: int, mode: str = "bilinear") -> None:
        if divisor < 1:
            raise ValueError(f"divisor must be a positive integer, got {divisor}")
        # Explicit axis labels: MONAI is changing the default to the MetaTensor's 'space'.
        steps: list[InvertibleTransform] = [Orientation(axcodes=CANONICAL_ORIENTATION, labels=(("L", "R"), ("P", "A"), ("I", "S")))]
        if working_spacing is not None:
            # scale_extent: the grid spans the field of view (voxel edges), so 512 x 0.375 mm at
            # 1.5 mm is 128 voxels, not 129 padded to 144, which took 4 patches of 128^3 not 1.
            # float32 resampling: MONAI's default float64 first copies the whole input to double
            # (320 MB on a 512^2 MR); the values differ by < 2e-6 on the [0, 1] scale.
            # The ignore: Spacing hints dtype as numpy's, but its resampler converts any dtype (get_equivalent_dtype).
            steps.append(Spacing(pixdim=_check_spacing(working_spacing), mode=mode, padding_mode="border", scale_extent=True, dtype=torch.float32))  # type: ignore[arg-type]
        steps.append(DivisiblePad(k=divisor, mode="constant"))
        self.working_spacing = working_spacing
        self.divisor = divisor
        self._forward = Compose(steps)

    def __call__(self, volume: MetaTensor) -> MetaTensor:
        """Volume on the working grid; its ``applied_operations`` record what :meth:`invert` undoes."""
        return self._forward(volume)

    def invert(self, output: torch.Tensor, working: MetaTensor) -> torch.Tensor:
        """Bring ``output`` (C, ...) computed on the grid of ``working`` back to the input grid.

        Resampled outputs are interpolated linearly; threshold probabilities after inverting.
        """
        traced = MetaTensor(
            output.as_tensor() if isinstance(output, MetaTensor) else output,
            affine=working.affine,
            applied_operations=copy.deepcopy(working.applied_operations),
        )
        for transform in reversed(self._forward.transforms):
            resampled = _invert_axis_aligned_resampling(traced) if isinstance(transform, Spacing) else None
            traced = resampled if resampled is not None else transform.inverse(traced)
        return traced.as_tensor() if isinstance(traced, MetaTensor) else traced


def _invert_axis_aligned_resampling(traced: MetaTensor) -> MetaTensor | None:
    """Undo the traced ``Spacing`` step with :func:`resample_axis_aligned` (the same trilinear
    values as MONAI's inverse, without its per-voxel coordinate grid); ``None`` when the step is
    not a plain resampling along the axes, so MONAI inverts it."""
    operation = traced.applied_operations[-1]
    info = operation.get(TraceKeys.EXTRA_INFO, {})
    if operation.get(TraceKeys.CLASS_NAME) != "SpatialResample" or info.get("mode") != "bilinear" or info.get("padding_mode") != "border":
        return None
    source_affine = np.asarray(info["src_affine"], dtype=np.float64)
    # Index on the input grid -> index on the current (working) grid, as MONAI computes it.
    xform = np.linalg.solve(np.asarray(traced.affine, dtype=np.float64), source_affine)
    if axis_aligned_scales(xform) is None:
        return None
    data = resample_axis_aligned(traced.as_tensor().float(), xform, [int(n) for n in operation[TraceKeys.ORIG_SIZE]])
    return MetaTensor(data, affine=torch.as_tensor(source_affine), applied_operations=traced.applied_operations[:-1])
