"""Which outputs the bundle writes, and how it stores them: compact on disk, faithful when read back."""

import nibabel as nib
import numpy as np
import pytest

from scripts.inference import _nifti_writer, _stored, parse_save_maps, pipeline_maps

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def _round_trip(tmp_path, key, array):
    path = str(tmp_path / f"{key}.nii.gz")
    _nifti_writer(*_stored(key, array), affine=AFFINE)(path)
    image = nib.load(path)
    return image.get_data_dtype(), image.get_fdata(dtype=np.float32)


@pytest.mark.parametrize("key", ["probability", "aova_map"])
def test_unit_range_maps_are_stored_as_scaled_uint8_within_half_a_step(tmp_path, key):
    values = np.random.default_rng(0).random((20, 18, 7)).astype(np.float32) * 0.7
    dtype, read = _round_trip(tmp_path, key, values)
    assert dtype == np.uint8
    assert np.abs(read - values).max() <= values.max() / 255 / 2 + 1e-6


def test_an_empty_map_reads_back_as_zeros(tmp_path):
    dtype, read = _round_trip(tmp_path, "probability", np.zeros((5, 5, 5), np.float32))
    assert dtype == np.uint8 and not read.any()


def test_pseudo_healthy_in_whole_units_is_int16_and_exact(tmp_path):
    hu = np.random.default_rng(1).integers(-1024, 3000, (16, 16, 6)).astype(np.float32)
    dtype, read = _round_trip(tmp_path, "pseudo_healthy", hu)
    assert dtype == np.int16
    np.testing.assert_array_equal(read, hu)


@pytest.mark.parametrize("values", [np.linspace(0, 1, 64), np.array([0.0, 40000.0] * 32)], ids=["fractional", "beyond-int16"])
def test_pseudo_healthy_that_int16_cannot_hold_stays_float32(tmp_path, values):
    array = values.reshape(4, 4, 4).astype(np.float32)
    dtype, read = _round_trip(tmp_path, "pseudo_healthy", array)
    assert dtype == np.float32
    np.testing.assert_array_equal(read, array)


def test_masks_are_uint8(tmp_path):
    mask = (np.random.default_rng(2).random((6, 6, 6)) > 0.5).astype(np.uint8)
    dtype, read = _round_trip(tmp_path, "mask", mask)
    assert dtype == np.uint8
    np.testing.assert_array_equal(read, mask)


@pytest.mark.parametrize(
    "value,expected",
    [
        ([], ()),
        ("none", ()),
        ("all", ("probability", "aova_map", "pseudo_healthy")),
        ("pseudo_healthy, probability", ("probability", "pseudo_healthy")),
        ("['aova_map']", ("aova_map",)),
        (["aova_map", "probability"], ("probability", "aova_map")),
    ],
)
def test_save_maps_accepts_lists_and_command_line_text(value, expected):
    assert parse_save_maps(value) == expected


def test_save_maps_names_the_valid_maps_for_an_unknown_one():
    with pytest.raises(ValueError, match="unknown map.*residual.*probability, aova_map, pseudo_healthy"):
        parse_save_maps("probability,residual")


@pytest.mark.parametrize(
    "save_maps,evaluate,expected",
    [((), False, ()), ((), True, ("aova_map",)), ("all", False, ("aova_map", "pseudo_healthy")), (["probability"], False, ())],
)
def test_the_pipeline_brings_back_the_maps_written_and_the_aova_map_for_evaluation(save_maps, evaluate, expected):
    assert pipeline_maps(save_maps, evaluate) == expected
