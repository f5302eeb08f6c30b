"""Voxel grids of the phantoms: shape, spacing, RAS affine, and cheap local coordinate boxes.

Phantom arrays are indexed ``[i, j, k]`` with the voxel axes along RAS+ world axes: ``i`` grows
toward the patient's Right, ``j`` toward Anterior, ``k`` toward Superior, so
``nibabel.aff2axcodes(affine) == ("R", "A", "S")``. The world origin (0, 0, 0) mm is the centre of
the volume. Shapes are built in bounding boxes (:meth:`VoxelGrid.box`) so that a small organ costs
only its own voxels, which keeps a 128^3 case well under two seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt

__all__ = ["VoxelGrid", "Box", "ras_affine", "spacing_from_affine"]


def ras_affine(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """4x4 float64 affine with voxel axes along R, A, S and the volume centre at (0, 0, 0) mm."""
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    affine = np.diag([*spacing_arr, 1.0])
    affine[:3, 3] = -spacing_arr * (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    return affine


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel spacing in mm: the lengths of the affine's first three columns."""
    return cast(tuple[float, float, float], tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)))


@dataclass(frozen=True)
class Box:
    """A sub-block of a grid: its index slices and open (broadcastable) mm coordinates.

    ``x`` has shape (n, 1, 1), ``y`` (1, m, 1), ``z`` (1, 1, p): arithmetic on them broadcasts
    to the box shape without building full coordinate volumes.
    """

    slices: tuple[slice, slice, slice]
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.x.shape[0], self.y.shape[1], self.z.shape[2])

    @property
    def empty(self) -> bool:
        return min(self.shape) == 0


@dataclass(frozen=True)
class VoxelGrid:
    """Shape and spacing (mm) of a phantom volume; see the module docstring for the axes."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(n) < 16 for n in self.shape):
            raise ValueError(f"size must be three integers >= 16, got {self.shape!r}")
        if len(self.spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be three positive numbers (mm), got {self.spacing!r}")
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))

    @property
    def affine(self) -> np.ndarray:
        return ras_affine(self.shape, self.spacing)

    @property
    def half_extent(self) -> np.ndarray:
        """Distance in mm from the centre to the outermost voxel centres, per axis."""
        return np.asarray(self.spacing) * (np.asarray(self.shape) - 1) / 2.0

    def axis(self, index: int) -> np.ndarray:
        """mm coordinates of the voxel centres along one axis (float32)."""
        n, s = self.shape[index], self.spacing[index]
        return ((np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * s).astype(np.float32)

    def full(self) -> Box:
        """The whole grid as a :class:`Box`."""
        return self.box((0.0, 0.0, 0.0), self.half_extent + np.asarray(self.spacing))

    def box(self, center: Sequence[float] | np.ndarray, half_size: npt.ArrayLike) -> Box:
        """The voxels within ``half_size`` mm of ``center`` along each axis, clipped to the grid."""
        half = np.broadcast_to(np.asarray(half_size, dtype=np.float64), (3,))
        slices = []
        coords = []
        for d in range(3):
            axis = self.axis(d)
            lo = int(np.searchsorted(axis, center[d] - half[d], side="left"))
            hi = int(np.searchsorted(axis, center[d] + half[d], side="right"))
            lo, hi = max(lo, 0), min(max(hi, lo), self.shape[d])
            slices.append(slice(lo, hi))
            coords.append(axis[lo:hi])
        return Box(
            slices=(slices[0], slices[1], slices[2]),
            x=coords[0][:, None, None],
            y=coords[1][None, :, None],
            z=coords[2][None, None, :],
        )

    def index_to_mm(self, index: np.ndarray) -> np.ndarray:
        """World mm (RAS) of voxel indices, shape (..., 3)."""
        index = np.asarray(index, dtype=np.float64)
        return (index - (np.asarray(self.shape) - 1) / 2.0) * np.asarray(self.spacing)
