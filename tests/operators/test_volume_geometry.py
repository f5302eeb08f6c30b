"""The array axes and affine given to the pipeline must describe the scan exactly as DICOM does."""

import highdicom as hd
import numpy as np
import pytest
from operator_helpers import load_selection

from operators.volume_geometry import LPS_TO_RAS, series_affine, slices_to_xyz, xyz_to_slices
from tools.demo import slice_stack, write_ct_series


def _rotation(degrees_x: float, degrees_z: float) -> np.ndarray:
    a, b = np.radians(degrees_x), np.radians(degrees_z)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


def assert_same_image(volume_a, affine_a, volume_b, affine_b):
    """Every voxel of ``a`` lands on a voxel centre of ``b`` holding the same value."""
    index = np.indices(volume_a.shape).reshape(3, -1)
    mapped = (np.linalg.inv(affine_b) @ affine_a @ np.vstack([index, np.ones(index.shape[1])]))[:3]
    assert np.abs(mapped - mapped.round()).max() < 1e-3, "voxel centres do not coincide"
    mapped = mapped.round().astype(int)
    assert all((mapped[i] >= 0).all() and (mapped[i] < volume_b.shape[i]).all() for i in range(3))
    np.testing.assert_array_equal(volume_a.reshape(-1), volume_b[tuple(mapped)])


# Asymmetric shapes, non-square pixels, oblique and flipped orientations; values unique per voxel.
CASES = {
    "axial-square": (np.diag([1.0, 1.0, 2.0, 1.0]), True),
    "non-square-pixels": (np.diag([0.7, 1.1, 2.5, 1.0]), False),
    "oblique": (np.block([[_rotation(20, 15) @ np.diag([0.8, 1.2, 3.0]), np.array([[10.0], [-20.0], [35.0]])], [np.zeros((1, 3)), np.ones((1, 1))]]), False),
    "slices-head-first": (np.diag([-0.9, 0.9, -2.0, 1.0]), False),
}


@pytest.fixture(params=sorted(CASES))
def written_series(request, tmp_path):
    affine, radiological = CASES[request.param]
    image = np.arange(18 * 13 * 17, dtype=np.float32).reshape(18, 13, 17) - 1000  # within the int16 HU range
    files = write_ct_series(image, affine, tmp_path, seed=11, radiological=radiological)
    return image, affine, files


def test_volume_and_affine_match_the_written_scan(fragment, written_series, tmp_path):
    image, affine, _ = written_series
    selection, sdk_image = load_selection(fragment, tmp_path)
    datasets = [i.get_native_sop_instance() for i in selection[0].selected_series[0].series.get_sop_instances()]
    volume = slices_to_xyz(sdk_image.asnumpy())
    assert_same_image(volume, series_affine(datasets), image, affine)


def test_volume_and_affine_agree_with_highdicom(fragment, written_series, tmp_path):
    _, _, files = written_series
    selection, sdk_image = load_selection(fragment, tmp_path)
    datasets = [i.get_native_sop_instance() for i in selection[0].selected_series[0].series.get_sop_instances()]
    reference = hd.get_volume_from_series(datasets, dtype=np.float32)
    assert_same_image(slices_to_xyz(sdk_image.asnumpy()), series_affine(datasets), reference.array, LPS_TO_RAS @ reference.affine)


def test_lps_and_ras_affines_differ_by_the_axis_flip(phantom_ct):
    import pydicom

    datasets = [pydicom.dcmread(p) for p in phantom_ct.files]
    np.testing.assert_allclose(series_affine(datasets, space="RAS"), LPS_TO_RAS @ series_affine(datasets, space="LPS"))
    # The demo writer stores slices radiologically (rows to the patient's left): flipped x and y.
    _, written_lps = slice_stack(phantom_ct.case.image, phantom_ct.case.affine)
    np.testing.assert_allclose(series_affine(datasets, space="LPS"), written_lps, atol=1e-4)
    np.testing.assert_allclose(np.diag(series_affine(datasets))[:3], [-2.0, -2.0, 2.0])
    with pytest.raises(ValueError, match="space must be"):
        series_affine(datasets, space="RSA")


def test_axis_order_round_trip():
    array = np.arange(24).reshape(2, 3, 4)
    assert slices_to_xyz(array).shape == (4, 3, 2)
    np.testing.assert_array_equal(xyz_to_slices(slices_to_xyz(array)), array)
    assert xyz_to_slices(slices_to_xyz(array)).flags["C_CONTIGUOUS"]
