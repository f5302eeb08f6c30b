import nibabel as nib
import numpy as np
import pytest
from corpus_cases import SMALL, small_case

from corpus import Category, OrganLabel, generate_case, load_vocabulary
from corpus.labels import host_labels
from corpus.writer import write_case
from scripts.preprocessing import Modality

ALL = [c.value for c in Category]


@pytest.mark.parametrize("category", ["liver tumor", "brain tumor", "healthy CT"])
def test_same_seed_gives_byte_identical_volumes(category):
    a = generate_case(category, 42, **SMALL[Category(category).modality.value])
    b = generate_case(category, 42, **SMALL[Category(category).modality.value])
    for name in ("image", "organ_labels", "tumor_mask", "tumor_parts"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert a.metadata() == b.metadata()


@pytest.mark.parametrize("category", ["kidney tumor", "healthy MR"])
def test_different_seeds_give_different_volumes(category):
    a, b = small_case(category, 1), small_case(category, 2)
    assert not np.array_equal(a.image, b.image)
    assert not np.array_equal(a.organ_labels, b.organ_labels)


@pytest.mark.parametrize("category", ALL)
def test_case_fields_follow_the_contract(category):
    case = small_case(category, 3)
    assert case.image.dtype == np.float32 and case.image.shape == (64, 64, 64)
    assert case.organ_labels.dtype == np.uint8 and case.tumor_mask.dtype == np.uint8
    assert set(np.unique(case.tumor_mask)) <= {0, 1}
    assert nib.aff2axcodes(case.affine) == ("R", "A", "S")
    np.testing.assert_allclose(np.linalg.norm(case.affine[:3, :3], axis=0), case.spacing)
    assert case.modality is Category(category).modality
    if case.category.is_healthy:
        assert case.prompt == "" and not case.tumor_mask.any() and case.lesions == []
    else:
        assert case.prompt == category and case.tumor_mask.any()
        if case.modality.value == "MR":  # gliomas are built from the attribute vocabulary
            assert list(case.attributes) == load_vocabulary()["attribute_kinds"]
        else:  # CT lesions follow their synthesis law and record what was built
            assert {"size", "intensity"} <= set(case.attributes)


@pytest.mark.parametrize("category", [c.value for c in Category if not c.is_healthy])
@pytest.mark.parametrize("seed", [5, 6])
def test_every_tumor_lies_inside_its_host_organ(category, seed):
    case = small_case(category, seed)
    organ = load_vocabulary()["findings"][category]["organ"]
    assert np.isin(case.organ_labels[case.tumor_mask > 0], host_labels(organ)).all()


def test_healthy_case_is_the_tumor_free_counterpart_of_the_same_seed():
    tumor, healthy = small_case("liver tumor", 7), small_case("healthy CT", 7)
    assert np.array_equal(tumor.organ_labels, healthy.organ_labels)
    from scipy import ndimage

    # Beyond the lesion's soft margin and the partial-volume blur (a few voxels), nothing changes.
    far = ndimage.distance_transform_edt(tumor.tumor_mask == 0) > 5
    assert np.array_equal(tumor.image[far], healthy.image[far])
    assert not np.array_equal(tumor.image, healthy.image)


def test_ct_is_in_hounsfield_units_and_mr_in_positive_units():
    ct, mr = small_case("healthy CT", 8), small_case("healthy MR", 8)
    assert np.median(ct.image[ct.organ_labels == OrganLabel.BACKGROUND]) == pytest.approx(-1000, abs=30)
    assert ct.imaging["noise_sd_hu"] >= 10 and ct.imaging["noise_sd_hu"] <= 20
    assert mr.image.min() >= 0 and mr.modality is Modality.MR


def test_nifti_written_and_read_back_keeps_its_geometry(tmp_path):
    for category in ("pancreas tumor", "brain tumor"):
        case = generate_case(category, 9, size=(48, 40, 32), spacing=(2.5, 3.0, 3.5) if category != "brain tumor" else (2.0, 2.5, 3.0))
        paths = write_case(tmp_path, case)
        image = nib.load(tmp_path / paths["images"])
        assert image.shape == (48, 40, 32)
        np.testing.assert_allclose(image.affine, case.affine, atol=1e-5)
        np.testing.assert_allclose(image.header.get_zooms(), case.spacing, rtol=1e-6)
        assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
        np.testing.assert_allclose(image.header.get_qform(), case.affine, atol=1e-4)
        atol = 0.5 if case.modality is Modality.CT else 0.0  # CT is stored as int16 HU
        np.testing.assert_allclose(np.asarray(image.dataobj, dtype=np.float32), case.image, atol=atol)
        label = nib.load(tmp_path / paths["labels"])
        assert np.array_equal(np.asarray(label.dataobj), case.tumor_mask) and label.get_data_dtype() == np.uint8
        organs = nib.load(tmp_path / paths["organs"])
        assert np.array_equal(np.asarray(organs.dataobj), case.organ_labels)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"category": "stomach tumor", "seed": 1}, "category must be one of"),
        ({"category": "liver tumor", "seed": -1}, "seed"),
        ({"category": "liver tumor", "seed": 1, "size": (8, 64, 64)}, "size"),
        ({"category": "liver tumor", "seed": 1, "spacing": (2.0, -1.0, 2.0)}, "spacing"),
    ],
)
def test_bad_arguments_raise_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_case(**kwargs)


