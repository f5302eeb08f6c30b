import json

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from operators.report_operator import (
    HTML_REPORT_FILE_NAME,
    MONTAGE_FILE_NAME,
    PROVENANCE_FILE_NAME,
    ReportOperator,
    display_window,
    montage_slices,
)
from operators.seg_writer import DiffuGTSSegWriterOperator
from operators.series_rules import load_rules


@pytest.fixture(scope="module")
def report(fragment, segmentation_run, fast_config, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    seg_path = DiffuGTSSegWriterOperator(fragment, output_folder=folder, name="report_seg_writer").write(segmentation_run)
    operator = ReportOperator(fragment, output_folder=folder, config=fast_config, rules=load_rules()[1], name="test_report")
    montage, provenance = operator.write(segmentation_run, seg_path)
    return folder, seg_path, montage, json.loads(provenance.read_text())


def test_montage_shows_the_slices_holding_the_masks():
    masks = np.zeros((2, 30, 4, 4), np.uint8)
    masks[0, 10:14] = 1
    masks[1, 20] = 1
    shown = montage_slices(masks, 4)
    assert set(shown) <= {10, 11, 12, 13, 20} and 10 in shown and 20 in shown
    assert montage_slices(masks, 50) == [10, 11, 12, 13, 20]
    assert montage_slices(np.zeros((1, 30, 4, 4)), 3) == [0, 14, 29]


def test_display_window_is_soft_tissue_for_ct_and_percentiles_for_mr():
    volume = np.linspace(0, 1000, 1001)
    assert display_window(volume, "CT") == (-160.0, 240.0)
    low, high = display_window(volume, "MR")
    assert low == pytest.approx(10) and high == pytest.approx(990)


def test_report_files_are_written_whole(report):
    folder, _, montage, _ = report
    assert montage == folder / MONTAGE_FILE_NAME
    assert sorted(p.name for p in folder.iterdir()) == sorted([HTML_REPORT_FILE_NAME, MONTAGE_FILE_NAME, PROVENANCE_FILE_NAME, "diffugts_seg.dcm"])


def test_montage_has_two_rows_per_prompt(report, fast_config):
    _, _, montage, record = report
    with PILImage.open(montage) as image:
        assert image.format == "PNG"
        width, height = image.size
    columns = len(record["output"]["montage_slices"])
    assert 1 <= columns <= fast_config.montage_slices
    assert height > 300 and width > 150 * columns  # 2 prompts x (mask, AOVA) rows of ~200 px


def test_provenance_names_input_output_weights_and_versions(report, segmentation_run):
    _, seg_path, _, record = report
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    assert record["input"]["study_instance_uid"] == segmentation_run.study.StudyInstanceUID
    assert record["input"]["series_instance_uid"] == segmentation_run.series.SeriesInstanceUID
    assert record["input"]["selection_rule"] == "CT axial original primary"
    assert record["input"]["shape_slices_rows_columns"] == list(segmentation_run.volume.shape)
    assert record["output"]["seg_sop_instance_uid"] == seg.SOPInstanceUID
    assert record["output"]["seg_series_instance_uid"] == seg.SeriesInstanceUID
    assert [p["prompt"] for p in record["prompts"]] == [r.prompt.prompt for r in segmentation_run.results]
    for entry, result in zip(record["prompts"], segmentation_run.results):
        assert entry["tumor_volume_ml"] == pytest.approx(result.tumor_volume_ml, abs=1e-3)
        assert entry["voxels"] == int(result.mask.sum())
    assert record["prompts"][0]["organ"] == "liver"
    assert record["profile"] == "mini" and record["weights"] == segmentation_run.weights
    assert record["pipeline_config"]["num_steps"] == 1
    versions = record["versions"]
    assert versions["monai-deploy-app-sdk"] == "4.0.0" and versions["highdicom"] and versions["torch"]
    timings = record["timings_seconds"]
    assert timings["model_step"] > 0 and "features" in timings["stages"] and timings["report"] > timings["html_report"] > 0
    assert record["output"]["html_report_file"] == HTML_REPORT_FILE_NAME
    assert record["series_rules"][0]["name"] == "CT axial original primary"
    assert record["input"]["warnings"] == []  # the phantom CT is plausible CT
