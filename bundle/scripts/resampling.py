"""Linear resampling along the grid axes, one axis at a time.

Why not MONAI's ``SpatialResample`` here: it samples every output voxel through
``torch.nn.functional.grid_sample``, which first builds a (X, Y, Z, 3) grid of coordinates. On a
512x512x155 input grid that is 40M points, and bringing the output maps back was most of a case's
post-processing (``python -m benchmarks.hot_paths`` times both). Between the working grid and the oriented input grid the index mapping is a
scale and a shift per axis (``Orientation`` only permutes and flips, ``Spacing`` only scales), so
trilinear interpolation separates into three 1-D interpolations with the same values: each output
voxel is the same weighted sum of the same eight neighbours, clamped at the border as
``padding_mode="border"`` does. Mappings with rotation or shear fall back to MONAI.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["axis_aligned_scales", "resample_axis_aligned"]

#: Off-diagonal terms below this (in voxels per voxel) count as zero.
_AXIS_TOLERANCE = 1e-6


def axis_aligned_scales(xform: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-axis ``(scale, shift)`` of a (4, 4) index-to-index mapping, or ``None`` if it mixes axes."""
    matrix = np.asarray(xform.detach().cpu() if isinstance(xform, torch.Tensor) else xform, dtype=np.float64)
    if matrix.shape != (4, 4):
        return None
    linear = matrix[:3, :3]
    if np.abs(linear - np.diag(np.diag(linear))).max() > _AXIS_TOLERANCE:
        return None
    return np.diag(linear).copy(), matrix[:3, 3].copy()


def resample_axis_aligned(data: torch.Tensor, xform: np.ndarray | torch.Tensor, out_shape: Sequence[int]) -> torch.Tensor:
    """Sample ``data`` (C, X, Y, Z) at ``xform @ index`` for every index of ``out_shape``.

    Linear along each axis, source positions clamped to the grid (border padding). ``xform`` must
    be axis-aligned (see :func:`axis_aligned_scales`); ``ValueError`` otherwise.
    """
    scales = axis_aligned_scales(xform)
    if scales is None:
        raise ValueError("the mapping mixes axes: resample it with MONAI's SpatialResample")
    scale, shift = scales
    out = data
    # Shrinking axes first keeps the intermediate arrays small.
    for axis in sorted(range(3), key=lambda a: out_shape[a] / data.shape[a + 1]):
        out = _interpolate_axis(out, axis + 1, scale[axis] * np.arange(out_shape[axis]) + shift[axis])
    return out


def _interpolate_axis(data: torch.Tensor, dim: int, positions: np.ndarray) -> torch.Tensor:
    size = data.shape[dim]
    positions = np.clip(positions, 0.0, size - 1)
    low = np.minimum(np.floor(positions).astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    weight = torch.as_tensor(positions - low, dtype=data.dtype)
    view = [1] * data.ndim
    view[dim] = -1
    below = data.index_select(dim, torch.as_tensor(low))
    above = data.index_select(dim, torch.as_tensor(high))
    return torch.lerp(below, above, weight.view(view))
