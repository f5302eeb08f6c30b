"""PACS bridge: pull a study over DICOMweb, run the application, send the SEG back.

    python -m tools.pacs_bridge --url https://pacs.example.org/dicom-web --study 1.2.3...

1. QIDO-RS: list the study's series; keep the CT and MR ones (or the one ``--series`` names).
2. WADO-RS: retrieve them into a fresh run folder (one file per instance): a temporary one, or a
   new ``RUN`` folder inside ``--work DIR`` (never one of an earlier run).
3. Run ``python app -i RUN/input -o RUN/output [-m MODELS]``: the application picks the series.
4. STOW-RS: store the DICOM SEG into the same study, once it is checked to reference a series
   just retrieved from that study.

Credentials never appear on the command line and are never logged. They come from, in order:

* ``DIFFUGTS_PACS_TOKEN``: an OAuth bearer token;
* ``DIFFUGTS_PACS_USER`` and ``DIFFUGTS_PACS_PASSWORD``: HTTP basic authentication;
* a JSON file, named by ``--credentials-file`` or ``DIFFUGTS_PACS_CREDENTIALS_FILE``, holding
  ``{"token": "..."}`` or ``{"username": "...", "password": "..."}`` (keep it mode 600);
* none: an open server (e.g. Orthanc on loopback for a test).

Exit status: 0 when the SEG is stored; 1 with a one-line message for a user mistake, a
refusal by the server or an application failure.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard
from urllib.parse import urlsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.errors import InvalidDicomError

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bundle") not in sys.path:
    sys.path.append(str(ROOT / "bundle"))

from scripts.errors import UserError  # noqa: E402
from tools.console_log import LOG_LEVELS, log_to_stderr  # noqa: E402

__all__ = ["Credentials", "load_credentials", "BearerAuth", "make_session", "LastReply", "search_series", "pull_study", "push_seg", "run_application", "main"]

logger = logging.getLogger("diffugts.pacs_bridge")

APP_DIR = ROOT / "app"
SEG_FILE = "diffugts_seg.dcm"
ENV_TOKEN = "DIFFUGTS_PACS_TOKEN"
ENV_USER = "DIFFUGTS_PACS_USER"
ENV_PASSWORD = "DIFFUGTS_PACS_PASSWORD"
ENV_CREDENTIALS_FILE = "DIFFUGTS_PACS_CREDENTIALS_FILE"
IMAGE_MODALITIES = ("CT", "MR")
_MODALITY_TAG, _SERIES_UID_TAG = "00080060", "0020000E"
#: More series than this in one study is a server that pages without end, not a study.
MAX_SERIES = 1000


@dataclass(frozen=True)
class Credentials:
    """How to authenticate; ``repr`` never shows the secrets."""

    username: str | None = None
    password: str | None = None
    token: str | None = None

    @property
    def kind(self) -> str:
        return "bearer token" if self.token else "basic" if self.username else "none"

    def secrets(self) -> list[str]:
        """Strings that must never be logged: the secrets and their encoded header forms."""
        secrets = [s for s in (self.password, self.token) if s]
        if self.username and self.password:
            secrets.append(base64.b64encode(f"{self.username}:{self.password}".encode()).decode())
        return secrets

    def __repr__(self) -> str:
        return f"Credentials(kind={self.kind!r}, username={self.username!r})"


def load_credentials(environ: Mapping[str, str], credentials_file: str | os.PathLike | None = None) -> Credentials:
    """Credentials from the environment or a JSON file (see the module docstring).

    Raises:
        UserError: a password without a user (or the reverse), or an unreadable or malformed file.
    """
    if environ.get(ENV_TOKEN):
        return Credentials(token=environ[ENV_TOKEN])
    user, password = environ.get(ENV_USER), environ.get(ENV_PASSWORD)
    if user or password:
        if not (user and password):
            raise UserError(f"set both {ENV_USER} and {ENV_PASSWORD} for basic authentication")
        return Credentials(username=user, password=password)
    path = credentials_file or environ.get(ENV_CREDENTIALS_FILE)
    if not path:
        return Credentials()
    path = Path(path)
    try:
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            logger.warning("credentials file %s is readable by other users: chmod 600 it", path)
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"cannot read credentials file {path}: {error.strerror or error}") from None
    except json.JSONDecodeError:
        # The parser's message may quote the file's content: say only where it failed.
        raise UserError(f"credentials file {path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise UserError(f"credentials file {path} must hold a JSON object")
    if data.get("token"):
        return Credentials(token=str(data["token"]))
    if data.get("username") and data.get("password"):
        return Credentials(username=str(data["username"]), password=str(data["password"]))
    raise UserError(f'credentials file {path} must hold {{"token": ...}} or {{"username": ..., "password": ...}}')


class BearerAuth(requests.auth.AuthBase):
    """Adds ``Authorization: Bearer`` to each request (kept out of the client's logged headers)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


def make_session(credentials: Credentials) -> requests.Session:
    """A ``requests`` session that authenticates as ``credentials`` say."""
    session = requests.Session()
    if credentials.token:
        session.auth = BearerAuth(credentials.token)
    elif credentials.username:
        session.auth = requests.auth.HTTPBasicAuth(credentials.username, credentials.password or "")
    return session


class RedactSecrets(logging.Filter):
    """Replaces any secret in a log record by ``***`` (a last line of defence)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


class LastReply:
    """The client's response hook (``callback``): remembers the last reply, so an error can name it."""

    def __init__(self) -> None:
        self.text = ""

    def __call__(self, response: requests.Response, **_) -> None:
        url = urlsplit(response.url)._replace(query="").geturl()
        self.text = f" ({response.request.method} {url} answered {response.headers.get('Content-Type') or 'no content type'})"

    def __str__(self) -> str:
        return self.text


def _value(item: Mapping, tag: str) -> str | None:
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return values[0] if isinstance(values, list) and values and isinstance(values[0], str) else None


def _is_dicom_json(page: object) -> TypeGuard[list[dict[str, dict]]]:
    """A QIDO reply: a list of datasets, each ``{"GGGGEEEE": {...}, ...}``."""
    return isinstance(page, list) and all(
        isinstance(item, dict) and all(re.fullmatch(r"[0-9A-Fa-f]{8}", tag) and isinstance(element, dict) for tag, element in item.items()) for item in page
    )


def search_series(client: DICOMwebClient, study_uid: str, reply: LastReply | None = None) -> list[dict]:
    """Every series of the study, page by page (QIDO ``offset``), however the server pages.

    A server that ignores ``offset`` sends its first page again: a page without a new series ends
    the search (with a warning). Each further page must bring a new series and more than
    :data:`MAX_SERIES` are refused, so the search ends whatever the server sends.

    Raises:
        UserError: a reply is not DICOM JSON, or the server lists more than ``MAX_SERIES`` series.
    """
    found: list[dict] = []
    seen: set[str | None] = set()
    offset = 0
    while True:
        try:
            page = client.search_for_series(study_instance_uid=study_uid, fields=["Modality", "SeriesInstanceUID"], offset=offset)
        except requests.JSONDecodeError:
            page = None  # e.g. a login page in HTML, with status 200
        if not _is_dicom_json(page):
            raise UserError(f"the PACS sent something that is not DICOM JSON for the series of study {study_uid}{reply or ''}")
        new = [item for item in page if _value(item, _SERIES_UID_TAG) not in seen]
        if page and not new:
            logger.warning(
                "the PACS ignores the QIDO offset (its page at offset %d repeats series already listed): keeping the %d series listed", offset, len(found)
            )
        if not new:
            return found
        found += new
        seen.update(_value(item, _SERIES_UID_TAG) for item in new)
        if len(found) > MAX_SERIES:
            raise UserError(f"the PACS lists more than {MAX_SERIES} series for study {study_uid}{reply or ''}: the search was stopped")
        offset += len(page)


def _instances(client: DICOMwebClient, study_uid: str, series_uid: str, reply: LastReply | None) -> Iterator[pydicom.Dataset]:
    """The series' instances as WADO-RS sends them; a reply that cannot be read as DICOM is the server's."""
    try:
        yield from client.iter_series(study_instance_uid=study_uid, series_instance_uid=series_uid)
    except (InvalidDicomError, ValueError, KeyError) as error:
        # ValueError: not multipart/related, or a part without headers; KeyError: no Content-Type.
        logger.debug("WADO-RS reply for series %s: %r", series_uid, error)
        raise UserError(f"the PACS sent something that is not DICOM for series {series_uid}{reply or ''}") from None


def pull_study(client: DICOMwebClient, study_uid: str, folder: Path, series_uid: str | None = None, reply: LastReply | None = None) -> list[str]:
    """Retrieve the study's CT and MR series (or only ``series_uid``) into ``folder``.

    ``reply`` is the client's :class:`LastReply` hook, if it has one: errors then name the reply.

    Returns:
        The retrieved series instance UIDs.

    Raises:
        UserError: the study has no such series on the server, or the server's replies are not
            what was asked for (not DICOM JSON, not DICOM, no instance, another series).
    """
    found = search_series(client, study_uid, reply)
    wanted = []
    for item in found:
        uid = _value(item, _SERIES_UID_TAG)
        if uid and uid not in wanted and (uid == series_uid if series_uid else _value(item, _MODALITY_TAG) in IMAGE_MODALITIES):
            wanted.append(uid)
    if not wanted:
        what = f"series {series_uid}" if series_uid else "CT or MR series"
        raise UserError(f"study {study_uid} has no {what} on the server ({len(found)} series found)")
    folder.mkdir(parents=True, exist_ok=True)
    for uid in wanted:
        count = 0
        for dataset in _instances(client, study_uid, uid, reply):
            # Only what was asked for goes into the folder: the application picks among its files.
            if (dataset.get("StudyInstanceUID"), dataset.get("SeriesInstanceUID")) != (study_uid, uid):
                raise UserError(
                    f"the PACS sent an instance of series {dataset.get('SeriesInstanceUID')} of study {dataset.get('StudyInstanceUID')} "
                    f"when asked for series {uid} of study {study_uid}{reply or ''}"
                )
            # The server names the files: accept only a UID as a file name (no path tricks).
            name = str(dataset.get("SOPInstanceUID", ""))
            if not re.fullmatch(r"[0-9][0-9.]{0,63}", name):
                name = f"instance-{len(list(folder.iterdir())):06d}"
            dataset.save_as(folder / f"{name}.dcm", enforce_file_format=True)
            count += 1
        if not count:
            raise UserError(f"the PACS sent no instance of series {uid}{reply or ''}")
        logger.info("retrieved series %s: %d instance(s)", uid, count)
    return wanted


def run_application(input_folder: Path, output_folder: Path, models: Path | None, environ: Mapping[str, str]) -> int:
    """Run ``python app`` on ``input_folder``; the PACS credentials are not passed to it."""
    command = [sys.executable, str(APP_DIR), "-i", str(input_folder), "-o", str(output_folder)]
    if models is not None:
        command += ["-m", str(models)]
    child_environ = {k: v for k, v in environ.items() if not k.startswith("DIFFUGTS_PACS_")}
    logger.info("running the application: %s", " ".join(command))
    return subprocess.run(command, env=child_environ, check=False).returncode


def push_seg(client: DICOMwebClient, seg_path: Path, study_uid: str, series_uids: Sequence[str], reply: LastReply | None = None) -> pydicom.Dataset:
    """STOW the SEG into ``study_uid``; return the dataset stored.

    The SEG must be of ``study_uid`` and reference only series of ``series_uids`` (those just
    retrieved): a SEG is never stored into a study other than its source series'.

    Raises:
        UserError: no SEG, a SEG of other series, or the server reports the instance as failed.
    """
    if not seg_path.is_file():
        raise UserError(f"the application wrote no SEG ({seg_path}); nothing was sent to the PACS")
    seg = pydicom.dcmread(seg_path)
    referenced = sorted({str(item.get("SeriesInstanceUID")) for item in seg.get("ReferencedSeriesSequence", [])})
    if str(seg.get("StudyInstanceUID")) != study_uid or not referenced or not set(referenced) <= set(series_uids):
        raise UserError(
            f"the SEG {seg_path} references series {', '.join(referenced) or '(none)'} of study {seg.get('StudyInstanceUID')}, "
            f"not the series retrieved from study {study_uid} ({', '.join(series_uids)}): nothing was sent to the PACS"
        )
    try:
        response = client.store_instances([seg], study_instance_uid=study_uid)
    except (requests.JSONDecodeError, KeyError):
        # The SEG went out; the answer says nothing readable about it (KeyError: no Content-Type).
        raise UserError(
            f"the PACS answered the STOW of SEG {seg.SOPInstanceUID} with something that is not DICOM JSON{reply or ''}: check whether it was stored"
        ) from None
    if response is not None and "FailedSOPSequence" in response and len(response.FailedSOPSequence):
        reason = response.FailedSOPSequence[0].get("FailureReason", "unknown")
        raise UserError(f"the server refused the SEG (failure reason {reason})")
    return seg


def _run_folder(work: Path) -> Path:
    """A new folder for this run inside ``work``: files of an earlier run (another study) never mix in."""
    try:
        work.mkdir(parents=True, exist_ok=True)
        run = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=work))
    except OSError as error:
        raise UserError(f"cannot create a run folder in --work {work}: {error.strerror or error}") from None
    logger.info("run folder: %s (retrieved series in input/, results in output/)", run)
    return run


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = dict(os.environ if environ is None else environ)
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web (no credentials in it)")
    parser.add_argument("--study", required=True, help="Study Instance UID to process")
    parser.add_argument("--series", help="only this Series Instance UID (default: every CT and MR series of the study)")
    parser.add_argument("--models", "-m", type=Path, help="weights folder for the application (default: the embedded default)")
    parser.add_argument(
        "--work",
        type=Path,
        metavar="DIR",
        help="keep each run's retrieved series and results in a new folder inside DIR (default: a temporary folder, removed)",
    )
    parser.add_argument("--credentials-file", type=Path, help="JSON file with the credentials (see below); never the credentials themselves")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request, > 0 (default 60)")
    parser.add_argument("--retries", type=int, default=5, help="attempts per request on busy or unreachable servers, 1 to 10 (default 5, exponential back-off)")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    args = parser.parse_args(argv)

    handler = log_to_stderr(args.log_level)
    try:
        if args.timeout <= 0:
            raise UserError(f"--timeout must be > 0, got {args.timeout}")
        if not 1 <= args.retries <= 10:
            raise UserError(f"--retries must be from 1 to 10, got {args.retries}")
        url = urlsplit(args.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise UserError(f"--url must be an http(s) URL, got {args.url!r}")
        if url.username or url.password:
            raise UserError("--url must not hold credentials: set them in the environment or a credentials file")
        for option, uid in (("--study", args.study), ("--series", args.series)):
            if uid is not None and not re.fullmatch(r"[^/@\s]+", uid):  # it goes into the URLs' paths
                raise UserError(f"{option} must be a UID such as 1.2.840.113619.2.55, got {uid!r}")
        credentials = load_credentials(environ, args.credentials_file)
        handler.addFilter(RedactSecrets(credentials.secrets()))
        logger.info("PACS %s, authentication: %s", args.url, credentials.kind)
        reply = LastReply()
        client = DICOMwebClient(args.url, session=make_session(credentials), permissive_uid=True, timeout=args.timeout, callback=reply)
        client.set_http_retry_params(retry=args.retries > 1, max_attempts=args.retries)
        with tempfile.TemporaryDirectory(prefix="diffugts-pacs-") as scratch:
            run = _run_folder(args.work) if args.work else Path(scratch)
            input_folder, output_folder = run / "input", run / "output"
            series_uids = pull_study(client, args.study, input_folder, args.series, reply)
            status = run_application(input_folder, output_folder, args.models, environ)
            if status != 0:
                raise UserError(f"the application failed (exit status {status}); nothing was sent to the PACS")
            seg = push_seg(client, output_folder / SEG_FILE, args.study, series_uids, reply)
        print(f"stored DICOM SEG {seg.SOPInstanceUID} (series {seg.SeriesInstanceUID}) in study {seg.StudyInstanceUID}")
        return 0
    except UserError as error:
        message = str(error)
    except requests.HTTPError as error:
        response = error.response
        assert response is not None  # raise_for_status attaches the response
        message = f"the PACS answered {response.status_code} {response.reason} to {response.request.method} {urlsplit(response.url).path}"
    except requests.RequestException as error:
        message = f"cannot reach the PACS at {args.url}: {type(error).__name__}"
    finally:
        logging.getLogger().removeHandler(handler)
    print(f"pacs_bridge: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
