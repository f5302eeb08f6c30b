"""DIMSE listener: a PACS pushes CT/MR series by C-STORE, the SEG goes back by C-STORE.

    python -m tools.dicom_listener --port 11112 --ae-title DIFFUGTS --send-to PACS@10.0.0.5:104 --work DIR

1. It answers C-ECHO, and C-STORE of CT and MR images (CT Image Storage, MR Image Storage: the
   series the application reads); other SOP classes are refused at association negotiation, and
   an instance without the UIDs to file it under, or whose SOP class is not the one it came
   under, gets a failure status.
2. A series is complete when none of its instances came for ``--quiet-seconds``. Each series is
   received into a fresh run folder ``DIR/runs/<date>-<time>-<random>/`` (``input/`` the series,
   ``output/`` the results, ``app.log`` the application's output).
3. Complete series run one at a time: ``python app -i RUN/input -o RUN/output [-m MODELS]``.
4. Every DICOM file the application wrote (the SEG, and any other such as an SR) is sent to
   ``--send-to`` by C-STORE, with ``--retries`` tries and a doubling delay between them.

A series that could not be processed (the application failed, the destination did not take the
results, the listener was stopped) is moved to ``DIR/failed/<run>/`` with the reason in
``reason.txt``; the listener keeps serving. SIGTERM or SIGINT stop it: the server closes, a run
in progress is abandoned (the application is stopped) and kept in ``failed/`` like the series
not processed yet. Exit status 0 after such a stop, 1 with one line for a mistake in the options.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    CTImageStorage,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # pynetdicom makes its SOP classes at import time
from pynetdicom.transport import ThreadedAssociationServer

from tools.console_log import LOG_LEVELS, log_to_stderr

__all__ = ["Destination", "ListenerError", "Listener", "parse_destination", "main"]

logger = logging.getLogger("diffugts.dicom_listener")

ROOT = Path(__file__).resolve().parent.parent
APP_DIR = ROOT / "app"
IMAGE_SOP_CLASSES: dict[str, str] = {CTImageStorage: "CT", MRImageStorage: "MR"}
#: pynetdicom's defaults plus the compressed syntaxes the application decodes (pylibjpeg), so a
#: PACS need not decompress; instances are written as they came.
TRANSFER_SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    HTJ2K,
    RLELossless,
]
#: C-STORE statuses (PS3.4 B.2.3): success, and the warnings that still mean "stored".
STORED = {0x0000, 0xB000, 0xB006, 0xB007}
OUT_OF_RESOURCES, NOT_THE_SOP_CLASS, CANNOT_UNDERSTAND = 0xA700, 0xA900, 0xC000
#: Seconds the application has to stop after SIGTERM (it needs about 3) before it is killed.
APP_STOP_GRACE = 30.0


class ListenerError(ValueError):
    """A mistake in the options: one line, exit status 1. (Not ``scripts.errors.UserError``: that
    import pulls in torch and MONAI, which a long-running listener does not need.)"""


class RunFailed(Exception):
    """The run could not be completed; the message is the reason kept in ``reason.txt``."""


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def _ae_title(text: str, option: str) -> str:
    # PS3.5: at most 16 characters of the default repertoire, no backslash, not only spaces.
    if not text.strip() or len(text) > 16 or "\\" in text or not text.isascii() or not text.isprintable():
        raise ListenerError(f"{option} must be an AE title of 1 to 16 printable ASCII characters without '\\', got {text!r}")
    return text.strip()


def parse_destination(text: str) -> Destination:
    """``AET@HOST:PORT`` as given to ``--send-to``."""
    aet, at, address = text.partition("@")
    host, colon, port = address.rpartition(":")
    if not (at and colon and host and port.isdigit() and 1 <= int(port) <= 65535):
        raise ListenerError(f"--send-to must be AET@HOST:PORT, e.g. PACS@10.0.0.5:104, got {text!r}")
    return Destination(_ae_title(aet, "--send-to"), host.strip("[]"), int(port))


@dataclass
class Series:
    """One series being received into its run folder."""

    uid: str
    modality: str
    calling: str
    run: Path
    count: int = 0
    last: float = field(default_factory=time.monotonic)

    @property
    def input(self) -> Path:
        return self.run / "input"


def _failure(status: int, comment: str) -> Dataset:
    reply = Dataset()
    reply.Status, reply.ErrorComment = status, comment[:64]  # ErrorComment is LO
    return reply


class Listener:
    """The server, the series being received, and the runner thread that processes them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work: Path = args.work
        self.runs, self.failed = self.work / "runs", self.work / "failed"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.pending: dict[str, Series] = {}
        self.dispatched: dict[str, str] = {}  # series UID -> the run that took it
        self.app: subprocess.Popen | None = None

    # -- the server side (association threads) ---------------------------------------------

    def _peer(self, event: evt.Event) -> str:
        requestor = event.assoc.requestor
        return f"{requestor.ae_title} ({requestor.address}:{requestor.port})"

    def on_accepted(self, event: evt.Event) -> None:
        # A sender often proposes every storage SOP class; the refused ones are listed at DEBUG.
        refused = sorted({cx.abstract_syntax for cx in event.assoc.rejected_contexts if cx.abstract_syntax is not None})  # a proposed context names one
        logger.info(
            "association from %s accepted%s",
            self._peer(event),
            f" ({len(refused)} proposed SOP class(es) refused: only CT and MR images are stored)" if refused else "",
        )
        logger.debug("refused SOP classes: %s", ", ".join(f"{uid} ({pydicom.uid.UID(uid).name})" for uid in refused))

    def on_rejected(self, event: evt.Event) -> None:
        request = event.assoc.requestor.primitive
        assert request is not None  # the A-ASSOCIATE request being rejected
        calling, called = request.calling_ae_title, request.called_ae_title
        if called != self.args.ae_title:  # pynetdicom's order: this reason wins
            why = f"called AE title {called!r} is not {self.args.ae_title!r}"
        elif self.args.allow_calling and calling not in self.args.allow_calling:
            why = f"calling AE title {calling!r} is not allowed (--allow-calling)"
        else:
            why = "too many associations at once"
        logger.warning("association from %s rejected: %s", self._peer(event), why)

    def on_ended(self, event: evt.Event) -> None:
        logger.info("association from %s %s", self._peer(event), "aborted" if event.event is evt.EVT_ABORTED else "released")

    def on_echo(self, event: evt.Event) -> int:
        logger.info("C-ECHO from %s", self._peer(event))
        return 0x0000

    def on_store(self, event: evt.Event) -> int | Dataset:
        try:
            ds = event.dataset
            sop_class, series_uid, sop_uid = str(ds.get("SOPClassUID", "")), str(ds.get("SeriesInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
        except Exception as error:  # noqa: BLE001 - whatever the peer sent, answer it
            logger.warning("C-STORE from %s refused: the dataset cannot be decoded (%s)", self._peer(event), error)
            return _failure(CANNOT_UNDERSTAND, "the dataset cannot be decoded")
        if sop_class != event.request.AffectedSOPClassUID or sop_class not in IMAGE_SOP_CLASSES:
            logger.warning("C-STORE from %s refused: SOP class %s sent as %s", self._peer(event), sop_class or "(none)", event.request.AffectedSOPClassUID)
            return _failure(NOT_THE_SOP_CLASS, "SOP Class UID does not match the request")
        if not (series_uid and sop_uid and ds.get("StudyInstanceUID")):
            logger.warning("C-STORE from %s refused: instance %s has no Study, Series or SOP Instance UID", self._peer(event), sop_uid or "(none)")
            return _failure(CANNOT_UNDERSTAND, "Study, Series or SOP Instance UID missing")
        # The peer names the file: only a UID is a file name (no path tricks).
        name = sop_uid if re.fullmatch(r"[0-9][0-9.]{0,63}", sop_uid) else f"instance-{time.monotonic_ns()}"
        try:
            with self.lock:  # written under the lock: the runner never takes a series mid-instance
                series = self.pending.get(series_uid) or self._new_series(series_uid, IMAGE_SOP_CLASSES[sop_class], event.assoc.requestor.ae_title)
                path = series.input / f"{name}.dcm"
                series.count += not path.exists()  # an instance sent twice is one instance
                path.write_bytes(event.encoded_dataset())
                series.last = time.monotonic()
        except OSError as error:
            logger.error("C-STORE from %s: cannot write instance %s: %s", self._peer(event), sop_uid, error.strerror or error)
            return _failure(OUT_OF_RESOURCES, "cannot write the instance")
        return 0x0000

    def _new_series(self, uid: str, modality: str, calling: str) -> Series:
        run = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=self.runs))
        series = self.pending[uid] = Series(uid, modality, calling, run)
        series.input.mkdir()
        if uid in self.dispatched:
            logger.warning(
                "series %s came again after run %s took it: a new run (raise --quiet-seconds if the sender pauses within a series)", uid, self.dispatched[uid]
            )
        logger.info("receiving %s series %s from %s into %s", modality, uid, calling, run)
        return series

    # -- the runner thread ------------------------------------------------------------------

    def _next_complete(self) -> Series | None:
        with self.lock:
            quiet = [s for s in self.pending.values() if time.monotonic() - s.last >= self.args.quiet_seconds]
            if not quiet:
                return None
            series = min(quiet, key=lambda s: s.last)
            del self.pending[series.uid]
            self.dispatched[series.uid] = series.run.name
            return series

    def run_forever(self) -> None:
        while not self.stop.is_set():
            series = self._next_complete()
            if series is None:
                self.stop.wait(min(0.5, self.args.quiet_seconds / 4))
                continue
            try:
                self.process(series)
            except RunFailed as error:
                self._keep_failed(series.run, str(error))
            except Exception as error:  # noqa: BLE001 - a bug in one run must not end the service
                logger.exception("run %s: unexpected error", series.run.name)
                self._keep_failed(series.run, f"unexpected error in the listener: {error!r}")

    def process(self, series: Series) -> None:
        name = series.run.name
        logger.info("run %s: series %s complete (%d %s instance(s) from %s)", name, series.uid, series.count, series.modality, series.calling)
        start = time.monotonic()
        status = self._run_application(series.run)
        if status != 0:
            raise RunFailed(f"the application failed (exit status {status}): {_last_error(series.run / 'app.log')}")
        logger.info("run %s: the application finished in %.1f s", name, time.monotonic() - start)
        files = _dicom_files(series.run / "output")
        if not files:
            raise RunFailed("the application wrote no DICOM file; nothing was sent")
        self._send(name, files)
        (series.run / "sent.txt").write_text("".join(f"{path.name} -> {self.args.send_to}\n" for path in files))
        logger.info("run %s: sent %s to %s", name, ", ".join(p.name for p in files), self.args.send_to)

    def _run_application(self, run: Path) -> int:
        if self.args.app_command:
            command = shlex.split(self.args.app_command)
        else:
            command = [sys.executable, str(APP_DIR)]
        command += ["-i", str(run / "input"), "-o", str(run / "output")]
        if self.args.models is not None:
            command += ["-m", str(self.args.models)]
        logger.info("run %s: running the application: %s", run.name, shlex.join(command))
        deadline = time.monotonic() + self.args.app_timeout
        with open(run / "app.log", "wb") as log:
            # Its own session: a Ctrl-C in the listener's terminal reaches the listener only,
            # which then stops the application itself (and the watchdog it starts).
            self.app = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                while True:
                    try:
                        return self.app.wait(timeout=0.5)
                    except subprocess.TimeoutExpired:
                        pass
                    if self.stop.is_set():
                        self._stop_application()
                        raise RunFailed("the listener was stopped during the application's run; send the series again")
                    if time.monotonic() > deadline:
                        self._stop_application()
                        raise RunFailed(f"the application ran past --app-timeout {self.args.app_timeout:g} s and was stopped")
            finally:
                self.app = None

    def _stop_application(self) -> None:
        app = self.app
        assert app is not None  # called while the application runs
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(app.pid, sig)
            except ProcessLookupError:
                return
            try:
                app.wait(timeout=APP_STOP_GRACE)
                return
            except subprocess.TimeoutExpired:
                logger.warning("the application did not stop within %.0f s of SIGTERM: killed", APP_STOP_GRACE)

    def _send(self, name: str, files: list[Path]) -> None:
        """C-STORE ``files`` to the destination; a retry sends only the files not stored yet."""
        dest, left, error = self.args.send_to, list(files), ""
        for attempt in range(1, self.args.retries + 1):
            try:
                self._store(left, dest)
                return
            except RunFailed as failure:
                error = str(failure)
            logger.warning("run %s: try %d/%d to send to %s failed: %s", name, attempt, self.args.retries, dest, error)
            if attempt < self.args.retries and self.stop.wait(self.args.retry_delay * 2 ** (attempt - 1)):
                raise RunFailed(f"the listener was stopped before the results were sent to {dest} (last error: {error})")
        raise RunFailed(f"the destination {dest} did not take the results after {self.args.retries} tries: {error}")

    def _store(self, left: list[Path], dest: Destination) -> None:
        """One association; each file stored is removed from ``left``."""
        datasets = [pydicom.dcmread(path) for path in left]
        ae = AE(ae_title=self.args.ae_title)
        ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30  # bounded, so is a stop
        for sop_class in dict.fromkeys(ds.SOPClassUID for ds in datasets):
            syntaxes = {ds.file_meta.TransferSyntaxUID for ds in datasets if ds.SOPClassUID == sop_class}
            ae.add_requested_context(sop_class, list(dict.fromkeys([*sorted(syntaxes), ExplicitVRLittleEndian, ImplicitVRLittleEndian])))
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
        if not assoc.is_established:
            raise RunFailed(f"no association with {dest} ({'rejected' if assoc.is_rejected else 'unreachable or aborted'})")
        try:
            for path, ds in zip(list(left), datasets):
                try:
                    status = assoc.send_c_store(ds)
                except (ValueError, RuntimeError) as error:  # e.g. the peer accepted no context for it
                    raise RunFailed(f"{path.name}: {error}") from None
                code = status.get("Status") if status else None
                if code not in STORED:
                    raise RunFailed(f"{path.name}: " + (f"C-STORE status 0x{code:04X}" if code is not None else "no C-STORE response"))
                left.remove(path)
        finally:
            if assoc.is_established:
                assoc.release()

    # -- keeping what failed ------------------------------------------------------------------

    def _keep_failed(self, run: Path, reason: str) -> None:
        target = self.failed / run.name
        try:
            shutil.move(str(run), target)
            (target / "reason.txt").write_text(reason + "\n", encoding="utf-8")
        except OSError as error:  # e.g. a full disk: say so, and keep serving
            logger.error("run %s failed: %s; cannot keep it in %s (%s)", run.name, reason, self.failed, error.strerror or error)
            return
        logger.error("run %s failed: %s; kept in %s", run.name, reason, target)

    def recover(self) -> None:
        """Runs an earlier listener left unfinished (killed, power cut) go to ``failed/``."""
        for run in sorted(p for p in self.runs.iterdir() if p.is_dir() and not (p / "sent.txt").exists()):
            self._keep_failed(run, "an earlier listener stopped before it finished this run; send the series again")

    def abandon_pending(self, why: str) -> None:
        with self.lock:
            pending, self.pending = list(self.pending.values()), {}
        for series in pending:
            self._keep_failed(series.run, f"the listener was stopped ({why}) before series {series.uid} was processed; send it again")


