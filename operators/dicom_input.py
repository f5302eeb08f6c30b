"""DICOM input loader: the SDK's loader, with a clear refusal of folders that are not a DICOM export.

The SDK's :class:`~monai.deploy.operators.DICOMDataLoaderOperator` quietly skips files pydicom
cannot read and raises a generic error when nothing loads. A clinical application should instead
say what is wrong with the folder it was given: empty, nothing but non-DICOM files, DICOM mixed
with other files (which usually means the wrong folder was picked), or damaged DICOM files (a
truncated copy would otherwise just go missing from its series).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from monai.deploy.core import Fragment
from monai.deploy.operators import DICOMDataLoaderOperator
from pydicom import dcmread
from pydicom.filereader import read_file_meta_info
from pydicom.misc import is_dicom
from pydicom.uid import MediaStorageDirectoryStorage

from scripts.errors import UserError

from .stages import stage

__all__ = ["DICOMInputLoaderOperator", "list_input_files", "damaged_files", "is_dicomdir", "patients_problem"]

logger = logging.getLogger(__name__)

#: What the SDK needs to place a file in a study and series; a file without them is skipped.
_REQUIRED_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def list_input_files(folder: str | os.PathLike[str]) -> tuple[list[Path], list[Path]]:
    """Split the files under ``folder`` (recursively) into DICOM Part 10 files and the rest.

    A DICOM Part 10 file has the 128-byte preamble and the ``DICM`` prefix; pydicom refuses
    anything else without ``force=True``, and so does the SDK's loader.
    """
    dicom_files: list[Path] = []
    other_files: list[Path] = []
    for root, _dirs, names in os.walk(folder):
        for name in sorted(names):
            path = Path(root) / name
            (dicom_files if _is_dicom(path) else other_files).append(path)
    return dicom_files, other_files


def _is_dicom(path: Path) -> bool:
    try:
        return is_dicom(path)
    except OSError:
        return False


def is_dicomdir(path: Path) -> bool:
    """Whether ``path`` is a DICOMDIR: the index of a media export (CD, USB), not an image."""
    try:
        return read_file_meta_info(path).get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage
    except Exception:  # a damaged file is reported as such later
        return False


def patients_problem(studies, root: Path) -> str | None:
    """Why the studies cannot be one patient's input (more than one ``PatientID``), or ``None``.

    The selector takes the largest series of the folder: with a second patient's series beside
    the first, that may be the other patient's, and the SEG would go to the wrong record.
    """
    folders: dict[str, set[str]] = {}
    for study in studies:
        for series in study.get_all_series():
            for instance in series.get_sop_instances():
                dataset = instance.get_native_sop_instance()
                patient = str(dataset.get("PatientID", "") or "").strip()
                folder = str(Path(dataset.filename).parent.relative_to(root))
                folders.setdefault(patient, set()).add("the folder itself" if folder == "." else folder)
    if len(folders) < 2:
        return None
    shown = "; ".join(
        f"PatientID {patient!r} in {', '.join(sorted(where)[:3])}" if patient else f"no PatientID in {', '.join(sorted(where)[:3])}"
        for patient, where in sorted(folders.items())
    )
    return f"input folder {root} holds the images of {len(folders)} patients ({shown}): give the folder of one patient"


def damaged_files(dicom_files: list[Path], studies) -> list[tuple[Path, str]]:
    """The DICOM files the SDK left out of every series because they cannot be read whole.

    Files it left out on purpose (a SOP class it ignores, a second copy of a slice position)
    are readable and are not reported.
    """
    loaded = {
        str(instance.get_native_sop_instance().filename) for study in studies for series in study.get_all_series() for instance in series.get_sop_instances()
    }
    damaged = []
    for path in dicom_files:
        if str(path) in loaded:
            continue
        try:
            dataset = dcmread(path, stop_before_pixels=True)
        except Exception as error:  # pydicom raises many types for damaged files
            damaged.append((path, f"unreadable: {_first_line(error)}"))
            continue
        missing = [keyword for keyword in _REQUIRED_KEYWORDS if keyword not in dataset]
        if missing:
            damaged.append((path, f"no {missing[0]}, truncated?"))
    return damaged


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class DICOMInputLoaderOperator(DICOMDataLoaderOperator):
    """Load the DICOM studies of an input folder, refusing folders that are not DICOM exports.

    Named output:
        dicom_study_list: list of ``DICOMStudy`` (as the SDK's loader).

    Raises:
        UserError: at construction when ``input_folder`` is not a folder; at compute when the
            folder holds no file, no DICOM file, (unless ``allow_non_dicom_files``) non-DICOM
            files next to DICOM ones, or the images of more than one patient. The message names
            the folder and up to three files (or each patient's ``PatientID`` and folders).

    A DICOMDIR (the index of a media export) is skipped, with a log line: the images are read
    from their own files.
    """

    def __init__(self, fragment: Fragment, *args, input_folder: Path, allow_non_dicom_files: bool = False, **kwargs) -> None:
        if not Path(input_folder).is_dir():
            raise UserError(f"input {input_folder} is not a folder: give the folder holding the DICOM series")
        self.allow_non_dicom_files = bool(allow_non_dicom_files)
        super().__init__(fragment, *args, input_folder=Path(input_folder), must_load=True, **kwargs)

    @stage("DICOM loading")
    def load_data_to_studies(self, input_path: Path):
        input_path = Path(input_path)
        dicom_files, other_files = list_input_files(input_path)
        directories = [path for path in dicom_files if is_dicomdir(path)]
        if directories:
            logger.info("skipping %s: a media export's index, the images are read from their own files", _describe(directories, input_path))
            dicom_files = [path for path in dicom_files if path not in directories]
            if not dicom_files:
                raise UserError(f"input folder {input_path} holds only a DICOMDIR ({_describe(directories, input_path)}), no image file: copy the whole export")
        if not dicom_files and not other_files:
            raise UserError(f"input folder {input_path} is empty: expected a DICOM series")
        if not dicom_files:
            raise UserError(f"input folder {input_path} holds no DICOM file ({_describe(other_files, input_path)})")
        if other_files:
            message = f"input folder {input_path} holds {len(other_files)} non-DICOM file(s) ({_describe(other_files, input_path)})"
            if not self.allow_non_dicom_files:
                raise UserError(f"{message}: remove them or set allow_non_dicom_files in the configuration")
            logger.warning("%s: ignored", message)
        logger.info("loading %d DICOM file(s) from %s", len(dicom_files), input_path)
        try:
            # The SDK's private _load_data(files): its public load_data_to_studies(folder) would read
            # every file of the folder (stray files, a DICOMDIR) and warn about each in its own words.
            # What is relied upon is pinned by tests/operators/test_dicom_input.py (SDK 4.0.0).
            studies = self._load_data([str(path) for path in dicom_files])
        except Exception as error:  # pydicom raises many types for damaged files
            raise UserError(f"cannot read the DICOM files in {input_path}: {_first_line(error)}") from None
        damaged = damaged_files(dicom_files, studies)
        if damaged:
            shown = ", ".join(f"{path.relative_to(input_path)} ({reason})" for path, reason in damaged[:3])
            more = f" and {len(damaged) - 3} more" if len(damaged) > 3 else ""
            message = f"input folder {input_path} holds {len(damaged)} damaged DICOM file(s): {shown}{more}"
            if not self.allow_non_dicom_files:
                raise UserError(f"{message}; replace them, or set allow_non_dicom_files in the configuration to skip them")
            logger.warning("%s: skipped", message)
        if not studies:
            raise UserError(f"no DICOM study could be read from {input_path}")
        problem = patients_problem(studies, input_path)
        if problem:
            raise UserError(problem)
        if len(studies) > 1:  # one patient's prior and current exams: allowed, the selector picks one series
            logger.warning("input folder %s holds %d studies of one patient: the SEG goes into the study of the selected series", input_path, len(studies))
        return studies


def _describe(files: list[Path], root: Path) -> str:
    names = [str(path.relative_to(root)) for path in files[:3]]
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    return ", ".join(names) + more
