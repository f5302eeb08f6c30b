import json
import shutil
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from operator_helpers import load_selection

from operators.series_rules import DEFAULT_RULES_PATH, ClinicalSeriesSelectorOperator, load_rules, reconstruction_problem
from tools.demo import write_ct_series

STUDY_UID = "1.2.826.0.1.3680043.8.498.1000001"


def _write(folder, *, seed, slices=20, affine=None, image_type=("ORIGINAL", "PRIMARY", "AXIAL"), description="series"):
    """A small CT series (gradient image) in the shared study."""
    image = np.linspace(-200, 200, 24 * 20 * slices, dtype=np.float32).reshape(24, 20, slices)
    affine = np.diag([1.5, 1.5, 3.0, 1.0]) if affine is None else affine
    files = write_ct_series(image, affine, folder, seed=seed, image_type=image_type, series_description=description)
    for path in files:
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID = STUDY_UID
        dataset.save_as(path)
    return files


def _select(fragment, folder, rules_file=None):
    selection, _ = load_selection(fragment, folder, rules_file=rules_file)
    assert len(selection) == 1 and len(selection[0].selected_series) == 1
    return selection[0].selected_series[0]


def test_default_rules_are_valid():
    _, rules = load_rules()
    assert [r.name for r in rules][:2] == ["CT axial original primary", "MR axial original primary"]
    assert all(r.min_slices >= 16 for r in rules)


def test_phantom_ct_is_selected_as_axial_primary(fragment, phantom_ct):
    selected = _select(fragment, phantom_ct.folder)
    assert selected.selection_name == "CT axial original primary"
    assert len(selected.series.get_sop_instances()) == len(phantom_ct.files)