def _dicom_files(folder: Path) -> list[Path]:
    """Every DICOM file the application wrote (the SEG, an SR, ...), not its PNG or JSON."""
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            if path.is_file() and not path.name.startswith("."):
                pydicom.dcmread(path, stop_before_pixels=True)
                found.append(path)
        except (InvalidDicomError, OSError):
            pass
    return found


def _last_error(log: Path) -> str:
    """The application's ``error:`` line, else its last line: the reason a person reads."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or ["(no output)"])[-1][:500]


def _serve(listener: Listener, args: argparse.Namespace) -> None:
    ae = AE(ae_title=args.ae_title)
    ae.require_called_aet = True
    ae.require_calling_aet = args.allow_calling
    ae.add_supported_context(Verification)
    for sop_class in IMAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class, TRANSFER_SYNTAXES)
    handlers: list[evt.EventHandlerType] = [
        (evt.EVT_C_ECHO, listener.on_echo),
        (evt.EVT_C_STORE, listener.on_store),
        (evt.EVT_ACCEPTED, listener.on_accepted),
        (evt.EVT_REJECTED, listener.on_rejected),
        (evt.EVT_RELEASED, listener.on_ended),
        (evt.EVT_ABORTED, listener.on_ended),
    ]
    try:
        # block=False: the running server comes back (None only from a blocking call).
        server = cast(ThreadedAssociationServer, ae.start_server((args.bind, args.port), block=False, evt_handlers=handlers))
    except OSError as error:
        raise ListenerError(f"cannot listen on {args.bind}:{args.port}: {error.strerror or error}") from None
    runner = threading.Thread(target=listener.run_forever, name="runner")
    runner.start()
    allowed = ", ".join(args.allow_calling) if args.allow_calling else "any"
    logger.info("listening on %s:%d as %s (calling AE titles: %s); results go to %s", args.bind, args.port, args.ae_title, allowed, args.send_to)
    received = []

    def on_signal(number, _frame) -> None:
        received.append(signal.Signals(number).name)
        listener.stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not listener.stop.wait(0.5):
            pass
    finally:
        why = received[0] if received else "stop requested"
        logger.info("stopping (%s): closing the server", why)
        server.shutdown()
        for assoc in server.active_associations:
            assoc.abort()
        listener.stop.set()
        runner.join()
        listener.abandon_pending(why)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--ae-title", required=True, help="this node's AE title (the called AE title the PACS must use)")
    parser.add_argument("--send-to", required=True, metavar="AET@HOST:PORT", help="where the results are sent by C-STORE")
    parser.add_argument("--work", type=Path, required=True, metavar="DIR", help="runs/ and failed/ go here (one listener per DIR)")
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    parser.add_argument(
        "--allow-calling", action="append", default=[], metavar="AET", help="accept associations only from this calling AE title (repeatable; default: any)"
    )
    parser.add_argument("--quiet-seconds", type=float, default=30.0, help="a series is complete when none of its instances came for this long (default 30)")
    parser.add_argument("--models", "-m", type=Path, help="weights folder for the application (default: the embedded default)")
    parser.add_argument("--app-command", help="command run instead of `python app` (e.g. `monai-deploy run IMAGE`); -i IN -o OUT [-m MODELS] are appended")
    parser.add_argument("--app-timeout", type=float, default=3600.0, help="seconds a run may take before it is stopped (default 3600)")
    parser.add_argument("--retries", type=int, default=3, help="tries to send the results, 1 to 10 (default 3)")
    parser.add_argument("--retry-delay", type=float, default=5.0, help="seconds before the second try, doubled before each next one (default 5)")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    args = parser.parse_args(argv)

    handler = log_to_stderr(args.log_level)
    # pynetdicom logs every PDU at INFO; its own lines only when debugging.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if args.log_level == "DEBUG" else logging.WARNING)
    try:
        args.ae_title = _ae_title(args.ae_title, "--ae-title")
        args.allow_calling = [_ae_title(aet, "--allow-calling") for aet in args.allow_calling]
        args.send_to = parse_destination(args.send_to)
        if not 1 <= args.port <= 65535:
            raise ListenerError(f"--port must be from 1 to 65535, got {args.port}")
        for option, value in (("--quiet-seconds", args.quiet_seconds), ("--app-timeout", args.app_timeout)):
            if not value > 0:
                raise ListenerError(f"{option} must be > 0, got {value}")
        if not args.retry_delay >= 0:
            raise ListenerError(f"--retry-delay must be >= 0, got {args.retry_delay}")
        if not 1 <= args.retries <= 10:
            raise ListenerError(f"--retries must be from 1 to 10, got {args.retries}")
        if args.app_command is not None and not shlex.split(args.app_command):
            raise ListenerError("--app-command must not be empty")
        listener = Listener(args)
        try:
            listener.runs.mkdir(parents=True, exist_ok=True)
            listener.failed.mkdir(exist_ok=True)
            lock = open(args.work / ".listener.lock", "w")
        except OSError as error:
            raise ListenerError(f"cannot use --work {args.work}: {error.strerror or error}") from None
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # two listeners would take each other's runs
            except BlockingIOError:
                raise ListenerError(f"another listener is using --work {args.work}") from None
            listener.recover()
            _serve(listener, args)
        return 0
    except ListenerError as error:
        print(f"dicom_listener: error: {error}", file=sys.stderr)
        return 1
    finally:
        logging.getLogger().removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
