import numpy as np
import pytest

from corpus import OrganLabel as L
from corpus.anatomy_ct import build_torso
from corpus.geometry import VoxelGrid


@pytest.fixture(scope="module")
def torso():
    return build_torso(VoxelGrid((64, 64, 64), (4.0, 4.0, 4.0)), np.random.default_rng(5))


@pytest.mark.parametrize(
    ("label", "low", "high"),
    [
        (L.BACKGROUND, -1001, -999),
        (L.FAT, -120, -80),
        (L.MUSCLE, 35, 65),
        (L.LUNG, -900, -700),
        (L.LIVER, 85, 135),
        (L.SPLEEN, 95, 135),
        (L.KIDNEY, 110, 200),
        (L.PANCREAS, 75, 120),
        (L.BONE, 200, 700),
    ],
)
def test_tissues_have_portal_venous_hounsfield_values(torso, label, low, high):
    values = torso.image[torso.labels == label]
    assert values.size > 0
    assert low <= float(np.median(values)) <= high


def _centroid_mm(anatomy, label):
    index = np.argwhere(anatomy.labels == label).mean(axis=0)
    return (anatomy.affine @ np.append(index, 1.0))[:3]


def test_liver_is_on_the_patients_right_and_spleen_on_the_left(torso):
    # RAS: +x is the patient's right.
    assert _centroid_mm(torso, L.LIVER)[0] > 0 > _centroid_mm(torso, L.SPLEEN)[0]


def test_lungs_are_above_the_kidneys_and_the_spine_is_posterior(torso):
    assert _centroid_mm(torso, L.LUNG)[2] > _centroid_mm(torso, L.KIDNEY)[2] + 50
    assert _centroid_mm(torso, L.SPINAL_CANAL)[1] < _centroid_mm(torso, L.PANCREAS)[1]


def test_location_regions_lie_inside_their_organs_and_are_not_empty(torso):
    owners = {"liver": (L.LIVER, L.HEPATIC_VESSEL), "kidney": (L.KIDNEY,), "pancreas": (L.PANCREAS,), "colon": (L.COLON,), "lung": (L.LUNG,)}
    for name, region in torso.regions.items():
        assert region.any(), name
        assert np.isin(torso.labels[region], owners[name.split("_")[0]]).all(), name


def test_right_lobe_is_right_of_left_lobe(torso):
    right = np.argwhere(torso.regions["liver_right_lobe"])[:, 0].mean()
    left = np.argwhere(torso.regions["liver_left_lobe"])[:, 0].mean()
    assert right > left


def test_seed_changes_the_anatomy():
    grid = VoxelGrid((48, 48, 48), (5.0, 5.0, 5.0))
    a = build_torso(grid, np.random.default_rng(1))
    b = build_torso(grid, np.random.default_rng(2))
    assert not np.array_equal(a.labels, b.labels)