def _partial_volume_share(anatomy):
    """Share of liver-surface voxels that mix in a neighbour: more than 20 HU from the liver's level
    (the phantom's liver texture is a few HU, so a pure liver voxel stays within it)."""
    from scipy import ndimage

    liver = anatomy.labels == OrganLabel.LIVER
    surface = liver & ~ndimage.binary_erosion(liver)
    level = float(np.median(anatomy.image[liver & ~surface]))
    return float(np.mean(np.abs(anatomy.image[surface] - level) > 20.0))


def test_supersampled_anatomy_has_partial_volume_edges_instead_of_staircases():
    # benchmark.md v2: smooth organ surfaces with partial-volume edges. Drawn on the output grid,
    # a surface voxel is either fat or liver (a staircase); drawn twice finer and averaged down,
    # many surface voxels mix the two tissues.
    from corpus.anatomy_ct import build_torso
    from corpus.geometry import VoxelGrid
    from corpus.phantom import downsample_anatomy

    grid = VoxelGrid((48, 48, 48), (16.0 / 3.0,) * 3)
    staircase = build_torso(grid, np.random.default_rng(3))
    fine = build_torso(VoxelGrid((96, 96, 96), (8.0 / 3.0,) * 3), np.random.default_rng(3))
    smooth = downsample_anatomy(fine, grid, 2)
    coarse_share, smooth_share = _partial_volume_share(staircase), _partial_volume_share(smooth)
    assert coarse_share < 0.1 and smooth_share > 0.15 and smooth_share > 2.5 * coarse_share, (coarse_share, smooth_share)
    # Labels are the block majority: the liver keeps its volume within a few percent.
    ratio = (smooth.labels == OrganLabel.LIVER).sum() / (staircase.labels == OrganLabel.LIVER).sum()
    assert 0.85 < ratio < 1.15


def test_supersample_is_validated():
    with pytest.raises(ValueError, match="supersample"):
        generate_case("healthy CT", 1, size=(32, 32, 32), spacing=(8.0, 8.0, 8.0), supersample=5)


# Portal-venous CT, published means (HU): liver 100-130 with a local texture SD near 15 HU
# (benchmark.md), spleen 110-130, kidney cortex 150-200 in the nephrographic phase, pancreas
# 90-120, muscle 40-60, fat -120 to -80, aerated lung -900 to -700.
_PUBLISHED_HU = {
    OrganLabel.LIVER: (95, 135),
    OrganLabel.SPLEEN: (95, 135),
    OrganLabel.PANCREAS: (75, 125),
    OrganLabel.MUSCLE: (30, 70),
    OrganLabel.FAT: (-125, -75),
    OrganLabel.LUNG: (-900, -650),
}


def test_final_ct_intensities_match_published_portal_venous_values():
    from corpus_cases import medium_case

    for seed in (31, 32, 33):
        case = medium_case("healthy CT", seed)
        for label, (low, high) in _PUBLISHED_HU.items():
            values = case.image[case.organ_labels == label]
            assert low <= float(np.median(values)) <= high, (label.name, float(np.median(values)))
        liver = case.image[case.organ_labels == OrganLabel.LIVER]
        spread = float(np.subtract(*np.percentile(liver, [84, 16])) / 2.0)  # robust local SD
        assert 9.0 <= spread <= 30.0, spread
