"""Contrast and noise against the ranges of benchmark.md.

benchmark.md (version 2): lesions as real scans show them (a mean darkening of about 30-80 HU for
liver tumors), a tail of subtle ones, CT noise of 10 to 20 HU SD.
"""

import dataclasses

import numpy as np
import pytest
from corpus_cases import medium_case

from corpus import OrganLabel, generate_case
from corpus.quality import case_quality, estimate_noise_sd, measure_contrast, measure_noise_sd, robust_sd
from scripts.lesion_synthesis import LESION_LAWS, SizeClass

SEEDS = range(20, 28)


def test_robust_sd_matches_a_gaussian_sd():
    values = np.random.default_rng(0).normal(5.0, 12.0, 200_000)
    assert robust_sd(values) == pytest.approx(12.0, rel=0.02)


def test_measure_contrast_recovers_a_known_difference():
    rng = np.random.default_rng(1)
    image = rng.normal(100.0, 10.0, (40, 40, 40)).astype(np.float32)
    organ = np.zeros(image.shape, bool)
    organ[5:35, 5:35, 5:35] = True
    tumor = np.zeros(image.shape, bool)
    tumor[15:25, 15:25, 15:25] = True
    image[tumor] -= 15.0
    assert measure_contrast(image, tumor, organ, (1.0, 1.0, 1.0)) == pytest.approx(-15.0, abs=1.5)
    assert measure_noise_sd(image, organ, exclude=tumor) == pytest.approx(10.0, rel=0.05)
    assert estimate_noise_sd(image, organ & ~tumor) == pytest.approx(10.0, rel=0.05)


def test_ct_noise_sd_is_within_the_benchmark_range():
    measured = [case_quality(medium_case("healthy CT", seed))["noise_sd"] for seed in SEEDS]
    drawn = [medium_case("healthy CT", seed).imaging["noise_sd_hu"] for seed in SEEDS]
    assert all(10.0 <= d <= 20.0 for d in drawn)
    # ROI SD in the liver: the drawn noise plus a few HU of tissue texture.
    assert all(9.5 <= m <= 21.5 for m in measured), measured
    assert max(measured) - min(measured) > 3.0  # the noise level varies between cases


@pytest.mark.parametrize("category", ["liver tumor", "pancreas tumor", "kidney tumor", "hepatic vessel tumor"])
def test_solid_organ_tumors_are_visible_on_the_final_image(category):
    # benchmark.md v2: lesions as real scans show them, with only a tail of subtle ones. Measured
    # after blur and noise, on cases large enough for a stable mean.
    measured = []
    for seed in SEEDS:
        case = medium_case(category, seed)
        if case.tumor_mask.sum() >= 30:
            measured.append(case_quality(case)["contrast"])
    assert len(measured) >= 4, measured
    assert all(c < 0 for c in measured), measured  # hypodense to the organ
    assert float(np.median(np.abs(measured))) >= 25.0, measured
    assert np.mean(np.abs(measured) < 20.0) <= 0.3, measured  # subtle lesions are a tail


def test_the_weakest_hepatic_vessel_draw_keeps_20_hu_at_the_corpus_grid(monkeypatch):
    # The weakest draw of that law outside the subtle tail: tiny lesions beside bright veins at the
    # law's lowest delta, at the corpus's own 2 mm grid, where partial volume and blur take the most.
    # (Corpus v2 once had 21% of hepatic-vessel cases under 20 HU, against the 15% benchmark.md
    # allows, while the coarser grid above passed; at its delta of 45 HU this measured 13-23 HU.)
    finding = "hepatic vessel tumor"
    low = LESION_LAWS[finding].delta_hu[0]
    weakest = dataclasses.replace(LESION_LAWS[finding], size_p={SizeClass.TINY: 1.0}, subtle_p=0.0, delta_hu=(low, low))
    monkeypatch.setitem(LESION_LAWS, finding, weakest)
    measured = [abs(case_quality(generate_case(finding, seed, size=(128, 128, 128), spacing=(2.0, 2.0, 2.0)))["contrast"]) for seed in range(40, 46)]
    assert min(measured) >= 20.0, measured


def test_mr_gliomas_are_brighter_than_white_matter_without_being_trivial():
    relative = [case_quality(medium_case("brain tumor", seed))["contrast_relative"] for seed in SEEDS]
    assert all(0.05 < r < 1.0 for r in relative), relative


def test_mr_noise_is_a_few_percent_of_white_matter():
    for seed in SEEDS:
        case = medium_case("healthy MR", seed)
        white = case.image[case.organ_labels == OrganLabel.WHITE_MATTER]
        assert 0.01 < case_quality(case)["noise_sd"] / float(np.median(white)) < 0.08
