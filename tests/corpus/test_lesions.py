import numpy as np
import pytest

from corpus import OrganLabel, TumorPart, draw_attributes, load_vocabulary
from corpus.anatomy_ct import build_torso
from corpus.anatomy_mr import build_head
from corpus.geometry import VoxelGrid
from corpus.labels import host_labels
from corpus.lesions import LOCATION_REGIONS, MIN_DIAMETER_MM, insert_lesions

CT_GRID = VoxelGrid((64, 64, 64), (4.0, 4.0, 4.0))
MR_GRID = VoxelGrid((64, 64, 64), (3.0, 3.0, 3.0))


@pytest.fixture(scope="module")
def torso():
    return build_torso(CT_GRID, np.random.default_rng(11))


@pytest.fixture(scope="module")
def head():
    return build_head(MR_GRID, np.random.default_rng(12))


def test_draw_attributes_takes_one_vocabulary_value_per_kind():
    vocabulary = load_vocabulary()
    for finding, entry in vocabulary["findings"].items():
        drawn = draw_attributes(finding, np.random.default_rng(0))
        assert list(drawn) == [k for k in vocabulary["attribute_kinds"] if k in entry["attributes"]]
        for kind, value in drawn.items():
            assert value in entry["attributes"][kind]


def test_every_location_phrase_of_the_vocabulary_has_a_region():
    phrases = {p for f in load_vocabulary()["findings"].values() for p in f["attributes"]["location"]}
    assert phrases <= set(LOCATION_REGIONS)


def test_unknown_finding_and_bad_override_are_rejected(torso):
    with pytest.raises(ValueError, match="finding must be one of"):
        draw_attributes("stomach tumor", np.random.default_rng(0))
    with pytest.raises(ValueError, match="attributes\\['margin'\\]"):
        insert_lesions(torso, "liver tumor", np.random.default_rng(0), attributes={"margin": "fuzzy"})


@pytest.mark.parametrize("finding", ["liver tumor", "kidney tumor", "pancreas tumor", "colon tumor", "lung tumor", "hepatic vessel tumor"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ct_tumors_lie_inside_their_host_organ(torso, finding, seed):
    inserted = insert_lesions(torso, finding, np.random.default_rng(seed))
    tumor = inserted.tumor_mask > 0
    organ = load_vocabulary()["findings"][finding]["organ"]
    assert tumor.any()
    assert np.isin(torso.labels[tumor], host_labels(organ)).all()
    assert np.array_equal(inserted.tumor_parts > 0, tumor)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gliomas_lie_in_cerebral_tissue_with_edema_around_a_solid_core(head, seed):
    inserted = insert_lesions(head, "brain tumor", np.random.default_rng(seed))
    tumor = inserted.tumor_mask > 0
    assert np.isin(head.labels[tumor], host_labels("brain")).all()
    parts = inserted.tumor_parts
    assert (parts == TumorPart.SOLID).any() and (parts == TumorPart.EDEMA).any()
    # FLAIR: the lesion is brighter than the white matter it replaces.
    white = head.labels == OrganLabel.WHITE_MATTER
    assert inserted.image[tumor].mean() > np.median(head.image[white]) * 1.2


def test_location_attribute_places_the_centre_in_the_named_region(torso):
    for location in ("in the head of the pancreas", "in the tail of the pancreas"):
        for seed in range(3):
            inserted = insert_lesions(torso, "pancreas tumor", np.random.default_rng(seed), count=1, attributes={"location": location})
            record = inserted.lesions[0]
            assert record.location_region == LOCATION_REGIONS[location]
            index = np.rint(np.linalg.solve(torso.affine, np.append(record.center_mm, 1.0))[:3]).astype(int)
            assert torso.regions[record.location_region][tuple(index)]


def test_lesion_sizes_span_five_millimetres_to_several_centimetres(torso):
    diameters = []
    counts = []
    for seed in range(30):
        inserted = insert_lesions(torso, "liver tumor", np.random.default_rng(seed))
        diameters += [r.diameter_mm for r in inserted.lesions]
        counts.append(len(inserted.lesions))
    assert min(diameters) >= MIN_DIAMETER_MM and min(diameters) < 10.0
    assert max(diameters) > 40.0
    assert max(counts) >= 3 and counts.count(1) >= 5  # several lesions in some cases only


def test_ill_defined_margin_fades_into_the_organ_and_well_defined_does_not(torso):
    def halo(margin):
        inserted = insert_lesions(
            torso,
            "liver tumor",
            np.random.default_rng(4),
            count=1,
            attributes={
                "margin": margin,
                "intensity": "hypodense",
                "shape": "round",
                "texture": "homogeneous",
                "enhancement": "arterial hyperenhancement with washout",
            },
        )
        from scipy import ndimage

        tumor = inserted.tumor_mask > 0
        ring = ndimage.binary_dilation(tumor, iterations=1) & ~tumor & (torso.labels == OrganLabel.LIVER)
        return float(np.mean(torso.image[ring] - inserted.image[ring]))

    assert halo("ill-defined") > 3.0 * max(halo("well-defined"), 1.0)


def test_insertion_is_deterministic_and_leaves_the_host_untouched(torso):
    before = torso.image.copy()
    a = insert_lesions(torso, "kidney tumor", np.random.default_rng(9))
    b = insert_lesions(torso, "kidney tumor", np.random.default_rng(9))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.tumor_mask, b.tumor_mask)
    assert np.array_equal(torso.image, before)
    assert [r.to_json() for r in a.lesions] == [r.to_json() for r in b.lesions]