def test_radiologist_choice_among_localizer_short_and_derived_series(fragment, tmp_path):
    _write(tmp_path / "localizer", seed=1, slices=3, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    _write(tmp_path / "short", seed=2, slices=8)
    _write(tmp_path / "derived", seed=3, slices=40, image_type=("DERIVED", "SECONDARY", "AXIAL"))
    main = _write(tmp_path / "main", seed=4, slices=24, description="main axial")
    _write(tmp_path / "thin", seed=5, slices=18)
    selected = _select(fragment, tmp_path)
    assert selected.series.SeriesInstanceUID == pydicom.dcmread(main[0]).SeriesInstanceUID


def test_axial_series_is_preferred_to_a_larger_sagittal_one(fragment, tmp_path):
    sagittal = np.array([[0, 0, 3.0, 0], [2.0, 0, 0, 0], [0, -2.0, 0, 0], [0, 0, 0, 1]])
    _write(tmp_path / "sagittal", seed=6, slices=30, affine=sagittal)
    axial = _write(tmp_path / "axial", seed=7, slices=17)
    selected = _select(fragment, tmp_path)
    assert selected.series.SeriesInstanceUID == pydicom.dcmread(axial[0]).SeriesInstanceUID


def test_sagittal_series_alone_is_taken_as_reconstructable(fragment, tmp_path):
    sagittal = np.array([[0, 0, 3.0, 0], [2.0, 0, 0, 0], [0, -2.0, 0, 0], [0, 0, 0, 1]])
    _write(tmp_path, seed=6, slices=20, affine=sagittal)
    assert _select(fragment, tmp_path).selection_name == "CT original primary reconstructable"


def test_too_few_slices_gives_a_reason_per_series(fragment, tmp_path):
    _write(tmp_path / "a", seed=8, slices=6)
    _write(tmp_path / "b", seed=9, slices=3, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    with pytest.raises(ValueError, match=r"no usable series in the input \(2 found; rules: default\)") as error:
        load_selection(fragment, tmp_path)
    assert "6 slice(s), fewer than the 16" in str(error.value)
    # The localizer: the rule that excluded it, the condition and the series' own value.
    assert (
        "matches no selection rule (nearest: 'CT axial original primary', ImageType is ORIGINAL\\PRIMARY\\LOCALIZER, "
        "the rule wants ['ORIGINAL', 'PRIMARY', '!LOCALIZER'])"
    ) in str(error.value)
    assert "\n" not in str(error.value)


def test_every_condition_a_series_fails_of_the_nearest_rule_is_named(fragment, phantom_ct, tmp_path):
    rules = {
        "selections": [
            {"name": "MR only", "conditions": {"Modality": "MR", "SeriesDescription": "(?i)t1", "BodyPartExamined": "HEAD"}},
            {"name": "arterial CT", "conditions": {"Modality": "CT", "SeriesDescription": "(?i)arterial"}},
        ]
    }
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    with pytest.raises(ValueError) as error:
        load_selection(fragment, phantom_ct.folder, rules_file=path)
    assert "(nearest: 'arterial CT', SeriesDescription is Phantom CT portal venous, the rule wants '(?i)arterial')" in str(error.value)


def test_the_sdk_matching_is_reached_through_its_public_filter(fragment, phantom_ct):
    # The selector calls DICOMSeriesSelectorOperator.filter (public) with one selection at a
    # time; this pins what it relies on: all matches of a study, each with its selection name.
    from monai.deploy.operators import DICOMSeriesSelectorOperator

    from operators.dicom_input import DICOMInputLoaderOperator

    studies = DICOMInputLoaderOperator(fragment, input_folder=phantom_ct.folder, name="sdk_filter_loader").load_data_to_studies(phantom_ct.folder)
    selector = DICOMSeriesSelectorOperator(fragment, name="sdk_filter_selector")
    rules = {"selections": [{"name": "axial CT", "conditions": {"Modality": "(?i)^CT$", "ImageType": ["PRIMARY", "!LOCALIZER"]}}]}
    (found,) = selector.filter(rules, studies, all_matched=True)
    assert [(s.selection_name, s.series) for s in found.selected_series] == [("axial CT", studies[0].get_all_series()[0])]
    rules["selections"][0]["conditions"]["ImageType"] = ["!AXIAL"]
    assert selector.filter(rules, studies, all_matched=True) == []


def test_missing_slice_makes_a_series_unusable(fragment, tmp_path):
    files = _write(tmp_path, seed=10, slices=20)
    files[9].unlink()
    with pytest.raises(ValueError, match="irregular slice spacing"):
        load_selection(fragment, tmp_path)


def test_reconstruction_problems_are_named(fragment, tmp_path, phantom_ct):
    from operators.dicom_input import DICOMInputLoaderOperator

    folder = tmp_path / "tilted"
    shutil.copytree(phantom_ct.folder, folder)
    path = sorted(folder.glob("*.dcm"))[5]
    dataset = pydicom.dcmread(path)
    dataset.ImageOrientationPatient = [1, 0, 0, 0, 0.8, 0.6]
    dataset.save_as(path)
    loader = DICOMInputLoaderOperator(fragment, input_folder=folder, name="tilt_loader")
    series = loader.load_data_to_studies(folder)[0].get_all_series()[0]
    assert reconstruction_problem(series) == f"slices of different orientations ({path.name})"


def test_compressed_pixel_data_without_a_decoder_names_the_transfer_syntax(fragment, tmp_path, monkeypatch):
    from operators import series_rules
    from operators.dicom_input import DICOMInputLoaderOperator

    for path in _write(tmp_path, seed=11, slices=20):
        dataset = pydicom.dcmread(path)
        dataset.compress(pydicom.uid.RLELossless)
        dataset.save_as(path)
    series = DICOMInputLoaderOperator(fragment, input_folder=tmp_path, name="rle_loader").load_data_to_studies(tmp_path)[0].get_all_series()[0]
    assert reconstruction_problem(series) is None  # the pinned decoders read it
    # As on a machine without pylibjpeg: one line naming the syntax, not the SDK's traceback.
    monkeypatch.setattr(series_rules, "get_decoder", lambda uid: SimpleNamespace(is_available=False))
    assert reconstruction_problem(series) == (
        "pixel data of CT000001.dcm is stored in transfer syntax RLE Lossless (1.2.840.10008.1.2.5), "
        "which no installed decoder reads: send the series uncompressed"
    )


def test_custom_rules_file_replaces_the_defaults(fragment, phantom_ct, tmp_path):
    rules = {"selections": [{"name": "arterial only", "conditions": {"Modality": "CT", "SeriesDescription": "(?i)arterial"}}]}
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    with pytest.raises(ValueError, match="matches no selection rule"):
        load_selection(fragment, phantom_ct.folder, rules_file=path)
    rules["selections"][0]["conditions"]["SeriesDescription"] = "(?i)portal"
    path.write_text(json.dumps(rules))
    assert _select(fragment, phantom_ct.folder, rules_file=path).selection_name == "arterial only"


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('{"selections": []}', 'needs a non-empty "selections" list'),
        ('{"selections": [{"name": "x"}]}', "has no conditions"),
        ('{"selections": [{"name": "x", "conditions": {"Modality": "CT"}, "min_slices": 0}]}', "min_slices must be an integer >= 1"),
        ('{"selections": [{"name": "x", "conditions": {"Modality": "CT"}, "orientation": "oblique"}]}', "orientation must be one of"),
        ('{"selections": ["CT"]}', "selection 1 must be an object"),
        ('{"selections": [{"name": "x", "conditions": {"Modality": "CT"}, "min_slice": 3}]}', r"unknown key\(s\) min_slice"),
        ('{"selections": [{"name": "x", "conditions": {"Modality": {"is": "CT"}}}]}', "condition Modality must be text"),
        ('{"selections": [{"name": "x", "conditions": {"Modality": "[CT"}}]}', "not a valid regular expression"),
    ],
)
def test_bad_rules_file_is_refused(fragment, tmp_path, content, message):
    path = tmp_path / "rules.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        ClinicalSeriesSelectorOperator(fragment, rules_file=path, name="bad_rules_selector")


def test_rule_the_sdk_cannot_apply_is_a_clear_error(fragment, phantom_ct, tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"selections": [{"name": "odd", "conditions": {"Modality": "CT", "SliceThickness": [1, 2, 3]}}]}))
    with pytest.raises(ValueError, match="series rule 'odd' cannot be applied"):
        load_selection(fragment, phantom_ct.folder, rules_file=path)


def test_default_rules_file_is_shipped_next_to_the_module():
    assert DEFAULT_RULES_PATH.is_file() and DEFAULT_RULES_PATH.parent.name == "operators"
