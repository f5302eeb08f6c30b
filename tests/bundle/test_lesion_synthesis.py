"""The lesion laws of scripts.lesion_synthesis: contrast and size per organ, hosts, the transform."""

from functools import cache, lru_cache

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from corpus.anatomy_ct import build_torso
from corpus.geometry import VoxelGrid
from scripts.lesion_synthesis import (
    LESION_LAWS,
    SUBTLE_CONTRAST_HU,
    IntensityLaw,
    RandLesionSynthesisd,
    SizeClass,
    lesion_texture,
    synthesize_lesions,
)
from scripts.organ_labels import OrganLabel

GRID = VoxelGrid((96, 96, 96), (8.0 / 3.0,) * 3)  # the full 256 mm torso field at a third of the cost
TORSOS = range(3)
DRAWS = range(14)


@lru_cache(maxsize=4)
def torso(seed):
    return build_torso(GRID, np.random.default_rng(seed))


@cache
def draws(finding):
    out = []
    for t in TORSOS:
        anatomy = torso(t)
        for d in DRAWS:
            out.append((anatomy, synthesize_lesions(anatomy.image, anatomy.labels, finding, GRID.spacing, np.random.default_rng(1000 * t + d))))
    return out


def host_mask(anatomy, finding):
    return np.isin(anatomy.labels, [int(v) for v in LESION_LAWS[finding].host])


def case_contrast(anatomy, result, finding):
    """Host median (outside the lesion) minus the lesion mean, in HU, on the clean image."""
    mask = result.tumor_mask > 0
    host = host_mask(anatomy, finding) & ~mask
    return float(np.median(anatomy.image[host]) - result.image[mask].mean())


def test_the_liver_law_is_the_published_recipe():
    law = LESION_LAWS["liver tumor"]
    assert law.law is IntensityLaw.SUBTRACT and law.delta_hu == (65.0, 145.0)
    assert set(law.size_p) == set(SizeClass) and all(p == pytest.approx(0.2) for p in law.size_p.values())
    assert law.count_range(SizeClass.TINY) == (3, 10) and law.count_range(SizeClass.LARGE) == (1, 3)


def test_every_seen_finding_has_a_law_of_its_own_with_a_source():
    for finding in ("kidney tumor", "pancreas tumor", "colon tumor", "lung tumor", "hepatic vessel tumor"):
        law = LESION_LAWS[finding]
        assert law.source and law.finding == finding
        assert (law.delta_hu, dict(law.size_p)) != (LESION_LAWS["liver tumor"].delta_hu, dict(LESION_LAWS["liver tumor"].size_p))


@pytest.mark.parametrize("finding", ["liver tumor", "hepatic vessel tumor", "kidney tumor", "pancreas tumor"])
def test_solid_organ_lesions_are_darker_than_their_organ_with_a_subtle_tail(finding):
    contrasts = np.array([case_contrast(a, r, finding) for a, r in draws(finding)])
    assert (contrasts > 0.0).all(), contrasts.round(1)
    # Only a tail under 20 HU (benchmark.md: at most 15%; a margin for 42 draws).
    assert np.mean(contrasts < SUBTLE_CONTRAST_HU) <= 0.2, contrasts.round(1)
    low, high = LESION_LAWS[finding].delta_hu
    # The mean darkening of the bulk follows the law's delta (about half of it, the recipe's texture).
    assert 0.3 * low <= np.median(contrasts) <= 0.7 * high, contrasts.round(1)


def test_liver_darkening_is_the_recipes_30_to_80_hu():
    contrasts = np.array([case_contrast(a, r, "liver tumor") for a, r in draws("liver tumor") if not r.lesions[0].subtle])
    assert 25.0 <= np.percentile(contrasts, 10) and np.percentile(contrasts, 90) <= 100.0, contrasts.round(1)


def test_lung_nodules_are_soft_tissue_in_aerated_lung():
    low, high = LESION_LAWS["lung tumor"].delta_hu
    for anatomy, result in draws("lung tumor"):
        mask = result.tumor_mask > 0
        if result.lesions[0].part_solid:  # a ground-glass rim (-650 to -350 HU) around a solid core
            assert -700.0 <= result.image[mask].mean() and result.image[mask].max() > low - 20.0
        else:  # solid to its edge, even a tiny nodule: the drawn soft tissue, +-15 HU of texture
            assert low - 20.0 <= result.image[mask].mean() <= high + 20.0, result.image[mask].mean()
        outside = (anatomy.image < -600) & ~mask
        assert result.image[outside].mean() < -600.0  # the lung around it stays aerated


def test_colon_masses_fill_the_lumen_with_soft_tissue():
    low, high = LESION_LAWS["colon tumor"].delta_hu
    for _anatomy, result in draws("colon tumor"):
        values = result.image[result.tumor_mask > 0]
        assert low - 20.0 <= values.mean() <= high + 20.0 and np.percentile(values, 5) > -60.0, values.mean()


@pytest.mark.parametrize("finding", sorted(LESION_LAWS))
def test_lesions_stay_in_their_host_or_grow_into_fat_only_where_the_law_allows(finding):
    law = LESION_LAWS[finding]
    for anatomy, result in draws(finding):
        mask = result.tumor_mask > 0
        assert mask.any()
        outside = mask & ~host_mask(anatomy, finding)
        if law.bulge_p == 0.0:
            assert not outside.any()
        else:
            assert (anatomy.labels[outside] == OrganLabel.FAT).all()
            assert np.isin(result.organ_labels[mask], [int(v) for v in law.host]).all()  # the mass takes its organ's label
        changed = np.abs(result.image - anatomy.image) > 1e-3
        # Only the host (and the allowed fat) changes: the edge blur never paints other organs.
        allowed = host_mask(anatomy, finding) | (anatomy.labels == OrganLabel.FAT)
        assert not (changed & ~allowed).any()


