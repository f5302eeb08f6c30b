import numpy as np
import pytest

from scripts.metrics import dice_score, false_positive_volume_ml, normalized_surface_dice


def _cube(offset=0):
    mask = np.zeros((20, 20, 20), dtype=np.uint8)
    mask[5 + offset : 10 + offset, 5:10, 5:10] = 1
    return mask


def test_dice_of_shifted_cubes():
    assert dice_score(_cube(), _cube()) == pytest.approx(1.0)
    assert dice_score(_cube(), _cube(1)) == pytest.approx(0.8)
    assert dice_score(_cube(), _cube(5)) == pytest.approx(0.0)


def test_nsd_counts_boundaries_within_tolerance():
    assert normalized_surface_dice(_cube(), _cube(1), (1, 1, 1), tolerance_mm=1.0) == pytest.approx(1.0)
    assert normalized_surface_dice(_cube(), _cube(3), (1, 1, 1), tolerance_mm=1.0) < 0.8
    # The same voxel shift is farther in mm at a coarser spacing.
    assert normalized_surface_dice(_cube(), _cube(1), (3, 3, 3), tolerance_mm=1.0) < 1.0


def test_empty_reference_convention():
    empty = np.zeros((20, 20, 20), dtype=np.uint8)
    assert dice_score(empty, empty) == 1.0 and normalized_surface_dice(empty, empty, (1, 1, 1)) == 1.0
    assert dice_score(_cube(), empty) == 0.0
    assert normalized_surface_dice(empty, _cube(), (1, 1, 1)) == 0.0


def test_false_positive_volume_in_millilitres():
    assert false_positive_volume_ml(_cube(1), _cube(), (2, 2, 2)) == pytest.approx(25 * 8 / 1000)
    assert false_positive_volume_ml(_cube(), _cube(), (2, 2, 2)) == 0.0


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="differs from reference"):
        dice_score(np.zeros((2, 2, 2)), np.zeros((3, 3, 3)))
