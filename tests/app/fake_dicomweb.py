"""A small DICOMweb server for the PACS bridge's tests, on 127.0.0.1 in a thread (no network).

It serves QIDO-RS (the series of a study, honouring ``offset``), WADO-RS (a series as
``multipart/related``) and STOW-RS (records what is stored) for the DICOM files it is given. A
test makes it misbehave by replacing :attr:`FakePACS.qido` or :attr:`FakePACS.wado` with a
function that returns ``(status, content type, body)``, or :attr:`FakePACS.stow_reply`.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pydicom

BOUNDARY = "fake-pacs-boundary"
MULTIPART_DICOM = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
Reply = tuple[int, str, bytes]


def multipart(parts: Sequence[bytes], boundary: str = BOUNDARY) -> bytes:
    """A ``multipart/related`` body of ``application/dicom`` parts."""
    body = b"".join(b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), part) for part in parts)
    return body + b"--%s--\r\n" % boundary.encode()


def _split_multipart(body: bytes, content_type: str) -> list[bytes]:
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"').encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(chunk.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n"))
    return parts


class FakePACS:
    """The series of ``files`` behind a DICOMweb root at :attr:`url`; a context manager.

    Attributes:
        series: ``{(study, series): [file bytes, ...]}``.
        modality: ``{series: modality}``.
        stored: the datasets received by STOW-RS, with the study of their URL.
        requests: ``(method, path, query)`` of each request.
        qido: ``(study, offset) -> reply``; wado: ``(study, series) -> reply``.
        stow_reply: the reply to STOW-RS.
    """

    def __init__(self, files: Sequence[Path]) -> None:
        self.series: dict[tuple[str, str], list[bytes]] = {}
        self.modality: dict[str, str] = {}
        for path in files:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            self.series.setdefault((str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)), []).append(Path(path).read_bytes())
            self.modality[str(ds.SeriesInstanceUID)] = str(ds.Modality)
        self.stored: list[tuple[str, pydicom.Dataset]] = []
        self.requests: list[tuple[str, str, dict]] = []
        self.qido: Callable[[str, int], Reply] = self.series_page
        self.wado: Callable[[str, str], Reply] = self.series_instances
        self.stow_reply: Reply = (200, "application/dicom+json", b"{}")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/dicom-web"

    def __enter__(self) -> FakePACS:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._server.shutdown()
        self._server.server_close()

    def qido_items(self, study: str) -> list[dict]:
        return [
            {"00080060": {"vr": "CS", "Value": [self.modality[series]]}, "0020000E": {"vr": "UI", "Value": [series]}}
            for (st, series) in self.series
            if st == study
        ]

    def series_page(self, study: str, offset: int) -> Reply:
        """A server that answers everything at once and honours ``offset``."""
        return 200, "application/dicom+json", json.dumps(self.qido_items(study)[offset:]).encode()

    def series_instances(self, study: str, series: str) -> Reply:
        parts = self.series.get((study, series))
        if parts is None:
            return 404, "text/plain", b"no such series"
        return 200, MULTIPART_DICOM, multipart(parts)

    def qido_requests(self) -> list[dict]:
        return [query for method, path, query in self.requests if method == "GET" and path.endswith("/series")]


def _handler(pacs: FakePACS) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_) -> None:  # quiet
            pass

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            pacs.requests.append(("GET", url.path, query))
            parts = url.path.split("/")  # ['', 'dicom-web', 'studies', STUDY, 'series'(, SERIES)]
            if len(parts) == 5 and parts[2] == "studies" and parts[4] == "series":
                self._reply(*pacs.qido(parts[3], int(query.get("offset", ["0"])[0])))
            elif len(parts) == 6 and parts[2] == "studies" and parts[4] == "series":
                self._reply(*pacs.wado(parts[3], parts[5]))
            else:
                self._reply(404, "text/plain", b"not found")

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            pacs.requests.append(("POST", url.path, {}))
            if self.headers.get("Transfer-Encoding") == "chunked":
                body = b""
                while size := int(self.rfile.readline().strip(), 16):
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                body = self.rfile.read(int(self.headers["Content-Length"]))
            study = url.path.split("/")[3]
            for part in _split_multipart(body, self.headers["Content-Type"]):
                pacs.stored.append((study, pydicom.dcmread(io.BytesIO(part))))
            self._reply(*pacs.stow_reply)

    return Handler
