"""tools/demo.py: the demo series is valid CT, stored as scanners store it, and the README's
main command prints where the SEG and the PNG are."""

import numpy as np
import pydicom
import pytest
from app_helpers import dciodvfy_errors

from tools.demo import main, seg_frames_by_source, slice_stack, write_ct_series


def test_demo_series_is_valid_ct_image_storage(phantom_ct):
    assert dciodvfy_errors(phantom_ct.files[0]) == []
    first = pydicom.dcmread(phantom_ct.files[0])
    assert first.SOPClassUID == pydicom.uid.CTImageStorage and first.Modality == "CT"
    assert len(phantom_ct.files) == phantom_ct.case.image.shape[2]


def test_demo_series_is_stored_radiologically(phantom_ct):
    first = pydicom.dcmread(phantom_ct.files[0])
    # Rows run to the patient's left, columns to posterior: anterior is up in a viewer.
    np.testing.assert_allclose([float(v) for v in first.ImageOrientationPatient], [1, 0, 0, 0, 1, 0])
    slices, _ = slice_stack(phantom_ct.case.image, phantom_ct.case.affine)
    np.testing.assert_array_equal(first.pixel_array, np.clip(np.round(slices[0]), -1024, 3071).astype(np.int16))


def test_same_seed_writes_the_same_series(tmp_path):
    image = np.zeros((8, 8, 4), np.float32)
    first = write_ct_series(image, np.eye(4), tmp_path / "a", seed=7)
    second = write_ct_series(image, np.eye(4), tmp_path / "b", seed=7)
    assert [pydicom.dcmread(p).SOPInstanceUID for p in first] == [pydicom.dcmread(p).SOPInstanceUID for p in second]
    with pytest.raises(ValueError, match="must be 3D"):
        write_ct_series(image[0], np.eye(4), tmp_path / "c")


@pytest.mark.slow
def test_demo_prints_where_the_seg_and_png_are(app_env, tmp_path, capsys):
    assert main(["--output", str(tmp_path / "demo"), "--size", "40", "40", "32"]) == 0
    out = capsys.readouterr().out
    seg = tmp_path / "demo" / "app" / "diffugts_seg.dcm"
    png = tmp_path / "demo" / "app" / "diffugts_montage.png"
    assert f"DICOM SEG:             {seg}" in out and f"PNG montage:           {png}" in out
    assert seg.is_file() and png.is_file()
    files = sorted((tmp_path / "demo" / "dicom_ct").glob("*.dcm"))
    assert len(files) == 32 and seg_frames_by_source(seg, files).shape == (32, 40, 40)
    assert "Dice with the phantom's true tumor" in out


def test_the_demo_reports_the_benchmarks_dice():
    # One DSC in the project: the demo's figure is scripts.metrics.dice_score's, not a copy.
    import tools.demo
    from scripts.metrics import dice_score

    assert tools.demo.dice_score is dice_score
