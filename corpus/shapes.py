"""Implicit shapes evaluated on grid boxes: ellipsoids and tubes along polylines.

Every shape returns a *normalised radius* ``rho`` over a :class:`~.geometry.Box` (``rho < 1``
inside, ``rho == 1`` on the surface, roughly ``distance / radius`` near it), so callers can
threshold it, take shells (``1 - t < rho < 1``), or perturb the surface with a noise field
(``rho + a * noise < 1``) without recomputing geometry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .geometry import Box, VoxelGrid

__all__ = ["rotation_matrix", "ellipsoid_rho", "ellipsoid_box", "Tube"]


def rotation_matrix(angles_deg: npt.ArrayLike) -> np.ndarray:
    """Rotation about x, then y, then z (degrees), as a 3x3 float64 matrix."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def ellipsoid_rho(box: Box, center: Sequence[float] | np.ndarray, semi_axes: npt.ArrayLike, rotation: np.ndarray | None = None) -> np.ndarray:
    """Normalised radius of an ellipsoid (float32, box shape).

    Args:
        box: where to evaluate.
        center: centre in mm.
        semi_axes: semi-axes in mm along the ellipsoid's own axes.
        rotation: 3x3 matrix whose columns are the ellipsoid's axes in world coordinates.
    """
    dx = box.x - np.float32(center[0])
    dy = box.y - np.float32(center[1])
    dz = box.z - np.float32(center[2])
    a = np.asarray(semi_axes, dtype=np.float32)
    if rotation is None:
        return np.sqrt((dx / a[0]) ** 2 + (dy / a[1]) ** 2 + (dz / a[2]) ** 2)
    r = np.asarray(rotation, dtype=np.float32)
    u = (dx * r[0, 0] + dy * r[1, 0] + dz * r[2, 0]) / a[0]
    v = (dx * r[0, 1] + dy * r[1, 1] + dz * r[2, 1]) / a[1]
    w = (dx * r[0, 2] + dy * r[1, 2] + dz * r[2, 2]) / a[2]
    return np.sqrt(u * u + v * v + w * w)


def ellipsoid_box(grid: VoxelGrid, center: Sequence[float] | np.ndarray, semi_axes: npt.ArrayLike, margin: float = 1.15) -> Box:
    """The grid box that holds an ellipsoid (any rotation) enlarged by ``margin``."""
    return grid.box(center, float(np.max(semi_axes)) * margin)


class Tube:
    """A tube of varying radius along a polyline, evaluated segment by segment in local boxes.

    Args:
        points: (n, 3) polyline vertices in mm.
        radii: (n,) radius in mm at each vertex, interpolated linearly along the line.
    """

    def __init__(self, points: npt.ArrayLike, radii: npt.ArrayLike) -> None:
        self.points = np.asarray(points, dtype=np.float64)
        self.radii = np.asarray(radii, dtype=np.float64)
        if self.points.ndim != 2 or self.points.shape[1] != 3 or len(self.points) < 2:
            raise ValueError(f"points must be an (n >= 2, 3) array, got shape {self.points.shape}")
        if self.radii.shape != (len(self.points),) or np.any(self.radii <= 0):
            raise ValueError("radii must hold one positive radius per point")
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        self.cumulative = np.concatenate([[0.0], np.cumsum(seg)]) / max(seg.sum(), 1e-9)

    def evaluate(self, grid: VoxelGrid, pad: float = 1.3) -> tuple[np.ndarray, np.ndarray]:
        """Normalised radius ``rho`` and arc-length parameter ``t`` in [0, 1] over the whole grid.

        Voxels farther than ``pad`` radii from every segment get ``rho = inf`` and ``t = -1``.
        """
        rho = np.full(grid.shape, np.inf, dtype=np.float32)
        param = np.full(grid.shape, -1.0, dtype=np.float32)
        for s in range(len(self.points) - 1):
            p0, p1 = self.points[s], self.points[s + 1]
            r0, r1 = self.radii[s], self.radii[s + 1]
            reach = max(r0, r1) * pad
            box = grid.box((p0 + p1) / 2.0, np.abs(p1 - p0) / 2.0 + reach)
            if box.empty:
                continue
            d = (p1 - p0).astype(np.float32)
            length2 = max(float(d @ d), 1e-9)
            dx, dy, dz = box.x - np.float32(p0[0]), box.y - np.float32(p0[1]), box.z - np.float32(p0[2])
            t = np.clip((dx * d[0] + dy * d[1] + dz * d[2]) / np.float32(length2), 0.0, 1.0)
            ex, ey, ez = dx - t * d[0], dy - t * d[1], dz - t * d[2]
            dist = np.sqrt(ex * ex + ey * ey + ez * ez)
            radius = np.float32(r0) + t * np.float32(r1 - r0)
            local_rho = dist / radius
            current = rho[box.slices]
            closer = local_rho < current
            current[closer] = local_rho[closer]
            global_t = np.float32(self.cumulative[s]) + t * np.float32(self.cumulative[s + 1] - self.cumulative[s])
            param[box.slices][closer] = np.broadcast_to(global_t, local_rho.shape)[closer]
        return rho, param
