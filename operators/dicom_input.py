"""DICOM input loader: the SDK's loader, with a clear refusal of folders that are not a DICOM export.

The SDK's :class:`~monai.deploy.operators.DICOMDataLoaderOperator` quietly skips files pydicom
cannot read and raises a generic error when nothing loads. A clinical application should instead
say what is wrong with the folder it was given: empty, nothing but non-DICOM files, or DICOM mixed
with other files (which usually means the wrong folder was picked).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from monai.deploy.core import Fragment
from monai.deploy.operators import DICOMDataLoaderOperator
from pydicom.misc import is_dicom

__all__ = ["DICOMInputLoaderOperator", "list_input_files"]

logger = logging.getLogger(__name__)


def list_input_files(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
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


class DICOMInputLoaderOperator(DICOMDataLoaderOperator):
    """Load the DICOM studies of an input folder, refusing folders that are not DICOM exports.

    Named output:
        dicom_study_list: list of ``DICOMStudy`` (as the SDK's loader).

    Raises:
        ValueError: at construction when ``input_folder`` is not a folder; at compute when the
            folder holds no file, no DICOM file, or (unless ``allow_non_dicom_files``) non-DICOM
            files next to DICOM ones. The message names the folder and up to three files.
    """

    def __init__(self, fragment: Fragment, *args, input_folder: Path, allow_non_dicom_files: bool = False, **kwargs) -> None:
        if not Path(input_folder).is_dir():
            raise ValueError(f"input {input_folder} is not a folder: give the folder holding the DICOM series")
        self.allow_non_dicom_files = bool(allow_non_dicom_files)
        super().__init__(fragment, *args, input_folder=Path(input_folder), must_load=True, **kwargs)

    def load_data_to_studies(self, input_path: Path):
        input_path = Path(input_path)
        dicom_files, other_files = list_input_files(input_path)
        if not dicom_files and not other_files:
            raise ValueError(f"input folder {input_path} is empty: expected a DICOM series")
        if not dicom_files:
            raise ValueError(f"input folder {input_path} holds no DICOM file ({_describe(other_files, input_path)})")
        if other_files:
            message = f"input folder {input_path} holds {len(other_files)} non-DICOM file(s) ({_describe(other_files, input_path)})"
            if not self.allow_non_dicom_files:
                raise ValueError(f"{message}: remove them or set allow_non_dicom_files in the configuration")
            logger.warning("%s: ignored", message)
        logger.info("loading %d DICOM file(s) from %s", len(dicom_files), input_path)
        studies = self._load_data([str(path) for path in dicom_files])
        if not studies:
            raise ValueError(f"no DICOM study could be read from {input_path}")
        return studies


def _describe(files: list[Path], root: Path) -> str:
    names = [str(path.relative_to(root)) for path in files[:3]]
    more = f" and {len(files) - 3} more" if len(files) > 3 else ""
    return ", ".join(names) + more
