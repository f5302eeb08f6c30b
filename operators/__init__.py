"""MONAI Deploy operators of DiffuGTS-Deploy: DICOM in, DICOM SEG and a report out.

One operator per module. The SDK's DICOM operators are reused where they fit:

* :mod:`.dicom_input`: the SDK's loader, refusing folders that are not a DICOM export.
* :mod:`.series_rules`: the SDK's series selector plus slice-count, orientation and
  reconstructability checks (rules in ``default_series_rules.json``).
* the SDK's ``DICOMSeriesToVolumeOperator`` (used as is, timed: :mod:`.stages`).
* :mod:`.diffugts_operator`: the bundle's pipeline on the selected series, handing a
  :class:`~.segmentation_run.SegmentationRun` to the writers; :mod:`.weights` chooses its weights.
* :mod:`.seg_writer`: a DICOM SEG with one coded segment per prompt (highdicom).
* :mod:`.sr_writer`: a DICOM SR (TID 1500) of the lesions of each segment, measured (highdicom).
* :mod:`.report_operator`: the HTML report (:mod:`.html_report`), a PNG montage and a provenance JSON.

Helpers: :mod:`.app_sdk` (where the App SDK is installed), :mod:`.app_config` (prompts and knobs), :mod:`.volume_geometry` (array axes and RAS
affine of a series), :mod:`.output_files` (atomic writes), :mod:`.stages` (each stage and the
patches of long volumes in the log).
"""

__version__ = "0.1.0"

from .app_sdk import use_app_sdk  # noqa: E402

use_app_sdk()  # before any module below imports monai.deploy (see .app_sdk)

from .app_config import AppConfig  # noqa: E402
from .dicom_input import DICOMInputLoaderOperator  # noqa: E402
from .diffugts_operator import DiffuGTSOperator  # noqa: E402
from .report_operator import ReportOperator  # noqa: E402
from .seg_writer import DiffuGTSSegWriterOperator  # noqa: E402
from .segmentation_run import SegmentationRun  # noqa: E402
from .series_rules import ClinicalSeriesSelectorOperator, load_rules  # noqa: E402
from .sr_writer import DiffuGTSSrWriterOperator  # noqa: E402
from .weights import WeightsChoice, resolve_weights  # noqa: E402

__all__ = [
    "__version__",
    "AppConfig",
    "DICOMInputLoaderOperator",
    "ClinicalSeriesSelectorOperator",
    "load_rules",
    "DiffuGTSOperator",
    "SegmentationRun",
    "WeightsChoice",
    "resolve_weights",
    "DiffuGTSSegWriterOperator",
    "DiffuGTSSrWriterOperator",
    "ReportOperator",
]
