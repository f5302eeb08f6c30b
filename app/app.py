"""DiffuGTS-Deploy: a DICOM series in, a DICOM SEG (one segment per prompt), a DICOM SR of the
lesion measurements and a report out.

Wiring only; each step is an operator of the ``operators`` package::

    DICOMInputLoader -> ClinicalSeriesSelector -> DICOMSeriesToVolume (SDK) -> DiffuGTS
                                     |________________________________________^    |
                                                                      SegWriter <--+--> Report
                                                                          |        |
                                                                          +-> SrWriter (SEG + run)

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
from collections.abc import Sequence
from pathlib import Path

from operators.app_sdk import use_app_sdk

use_app_sdk()  # in a checkout the App SDK lives beside MONAI, not inside it (see operators.app_sdk)

import monai.deploy  # noqa: E402
from holoscan.conditions import CountCondition  # noqa: E402
from monai.deploy.core import Application, parse_args  # noqa: E402

from operators import (  # noqa: E402
    AppConfig,
    ClinicalSeriesSelectorOperator,
    DICOMInputLoaderOperator,
    DiffuGTSOperator,
    DiffuGTSSegWriterOperator,
    ReportOperator,
    __version__,
    resolve_weights,
)
from operators.app_config import BUNDLE_INFERENCE_CONFIG  # noqa: E402
from operators.report_operator import HTML_REPORT_FILE_NAME, MONTAGE_FILE_NAME, PROVENANCE_FILE_NAME  # noqa: E402
from operators.seg_writer import SEG_FILE_NAME  # noqa: E402
from operators.sr_writer import SR_FILE_NAME, DiffuGTSSrWriterOperator  # noqa: E402
from operators.stages import SeriesToVolumeOperator  # noqa: E402
from scripts.errors import UserError  # noqa: E402
from scripts.output_staging import Stopped, stage_outputs, stop_on_signals  # noqa: E402

__all__ = ["DiffuGTSApp", "CONFIG_PATH", "main"]

logger = logging.getLogger("diffugts.app")

#: The shipped configuration (prompts per modality, knobs); ``DIFFUGTS_APP_CONFIG`` replaces it.
CONFIG_PATH = Path(__file__).resolve().parent / "config.json"
#: The SDK logs each step of its operators at INFO on the root logger: shown with ``-l DEBUG``.
_SDK_FOLDER = os.path.dirname(monai.deploy.__file__) + os.sep  # as the log records' pathname gives it

_HELP = """DiffuGTS-Deploy {version}: zero-shot text-prompted tumor segmentation of a CT or MR DICOM series
into a DICOM SEG. Research use only: not a medical device, not for diagnosis.

    python app -i DICOM_DIR -o OUT [-m MODELS] [-l DEBUG]

{sdk_help}

in this application:
  -i DICOM_DIR  one patient's DICOM files (sub-folders are read); the series to segment is picked
                by the series selection rules
  -o OUT        created if needed; receives diffugts_seg.dcm, diffugts_sr.dcm (lesion
                measurements), diffugts_report.html (open it in a browser), diffugts_montage.png
                and diffugts_provenance.json together, or nothing when the run fails
  -m MODELS     a folder holding autoencoder.pt, diffusion_unet.pt and diffugts_heads.pt (or one
                sub-folder holding them); default: the embedded weights (bundle/models/mini).
                A missing file is an error (research switch: allow_random_weights)
  -l LEVEL      the log on stderr: INFO (default) each stage with its time; DEBUG adds the SDK's detail

configuration: {config}
  prompts per modality, profile, series_rules, allow_non_dicom_files, allow_random_weights, device,
  montage_slices, and pipeline: overrides of the pipeline knobs, whose defaults are the bundle's
  {bundle}; every key and its range: docs/app.md

environment:
  DIFFUGTS_APP_CONFIG=PATH.json               replaces the configuration file
  DIFFUGTS_PROMPTS='{{"CT": ["liver tumor"]}}'  replaces the prompts of the modalities named
  DIFFUGTS_SERIES_RULES=PATH.json             replaces the series selection rules
  HOLOSCAN_INPUT_PATH, HOLOSCAN_OUTPUT_PATH, HOLOSCAN_MODEL_PATH
                                              replace -i, -o, -m (a MAP sets them)
  HOLOSCAN_LOG_LEVEL=INFO                     Holoscan's scheduler log (default CRITICAL)

