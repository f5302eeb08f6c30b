"""Per-lesion measurements of a mask: what a radiologist reads off each lesion.

One :class:`LesionMeasurement` per connected component (26-connected, MONAI's and RECIST
tools' usual choice in 3D): volume, longest axial diameter, centroid, intensity statistics, and
the mean AOVA and tumor probability inside it. The bundle writes them into ``<name>_report.json``
and the app into a DICOM SR (TID 1500), from this one function.

The longest axial diameter is measured as RECIST 1.1 does: the longest in-plane distance across
the lesion on the axial slice where it is longest. "Axial" is the voxel axis closest to the
patient's head-foot axis, so an oblique acquisition is measured in its own slices. The distance
runs between the outer edges of the extreme voxels (centre distance plus one voxel along the
line), so a lesion of one voxel measures one voxel, not zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

__all__ = ["LesionMeasurement", "measure_lesions"]


@dataclass(frozen=True)
class LesionMeasurement:
    """One connected lesion.

    Attributes:
        index: 1-based, in decreasing volume.
        volume_ml: voxel count times voxel volume.
        longest_axial_diameter_mm: RECIST's long axis on the slice where it is longest.
        axial_slice: voxel index, along the axial axis, of that slice.
        centroid_ras_mm: mean voxel centre in the image's world frame (RAS for NIfTI).
        centroid_lps_mm: the same in DICOM patient coordinates (LPS).
        intensity_mean, intensity_sd: of the image inside the lesion (HU for CT).
        aova_mean, probability_mean: mean AOVA map and tumor probability inside (``None`` when
            the map was not computed).
        host_organ: the organ the prompt names, where it names one.
    """

    index: int
    volume_ml: float
    longest_axial_diameter_mm: float
    axial_slice: int
    centroid_ras_mm: tuple[float, float, float]
    centroid_lps_mm: tuple[float, float, float]
    intensity_mean: float
    intensity_sd: float
    aova_mean: float | None
    probability_mean: float | None
    host_organ: str | None

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _axial_axis(affine: np.ndarray) -> int:
    """The voxel axis whose direction is closest to the world's third (superior) axis."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return int(np.argmax(np.abs(directions[2])))


def _longest_in_plane(points_mm: np.ndarray) -> tuple[float, np.ndarray | None]:
    """Longest distance between two of ``points_mm`` (N x 3) and its unit direction."""
    if len(points_mm) < 2:
        return 0.0, None
    candidates = points_mm
    if len(points_mm) > 64:  # the farthest pair lies on the convex hull
        try:
            plane = points_mm - points_mm.mean(axis=0)
            basis = np.linalg.svd(plane, full_matrices=False)[2][:2]
            candidates = points_mm[ConvexHull(plane @ basis.T).vertices]
        except QhullError:  # collinear points: every point is a candidate
            candidates = points_mm
    differences = candidates[:, None, :] - candidates[None, :, :]
    distances = np.linalg.norm(differences, axis=-1)
    i, j = np.unravel_index(int(np.argmax(distances)), distances.shape)
    return float(distances[i, j]), differences[i, j] / max(float(distances[i, j]), 1e-9)


def _edge_to_edge(centre_distance: float, direction: np.ndarray | None, affine: np.ndarray, in_plane_axes: list[int]) -> float:
    """Centre distance plus the extent of one voxel along ``direction`` (outer edges)."""
    columns = affine[:3, :3][:, in_plane_axes]
    if direction is None:  # one voxel: its smaller in-plane side
        return float(np.min(np.linalg.norm(columns, axis=0)))
    # The voxel's extent along a unit direction d is sum_k |d . column_k|.
    return centre_distance + float(np.sum(np.abs(direction @ columns)))


def measure_lesions(
    mask: np.ndarray,
    affine: np.ndarray,
    image: np.ndarray,
    *,
    aova_map: np.ndarray | None = None,
    probability: np.ndarray | None = None,
    host_organ: str | None = None,
) -> list[LesionMeasurement]:
    """Measure every connected lesion of ``mask`` (3D, non-zero is lesion), largest first.

    Args:
        mask: the final mask on the image grid.
        affine: voxel indices to world mm (RAS for NIfTI inputs).
        image: the scan on the same grid (its units are reported: HU for CT).
        aova_map, probability: maps on the same grid, averaged inside each lesion when given.
        host_organ: the organ named by the prompt (e.g. "liver"), copied into each measurement.
    """
    mask = np.asarray(mask) > 0
    if mask.shape != np.shape(image):
        raise ValueError(f"mask {mask.shape} and image {np.shape(image)} differ in shape")
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return []
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    axial = _axial_axis(affine)
    in_plane = [a for a in range(3) if a != axial]
    lps = np.diag([-1.0, -1.0, 1.0])
    slices = ndimage.find_objects(labels)
    measured: list[dict[str, Any]] = []
    for label, box in enumerate(slices, start=1):
        inside = labels[box] == label
        voxels = np.argwhere(inside) + np.array([s.start for s in box])
        world = voxels @ affine[:3, :3].T + affine[:3, 3]
        best, best_slice = 0.0, int(voxels[0, axial])
        for position in np.unique(voxels[:, axial]):
            on_slice = world[voxels[:, axial] == position]
            distance, direction = _longest_in_plane(on_slice)
            distance = _edge_to_edge(distance, direction, affine, in_plane)
            if distance > best:
                best, best_slice = distance, int(position)
        values = np.asarray(image, dtype=np.float64)[box][inside]
        centroid = world.mean(axis=0)
        measured.append(
            dict(
                volume_ml=round(float(inside.sum()) * voxel_ml, 4),
                longest_axial_diameter_mm=round(best, 2),
                axial_slice=best_slice,
                centroid_ras_mm=tuple(round(float(c), 2) for c in centroid),
                centroid_lps_mm=tuple(round(float(c), 2) for c in lps @ centroid),
                intensity_mean=round(float(values.mean()), 2),
                intensity_sd=round(float(values.std()), 2),
                aova_mean=None if aova_map is None else round(float(np.asarray(aova_map)[box][inside].mean()), 4),
                probability_mean=None if probability is None else round(float(np.asarray(probability)[box][inside].mean()), 4),
                host_organ=host_organ,
            )
        )
    measured.sort(key=lambda m: -m["volume_ml"])
    return [LesionMeasurement(index=i, **m) for i, m in enumerate(measured, start=1)]
