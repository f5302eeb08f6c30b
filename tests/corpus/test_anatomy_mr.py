import numpy as np
import pytest

from corpus import OrganLabel as L
from corpus.anatomy import TissueContrast
from corpus.anatomy_mr import build_head
from corpus.geometry import VoxelGrid


@pytest.fixture(scope="module")
def head():
    return build_head(VoxelGrid((64, 64, 64), (3.0, 3.0, 3.0)), np.random.default_rng(3))


def test_flair_contrast_gray_above_white_and_csf_dark(head):
    def median(label):
        return float(np.median(head.image[head.labels == label]))

    assert head.contrast is TissueContrast.T2_FLAIR
    assert median(L.GRAY_MATTER) > median(L.WHITE_MATTER) * 1.1
    assert median(L.CSF) < 0.3 * median(L.WHITE_MATTER)
    assert median(L.VENTRICLES) < 0.3 * median(L.WHITE_MATTER)
    assert median(L.SKULL) < median(L.CSF)


def test_gray_and_white_matter_have_brain_like_proportions(head):
    gray = np.count_nonzero(head.labels == L.GRAY_MATTER)
    white = np.count_nonzero(head.labels == L.WHITE_MATTER)
    assert 0.2 < gray / white < 1.5


def test_hemispheres_are_roughly_symmetric(head):
    white = head.labels == L.WHITE_MATTER
    half = white.shape[0] // 2
    right, left = np.count_nonzero(white[half:]), np.count_nonzero(white[:half])
    assert abs(right - left) / (right + left) < 0.1


def test_brain_is_enclosed_by_skull_on_every_side_in_the_axial_midplane(head):
    k = head.labels.shape[2] // 2
    slice_labels = head.labels[:, :, k]
    cerebral = np.isin(slice_labels, (L.GRAY_MATTER, L.WHITE_MATTER))
    i, j = np.argwhere(cerebral).mean(axis=0).astype(int)
    for ray in (slice_labels[i, j:], slice_labels[i, j::-1], slice_labels[i:, j], slice_labels[i::-1, j]):
        assert L.SKULL in ray and L.SCALP in ray


def test_frontal_region_is_anterior_white_matter(head):
    region = head.regions["brain_frontal_white_matter"]
    assert region.any()
    assert (head.labels[region] == L.WHITE_MATTER).all()
    assert np.argwhere(region)[:, 1].mean() > np.argwhere(head.labels == L.WHITE_MATTER)[:, 1].mean()
