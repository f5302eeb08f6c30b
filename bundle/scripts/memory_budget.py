"""Refuse a volume that cannot fit in memory before allocating it, with one clear line.

A whole-body CT at 0.5 mm, or a header that claims 2048^3 voxels, would otherwise die in the
middle of the run with an out-of-memory kill (no message, partial work) or swap the machine to a
halt. The estimate below counts the full-volume arrays the pipeline holds at its peak; the
networks only ever see one sliding-window patch, so they add a fixed amount per patch.

Calibrated on the ``mini`` profile (peak resident memory over the loaded pipeline: 240 MB at
64^3, 411 MB at 128^3, estimate 289 and 435 MB); it stays rough on purpose: its job is to stop
absurd inputs early, not to plan memory to the megabyte.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import psutil

from .errors import UserError

__all__ = ["GIB", "working_shape", "estimate_bytes", "available_bytes", "check_memory_budget"]

GIB = 1024**3
#: float32 arrays per voxel of the input grid (fixed, per prompt): the input and its normalised
#: copies, and per prompt the four restored outputs (probability, AOVA, pseudo-healthy, region),
#: the blended pseudo-healthy image, the mask and the inverse transforms' temporaries. An upper
#: bound when ``PipelineConfig.maps`` leaves maps out (the bundle's default restores one).
_INPUT_ARRAYS = (4, 8)
#: float32 arrays per voxel of the working grid: the resampled volume and the sliding-window
#: count map, and per prompt the four stitched outputs and their importance weighting.
_WORKING_ARRAYS = (2, 6)
#: Activations of one patch through the VAE encoder, the UNet, the decoder and the refiner, in
#: float32 values per patch voxel (measured on the ``mini`` profile at 64^3, rounded up).
_PATCH_VALUES_PER_VOXEL = 256


def working_shape(shape: Sequence[int], spacing: Sequence[float], working_spacing: Sequence[float] | None, divisor: int) -> tuple[int, ...]:
    """Shape on the networks' grid: resampled to ``working_spacing`` and padded to ``divisor``."""
    if working_spacing is None:
        working_spacing = spacing
    resampled = (max(1, round(n * s / w)) for n, s, w in zip(shape, spacing, working_spacing))
    return tuple(int(math.ceil(n / divisor) * divisor) for n in resampled)


def estimate_bytes(
    shape: Sequence[int],
    spacing: Sequence[float],
    *,
    working_spacing: Sequence[float] | None,
    divisor: int,
    patch_size: Sequence[int],
    prompts: int,
    host_only: bool = False,
) -> int:
    """Approximate peak host memory of one segmentation beyond the loaded networks, in bytes.

    Args:
        host_only: the networks run on an accelerator, where the working grid and the patches
            live; only the input-grid arrays count against host memory.
    """
    input_voxels = math.prod(int(n) for n in shape)
    floats = input_voxels * (_INPUT_ARRAYS[0] + _INPUT_ARRAYS[1] * prompts)
    if not host_only:
        working = working_shape(shape, spacing, working_spacing, divisor)
        floats += math.prod(working) * (_WORKING_ARRAYS[0] + _WORKING_ARRAYS[1] * prompts)
        floats += math.prod(min(int(p), n) for p, n in zip(patch_size, working)) * _PATCH_VALUES_PER_VOXEL
    return 4 * floats


def available_bytes() -> int:
    """Memory the system can give this process now without swapping (``MemAvailable``)."""
    return int(psutil.virtual_memory().available)


def check_memory_budget(
    shape: Sequence[int],
    spacing: Sequence[float],
    *,
    working_spacing: Sequence[float] | None,
    divisor: int,
    patch_size: Sequence[int],
    prompts: int,
    budget_gb: float | None,
    host_only: bool = False,
) -> int:
    """Raise ``ValueError`` when the estimate exceeds the budget; return the estimate in bytes.

    Args:
        budget_gb: the budget in GiB; ``None`` takes the memory available right now.
        host_only: see :func:`estimate_bytes`.
    """
    need = estimate_bytes(shape, spacing, working_spacing=working_spacing, divisor=divisor, patch_size=patch_size, prompts=prompts, host_only=host_only)
    budget = available_bytes() if budget_gb is None else float(budget_gb) * GIB
    if need > budget:
        source = "the memory available now" if budget_gb is None else "memory_budget_gb"
        size = "x".join(str(int(n)) for n in shape)
        raise UserError(
            f"a {size} volume needs about {need / GIB:.2f} GB for {prompts} prompt(s), more than the memory budget "
            f"of {budget / GIB:.2f} GB ({source}): crop or downsample it, or raise memory_budget_gb"
        )
    return need
