"""Per-lesion measurements (scripts.lesion_measurements): volume, RECIST long axis, centroid, statistics."""

import numpy as np
import pytest

from scripts.lesion_measurements import measure_lesions


def _ball(shape, centre, radius_vox):
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius_vox


def test_an_empty_mask_has_no_lesions():
    assert measure_lesions(np.zeros((8, 8, 8)), np.eye(4), np.zeros((8, 8, 8))) == []


def test_a_ball_measures_its_volume_diameter_and_centre():
    shape, spacing = (60, 60, 40), (1.0, 1.0, 2.0)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-30.0, -30.0, -40.0)
    grid_mm = np.indices(shape).transpose(1, 2, 3, 0) * np.asarray(spacing)
    mask = np.linalg.norm(grid_mm - np.array([30.0, 25.0, 40.0]), axis=-1) <= 10.0
    image = np.where(mask, 40.0, 100.0)
    (lesion,) = measure_lesions(mask, affine, image, host_organ="liver")
    assert lesion.volume_ml == pytest.approx(4 / 3 * np.pi * 10**3 / 1000, rel=0.05)
    assert lesion.longest_axial_diameter_mm == pytest.approx(20.0, abs=1.5)
    assert lesion.centroid_ras_mm == pytest.approx((0.0, -5.0, 0.0), abs=0.2)
    assert lesion.centroid_lps_mm == pytest.approx((0.0, 5.0, 0.0), abs=0.2)
    assert (lesion.intensity_mean, lesion.intensity_sd) == (40.0, 0.0)
    assert lesion.host_organ == "liver" and lesion.aova_mean is None


def test_lesions_are_separate_components_largest_first_with_their_map_means():
    mask = np.zeros((40, 40, 20), bool)
    mask |= _ball(mask.shape, (10, 10, 10), 3)
    mask |= _ball(mask.shape, (28, 28, 10), 6)
    aova = np.where(mask, 0.9, 0.0)
    aova[:20] = np.where(mask[:20], 0.5, 0.0)
    lesions = measure_lesions(mask, np.eye(4), np.zeros(mask.shape), aova_map=aova, probability=mask * 0.8)
    assert [lesion.index for lesion in lesions] == [1, 2]
    assert lesions[0].volume_ml > lesions[1].volume_ml
    assert (lesions[0].aova_mean, lesions[1].aova_mean) == (0.9, 0.5)
    assert lesions[0].probability_mean == pytest.approx(0.8)


def test_the_long_axis_is_measured_in_the_axial_plane_from_edge_to_edge():
    # A bar of 10 voxels along x (0.8 mm) on one axial slice: 8 mm long, not 7.2 (centres).
    mask = np.zeros((20, 20, 10), bool)
    mask[5:15, 8, 4] = True
    (lesion,) = measure_lesions(mask, np.diag([0.8, 0.8, 3.0, 1.0]), np.zeros(mask.shape))
    assert lesion.longest_axial_diameter_mm == pytest.approx(8.0)
    assert lesion.axial_slice == 4
    # The same bar standing along z is 10 slices of one voxel: its axial diameter is one voxel.
    tall = np.zeros((20, 20, 12), bool)
    tall[8, 8, 1:11] = True
    (upright,) = measure_lesions(tall, np.diag([0.8, 0.8, 3.0, 1.0]), np.zeros(tall.shape))
    assert upright.longest_axial_diameter_mm == pytest.approx(0.8)


def test_the_axial_axis_follows_the_patient_not_the_array():
    # Array axis 0 runs head to foot (a sagittal-first array): axial slices are mask[i].
    mask = np.zeros((10, 30, 30), bool)
    mask[5, 5:25, 10] = True  # 20 voxels across one axial slice
    affine = np.array([[0, 0, 1.0, 0], [0, 1.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])
    (lesion,) = measure_lesions(mask, affine, np.zeros(mask.shape))
    assert lesion.longest_axial_diameter_mm == pytest.approx(20.0) and lesion.axial_slice == 5


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="differ in shape"):
        measure_lesions(np.zeros((4, 4, 4)), np.eye(4), np.zeros((4, 4, 5)))
