import shutil

import pytest

from operators.dicom_input import DICOMInputLoaderOperator, list_input_files


def _loader(fragment, folder, allow=False):
    return DICOMInputLoaderOperator(fragment, input_folder=folder, allow_non_dicom_files=allow, name="input_test_loader")


@pytest.fixture
def mixed_folder(tmp_path, phantom_ct):
    folder = tmp_path / "export"
    shutil.copytree(phantom_ct.folder, folder / "series")
    (folder / "README.txt").write_text("exported by a viewer")
    (folder / "series" / "thumbs.db").write_bytes(b"\x00" * 300)
    return folder


def test_files_are_split_into_dicom_and_other(mixed_folder, phantom_ct):
    dicom_files, other_files = list_input_files(mixed_folder)
    assert len(dicom_files) == len(phantom_ct.files)
    assert sorted(p.name for p in other_files) == ["README.txt", "thumbs.db"]


def test_series_in_nested_folders_loads(fragment, tmp_path, phantom_ct):
    shutil.copytree(phantom_ct.folder, tmp_path / "a" / "b")
    studies = _loader(fragment, tmp_path).load_data_to_studies(tmp_path)
    assert len(studies) == 1
    assert len(studies[0].get_all_series()[0].get_sop_instances()) == len(phantom_ct.files)


def test_non_dicom_files_next_to_a_series_are_refused_by_default(fragment, mixed_folder):
    with pytest.raises(ValueError, match=r"holds 2 non-DICOM file\(s\) \(README.txt, series/thumbs.db\): remove them"):
        _loader(fragment, mixed_folder).load_data_to_studies(mixed_folder)


def test_non_dicom_files_are_ignored_when_allowed(fragment, mixed_folder, phantom_ct, caplog):
    studies = _loader(fragment, mixed_folder, allow=True).load_data_to_studies(mixed_folder)
    assert len(studies[0].get_all_series()[0].get_sop_instances()) == len(phantom_ct.files)
    assert "non-DICOM file(s)" in caplog.text


def test_folder_without_dicom_is_refused(fragment, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"holds no DICOM file \(notes.txt\)"):
        _loader(fragment, tmp_path).load_data_to_studies(tmp_path)


def test_empty_folder_is_refused(fragment, tmp_path):
    with pytest.raises(ValueError, match="is empty"):
        _loader(fragment, tmp_path).load_data_to_studies(tmp_path)


def test_a_file_instead_of_a_folder_is_refused(fragment, phantom_ct):
    with pytest.raises(ValueError, match="is not a folder"):
        _loader(fragment, phantom_ct.files[0])


def test_the_sdk_loader_reads_exactly_the_files_it_is_given(fragment, phantom_ct, tmp_path):
    # The loader calls the SDK's private DICOMDataLoaderOperator._load_data(files) on the DICOM
    # files it kept: this pins what it relies on (SDK 4.0.0), so an upgrade that changes it fails
    # here rather than in a user's run.
    import inspect

    from monai.deploy.operators import DICOMDataLoaderOperator

    assert list(inspect.signature(DICOMDataLoaderOperator._load_data).parameters) == ["self", "files"]
    folder = tmp_path / "series"
    shutil.copytree(phantom_ct.folder, folder)
    (folder / "stray.txt").write_text("not read: not in the list")
    kept = sorted(str(p) for p in folder.glob("*.dcm"))[:10]
    studies = _loader(fragment, folder, allow=True)._load_data(kept)
    (study,) = studies
    (series,) = study.get_all_series()
    assert sorted(str(i.get_native_sop_instance().filename) for i in series.get_sop_instances()) == kept
    assert study.StudyInstanceUID == series.get_sop_instances()[0].get_native_sop_instance().StudyInstanceUID
    # A second copy of a slice (same position) is dropped, as the selector's checks expect.
    assert len(_loader(fragment, folder, allow=True)._load_data(kept + kept[:1])[0].get_all_series()[0].get_sop_instances()) == 10


def test_a_warning_for_ignored_files_is_logged(fragment, mixed_folder, caplog):
    import logging

    caplog.set_level(logging.INFO)
    _loader(fragment, mixed_folder, allow=True).load_data_to_studies(mixed_folder)
    assert any(r.levelno == logging.WARNING and "non-DICOM file(s)" in r.getMessage() for r in caplog.records)
    assert "DICOM loading: done in" in caplog.text
