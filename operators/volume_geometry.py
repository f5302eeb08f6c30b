"""Array axes and world geometry of a DICOM series, as the DiffuGTS pipeline expects them.

The SDK's :class:`~monai.deploy.operators.DICOMSeriesToVolumeOperator` stacks the sorted slices
into an array indexed ``(slice, row, column)``. The pipeline (like NIfTI and MONAI) wants an array
indexed ``(x, y, z)`` with a 4x4 voxel-to-world RAS affine for those axes. Here ``x`` runs along a
row (increasing column index), ``y`` down a column (increasing row index) and ``z`` through the
sorted slices, so the pipeline array is the SDK array transposed ``(2, 1, 0)``.

The affine is computed here from the DICOM attributes rather than taken from the SDK's
``nifti_affine_transform``: the SDK pairs the row direction with ``PixelSpacing[0]`` (the spacing
between rows), which is only right for square pixels. DICOM's ``PixelSpacing`` is
``[row spacing, column spacing]``: the step along a row is ``PixelSpacing[1]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom import Dataset

__all__ = ["LPS_TO_RAS", "series_affine", "slices_to_xyz", "xyz_to_slices", "slice_normal"]

#: Flips the first two world axes: DICOM patient coordinates (LPS) to RAS and back.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def slice_normal(dataset: Dataset) -> np.ndarray:
    """Unit normal of a slice: row direction x column direction (points to increasing slice index
    when the slices are sorted by their position along it)."""
    orientation = np.asarray([float(v) for v in dataset.ImageOrientationPatient], dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise ValueError(f"ImageOrientationPatient {list(orientation)} has parallel row and column directions")
    return normal / norm


def series_affine(datasets: Sequence[Dataset], *, space: str = "RAS") -> np.ndarray:
    """Voxel-to-world affine of sorted single-frame slices for the array axes ``(x, y, z)``.

    Args:
        datasets: the slices in the order of the volume's first (slice) axis; at least two,
            except that a single slice gets its ``SliceThickness`` (else 1 mm) as depth.
        space: ``RAS`` (MONAI, NIfTI) or ``LPS`` (DICOM patient coordinates).

    Returns:
        4x4 float64 matrix mapping ``(x, y, z, 1)`` (column, row, slice index) to millimetres.
    """
    if space not in ("RAS", "LPS"):
        raise ValueError(f"space must be 'RAS' or 'LPS', got {space!r}")
    if not datasets:
        raise ValueError("a volume needs at least one slice")
    first, last = datasets[0], datasets[-1]
    orientation = np.asarray([float(v) for v in first.ImageOrientationPatient], dtype=np.float64)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    origin = np.asarray([float(v) for v in first.ImagePositionPatient], dtype=np.float64)
    affine = np.eye(4)
    affine[:3, 0] = orientation[:3] * column_spacing
    affine[:3, 1] = orientation[3:] * row_spacing
    if len(datasets) > 1:
        end = np.asarray([float(v) for v in last.ImagePositionPatient], dtype=np.float64)
        affine[:3, 2] = (end - origin) / (len(datasets) - 1)
    else:
        affine[:3, 2] = slice_normal(first) * float(getattr(first, "SliceThickness", None) or 1.0)
    affine[:3, 3] = origin
    return LPS_TO_RAS @ affine if space == "RAS" else affine


def slices_to_xyz(array: np.ndarray) -> np.ndarray:
    """``(slice, row, column)`` -> ``(x, y, z)`` (a view, no copy)."""
    return np.asarray(array).transpose(2, 1, 0)


def xyz_to_slices(array: np.ndarray) -> np.ndarray:
    """``(x, y, z)`` -> ``(slice, row, column)``, contiguous (as frames are written)."""
    return np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0))
