"""DiffuGTS-Deploy: a DICOM series in, a DICOM SEG (one segment per prompt) and a report out.

Wiring only; each step is an operator of the ``operators`` package::

    DICOMInputLoader -> ClinicalSeriesSelector -> DICOMSeriesToVolume (SDK) -> DiffuGTS
                                     |________________________________________^    |
                                                                      SegWriter <--+--> Report

Run it as ``python app -i DICOM_DIR -o OUT [-m MODELS]`` (or with the ``HOLOSCAN_INPUT_PATH``,
``HOLOSCAN_OUTPUT_PATH`` and ``HOLOSCAN_MODEL_PATH`` variables, as inside a MAP). Without a
models path the bundle's embedded ``mini`` weights are used.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from holoscan.conditions import CountCondition
from monai.deploy.core import Application
from monai.deploy.operators import DICOMSeriesToVolumeOperator

from operators import (
    AppConfig,
    ClinicalSeriesSelectorOperator,
    DICOMInputLoaderOperator,
    DiffuGTSOperator,
    DiffuGTSSegWriterOperator,
    ReportOperator,
    __version__,
    resolve_weights,
)
from operators.output_files import prepare_output_folder
from operators.report_operator import MONTAGE_FILE_NAME, PROVENANCE_FILE_NAME
from operators.seg_writer import SEG_FILE_NAME

__all__ = ["DiffuGTSApp", "CONFIG_PATH", "main"]

logger = logging.getLogger("diffugts.app")

#: The shipped configuration (prompts per modality, knobs); ``DIFFUGTS_APP_CONFIG`` replaces it.
CONFIG_PATH = Path(__file__).resolve().parent / "config.json"


class DiffuGTSApp(Application):
    """Zero-shot text-prompted tumor segmentation of a DICOM series into a DICOM SEG."""

    name = "diffugts-deploy"
    description = "DiffuGTS zero-shot text-prompted 3D tumor segmentation: DICOM series in, DICOM SEG out"
    version = __version__

    def compose(self) -> None:
        context = _app_context(self.argv)
        # highdicom logs every module it copies into the SEG at INFO: keep its warnings only.
        logging.getLogger("highdicom").setLevel(logging.WARNING)
        input_folder = Path(context.input_path).absolute()
        output_folder = Path(context.output_path).absolute()
        if output_folder == input_folder or input_folder in output_folder.parents:
            raise ValueError(f"the output folder {output_folder} must not be inside the input folder {input_folder}")
        self.output_folder = prepare_output_folder(output_folder)
        config = AppConfig.load(CONFIG_PATH)
        explicit_models = bool(context.args.get("model")) or "HOLOSCAN_MODEL_PATH" in os.environ
        weights = resolve_weights(context.model_path, explicit=explicit_models, profile=config.profile)

        loader = DICOMInputLoaderOperator(
            self, CountCondition(self, 1), input_folder=input_folder,
            allow_non_dicom_files=config.allow_non_dicom_files, name="dicom_loader",
        )
        selector = ClinicalSeriesSelectorOperator(self, rules_file=config.series_rules, name="series_selector")
        to_volume = DICOMSeriesToVolumeOperator(self, name="series_to_volume")
        model = DiffuGTSOperator(self, config=config, weights=weights, name="diffugts")
        seg_writer = DiffuGTSSegWriterOperator(self, output_folder=output_folder, name="seg_writer")
        report = ReportOperator(self, output_folder=output_folder, config=config, rules=selector.rules, name="report")

        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, to_volume, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(selector, model, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(to_volume, model, {("image", "image")})
        self.add_flow(model, seg_writer, {("segmentation", "segmentation")})
        self.add_flow(model, report, {("segmentation", "segmentation")})
        self.add_flow(seg_writer, report, {("seg_path", "seg_path")})


def _app_context(argv: Sequence[str]):
    """The SDK's argument parsing, with a mistake in the arguments turned into one line.

    The SDK's parser prints a usage block and exits for a bad ``-i``/``-o``/``-m``, and raises
    ``OSError`` when it cannot create the output folder; both become a ``ValueError``.
    """
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages):
            return Application.init_app_context(argv)
    except SystemExit as exit_:
        if not exit_.code:  # --help
            raise
        lines = messages.getvalue().strip().splitlines()
        raise ValueError(lines[-1].split(" error: ", 1)[-1] if lines else f"bad arguments {list(argv[1:])}") from None
    except OSError as error:
        raise ValueError(f"cannot create the output folder {error.filename}: {error.strerror}") from None


def _remove_outputs_written_since(folder: Path | None, started_ns: int) -> None:
    # Outputs appear by rename, so one of this run's has a modification time after its start;
    # an earlier run's outputs are older and stay.
    for name in (SEG_FILE_NAME, MONTAGE_FILE_NAME, PROVENANCE_FILE_NAME):
        path = folder / name if folder is not None else None
        if path is not None and path.is_file() and path.stat().st_mtime_ns >= started_ns:
            path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the application; return the exit status.

    Args:
        argv: ``[python, app, -i, ...]`` as Holoscan expects (default: this process's).

    A user mistake (``ValueError``: no usable series, bad configuration, bad weights, a full
    disk) is one line on stderr and exit status 1, never a traceback; the run leaves no output
    (a SEG written before the report failed is removed: a SEG without its report is not a result).
    """
    start, started_ns = time.perf_counter(), time.time_ns()
    app = None
    try:
        app = DiffuGTSApp() if argv is None else DiffuGTSApp(list(argv))
        app.run()
    except ValueError as error:
        _remove_outputs_written_since(getattr(app, "output_folder", None), started_ns)
        print(f"diffugts: error: {error}", file=sys.stderr)
        return 1
    logger.info("done in %.1f s", time.perf_counter() - start)
    for label, name in (("SEG", SEG_FILE_NAME), ("montage", MONTAGE_FILE_NAME), ("provenance", PROVENANCE_FILE_NAME)):
        print(f"{label}: {app.output_folder / name}")
    return 0