exit status: 0 when the outputs are written; 1 for a user mistake (one line "diffugts: error: ..."
on stderr naming the file, folder or variable at fault) or a stop by SIGTERM, SIGINT or SIGHUP.
"""


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
        self.output_folder = Path(context.output_path).absolute()
        # Resolved: a symlink to the input folder, or a ".." path into it, is the input folder.
        real_input, real_output = input_folder.resolve(), self.output_folder.resolve()
        if real_output == real_input or real_input in real_output.parents:
            raise UserError(f"the output folder {self.output_folder} must not be inside the input folder {input_folder}")
        self.staged = stage_outputs(self.output_folder)
        output_folder = self.staged.folder  # every operator writes here; main() commits it
        config = AppConfig.load(CONFIG_PATH)
        explicit_models = bool(context.args.get("model")) or "HOLOSCAN_MODEL_PATH" in os.environ
        weights = resolve_weights(context.model_path, explicit=explicit_models, profile=config.profile, allow_random=config.allow_random_weights)

        loader = DICOMInputLoaderOperator(
            self,
            CountCondition(self, 1),
            input_folder=input_folder,
            allow_non_dicom_files=config.allow_non_dicom_files,
            name="dicom_loader",
        )
        selector = ClinicalSeriesSelectorOperator(self, rules_file=config.series_rules, name="series_selector")
        to_volume = SeriesToVolumeOperator(self, name="series_to_volume")
        model = DiffuGTSOperator(self, config=config, weights=weights, name="diffugts")
        seg_writer = DiffuGTSSegWriterOperator(self, output_folder=output_folder, name="seg_writer")
        sr_writer = DiffuGTSSrWriterOperator(self, output_folder=output_folder, name="sr_writer")
        report = ReportOperator(self, output_folder=output_folder, config=config, rules=selector.rules, name="report")

        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, to_volume, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(selector, model, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(to_volume, model, {("image", "image")})
        self.add_flow(model, seg_writer, {("segmentation", "segmentation")})
        self.add_flow(model, sr_writer, {("segmentation", "segmentation")})
        self.add_flow(seg_writer, sr_writer, {("seg_path", "seg_path")})
        self.add_flow(model, report, {("segmentation", "segmentation")})
        self.add_flow(seg_writer, report, {("seg_path", "seg_path")})


def _app_context(argv: Sequence[str]):
    """The SDK's argument parsing, with a mistake in the arguments turned into one line.

    The SDK's parser prints a usage block and exits for a bad ``-i``/``-o``/``-m``, and raises
    ``OSError`` when it cannot create the output folder; both become a ``UserError``. It checks
    that the output folder exists and then creates it, so a second run starting at the same moment
    meets "File exists": the folder is there, which is all that was asked, and parsing is repeated.
    """
    messages = io.StringIO()
    for attempt in range(2):
        try:
            with contextlib.redirect_stderr(messages):
                context = Application.init_app_context(argv)
            _log_to_stderr(messages)
            return context
        except SystemExit as exit_:
            if not exit_.code:  # --help
                raise
            lines = messages.getvalue().strip().splitlines()
            raise UserError(lines[-1].split(" error: ", 1)[-1] if lines else f"bad arguments {list(argv[1:])}") from None
        except FileExistsError:
            if attempt:
                raise
        except OSError as error:
            raise UserError(f"cannot create the output folder {error.filename}: {error.strerror}") from None
    raise AssertionError("unreachable")


class _SdkDetail(logging.Filter):
    """The SDK's INFO lines ("On attribute: 'Modality' to match value ...") become DEBUG lines, and
    so does its notice that the optional nvimgcodec decoder is absent (pydicom's decoders are used)."""

    def filter(self, record: logging.LogRecord) -> bool:
        sdk = record.pathname.startswith(_SDK_FOLDER)
        if sdk and (record.levelno == logging.INFO or "nvimgcodec" in record.getMessage()):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class _CurrentStderr:
    """``sys.stderr`` at the moment a record is written (a pytest capture, a redirect included)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _log_to_stderr(captured: io.StringIO) -> None:
    """Point the SDK's log handlers back at stderr.

    The SDK's ``dictConfig`` runs while the parser's messages are captured, and its
    ``StreamHandler`` binds the stream of that moment: without this every log line would go into
    ``captured``. The level stays the one asked for (``-l``, else the SDK's INFO); the SDK's own
    step-by-step log is shown at DEBUG (:class:`_SdkDetail`).
    """
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    for handler in {h for lg in loggers for h in lg.handlers}:
        if isinstance(handler, logging.StreamHandler) and handler.stream is captured:
            handler.setStream(_CurrentStderr())  # type: ignore[arg-type]
            handler.addFilter(_SdkDetail())


def help_text(argv: Sequence[str]) -> str:
    """``--help``: the SDK parser's options, with what they mean here, the configuration and the
    environment. (Holoscan's own ``--help``, which the application would print, knows none of them.)"""
    sdk_help = io.StringIO()
    with contextlib.redirect_stdout(sdk_help), contextlib.suppress(SystemExit):
        parse_args([argv[0], "--help"])
    return _HELP.format(version=__version__, sdk_help=sdk_help.getvalue().strip(), config=CONFIG_PATH, bundle=BUNDLE_INFERENCE_CONFIG)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the application; return the exit status.

    Args:
        argv: ``[python, app, -i, ...]`` as Holoscan expects (default: this process's).

    A user mistake (:class:`UserError`: no usable series, bad configuration, bad weights, a full
    disk) is one line on stderr and exit status 1, never a traceback. SIGTERM, SIGINT and SIGHUP
    stop the run with one line and exit status 1. Either way the run leaves no output: the
    operators write into a staging folder, committed into the output folder only when the whole
    graph has succeeded, the SEG last (:mod:`scripts.output_staging`).
    """
    start = time.perf_counter()
    if any(arg in ("-h", "--help") for arg in (sys.argv if argv is None else argv)[1:]):
        print(help_text(sys.argv if argv is None else argv))
        return 0
    app = None
    try:
        with stop_on_signals(prefix="diffugts: error:"):
            app = DiffuGTSApp() if argv is None else DiffuGTSApp(list(argv))
            app.run()
            _check_the_graph_finished(app)
            app.staged.commit(order=(HTML_REPORT_FILE_NAME, MONTAGE_FILE_NAME, PROVENANCE_FILE_NAME, SR_FILE_NAME, SEG_FILE_NAME))
    except UserError as error:
        _discard(app)
        message = str(error)
        if app is not None and hasattr(app, "staged"):  # name the output folder, not the staging one
            message = message.replace(str(app.staged.folder), str(app.output_folder))
        print(f"diffugts: error: {message}", file=sys.stderr)
        return 1
    except SystemExit as stop:
        _discard(app)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
            return 1
        raise
    except BaseException:
        _discard(app)
        raise
    logger.info("done in %.1f s: outputs in %s", time.perf_counter() - start, app.output_folder)
    for label, name in (
        ("SEG", SEG_FILE_NAME),
        ("SR", SR_FILE_NAME),
        ("report", HTML_REPORT_FILE_NAME),
        ("montage", MONTAGE_FILE_NAME),
        ("provenance", PROVENANCE_FILE_NAME),
    ):
        print(f"{label}: {app.output_folder / name}")
    return 0


def _check_the_graph_finished(app: DiffuGTSApp) -> None:
    """Holoscan handles SIGTERM and SIGINT itself once its graph runs: it stops the scheduler and,
    when an operator is still busy 3 s later, forces the process to exit (status 1). When the
    operators stop in time, ``run()`` returns as if the graph had finished: whatever it had not
    written yet is then missing, and nothing may be committed."""
    outputs = (SEG_FILE_NAME, SR_FILE_NAME, HTML_REPORT_FILE_NAME, MONTAGE_FILE_NAME, PROVENANCE_FILE_NAME)
    missing = [name for name in outputs if not app.staged.path(name).is_file()]
    if missing:
        raise Stopped(f"diffugts: error: the run stopped before it wrote {', '.join(missing)} (a signal?); no output was written")


def _discard(app: DiffuGTSApp | None) -> None:
    staged = getattr(app, "staged", None)
    if staged is not None:
        staged.discard()