def test_size_classes_order_the_lesion_volumes():
    volumes: dict[str, list[float]] = {}
    for _anatomy, result in draws("liver tumor"):
        for lesion in result.lesions:
            if result.size_class != "mix":
                volumes.setdefault(lesion.size_class, []).append(lesion.volume_ml)
    medians = [np.median(volumes[c]) for c in ("tiny", "small", "medium", "large") if c in volumes]
    assert len(medians) >= 3 and medians == sorted(medians), volumes.keys()
    # A tiny lesion (r 4 mm) is about 0.27 mL, a large one (r 32 mm) well over 20 mL before clipping.
    assert np.median(volumes["tiny"]) < 1.0


def test_hepatic_vessel_tumors_abut_the_vessels_and_spare_them():
    law = LESION_LAWS["hepatic vessel tumor"]
    from scipy import ndimage

    for anatomy, result in draws("hepatic vessel tumor"):
        vessels = anatomy.labels == OrganLabel.HEPATIC_VESSEL
        mask = result.tumor_mask > 0
        assert not (mask & vessels).any()
        np.testing.assert_array_equal(result.image[vessels], anatomy.image[vessels])
        distance = ndimage.distance_transform_edt(~vessels, sampling=GRID.spacing)
        for lesion in result.lesions:
            assert distance[tuple(lesion.center_voxel)] <= law.near_mm + 1e-6


def test_the_same_seed_gives_the_same_lesions_and_inputs_are_untouched():
    anatomy = torso(0)
    before = anatomy.image.copy()
    a = synthesize_lesions(anatomy.image, anatomy.labels, "kidney tumor", GRID.spacing, np.random.default_rng(5))
    b = synthesize_lesions(anatomy.image, anatomy.labels, "kidney tumor", GRID.spacing, np.random.default_rng(5))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(anatomy.image, before)


def test_normalised_units_give_the_same_lesions_as_hu():
    anatomy = torso(1)
    hu = synthesize_lesions(anatomy.image, anatomy.labels, "lung tumor", GRID.spacing, np.random.default_rng(3))
    scaled = synthesize_lesions(
        anatomy.image / 2000.0 + 0.5, anatomy.labels, "lung tumor", GRID.spacing, np.random.default_rng(3), units_per_hu=1 / 2000.0, zero_hu_value=0.5
    )
    np.testing.assert_array_equal(hu.tumor_mask, scaled.tumor_mask)
    np.testing.assert_allclose((scaled.image - 0.5) * 2000.0, hu.image, atol=0.05)


def test_texture_follows_the_recipes_normalisation():
    texture = lesion_texture((40, 40, 40), (1.0, 1.0, 1.0), np.random.default_rng(0))
    assert texture.min() >= 0.0 and texture.max() <= 1.0
    assert 0.35 <= texture[texture > 0.12].mean() <= 0.6


def test_unknown_finding_or_missing_organ_is_refused():
    anatomy = torso(0)
    with pytest.raises(ValueError, match="finding must be one of"):
        synthesize_lesions(anatomy.image, anatomy.labels, "brain tumor", GRID.spacing, np.random.default_rng(0))
    with pytest.raises(ValueError, match="has no kidney"):
        synthesize_lesions(anatomy.image, np.zeros_like(anatomy.labels), "kidney tumor", GRID.spacing, np.random.default_rng(0))


def _item(anatomy, tumor=False):
    affine = torch.diag(torch.tensor([*GRID.spacing, 1.0], dtype=torch.float64))
    label = np.zeros((1, *GRID.shape), np.float32)
    if tumor:
        label[0, 40:44, 40:44, 40:44] = 1
    return {
        "image": MetaTensor(torch.from_numpy(anatomy.image[None] / 2000.0 + 0.5), affine=affine),
        "label": MetaTensor(torch.from_numpy(label), affine=affine),
        "organs": MetaTensor(torch.from_numpy(anatomy.labels[None].astype(np.float32)), affine=affine),
    }


def test_the_transform_draws_a_seen_finding_into_a_healthy_item():
    transform = RandLesionSynthesisd(("image", "label"), "organs", ["kidney tumor", "pancreas tumor"], units_per_hu=1 / 2000.0, zero_hu_value=0.5, prob=1.0)
    transform.set_random_state(seed=0)
    out = transform(_item(torso(2)))
    assert out["finding"] in ("kidney tumor", "pancreas tumor")
    assert out["label"].sum() > 0 and isinstance(out["image"], MetaTensor)
    assert out["image"].shape == (1, *GRID.shape)
    changed = (out["image"] - _item(torso(2))["image"]).abs() > 1e-6
    assert changed.any() and not (changed & (out["label"] == 0) & (out["organs"] == 0)).any()


def test_the_transform_leaves_labelled_tumors_and_unlucky_draws_alone():
    transform = RandLesionSynthesisd(("image", "label"), "organs", ["kidney tumor"], prob=1.0)
    item = _item(torso(0), tumor=True)
    out = transform(item)
    assert out["finding"] == "" and torch.equal(out["image"], item["image"])
    never = RandLesionSynthesisd(("image", "label"), "organs", ["kidney tumor"], prob=0.0)
    assert never(_item(torso(0)))["finding"] == ""


def test_the_transform_refuses_unknown_findings():
    with pytest.raises(ValueError, match="findings must be"):
        RandLesionSynthesisd(("image", "label"), "organs", ["glioma"])
