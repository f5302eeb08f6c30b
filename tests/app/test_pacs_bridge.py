"""The PACS bridge: credentials handling, a fake DICOMweb server that misbehaves, and a real round
trip through Orthanc on loopback."""

import base64
import json
import logging
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pydicom
import pytest
import requests
from app_helpers import ROOT
from dicomweb_client.api import DICOMwebClient
from fake_dicomweb import MULTIPART_DICOM, FakePACS, multipart
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SegmentationStorage, generate_uid

import tools.pacs_bridge
from scripts.errors import UserError
from tools.pacs_bridge import BearerAuth, Credentials, LastReply, RedactSecrets, load_credentials, main, make_session, pull_study


class FakeDICOMweb:
    """QIDO answers and WADO instances of a study, as DICOMwebClient returns them."""

    def __init__(self, series, instances):
        self.series, self.instances, self.retrieved = series, instances, []

    def search_for_series(self, offset=0, **_):
        return [{"00080060": {"vr": "CS", "Value": [m]}, "0020000E": {"vr": "UI", "Value": [u]}} for u, m in self.series][offset:]

    def iter_series(self, study_instance_uid, series_instance_uid):
        self.retrieved.append(series_instance_uid)
        return iter(self.instances)


def test_token_from_the_environment_wins():
    credentials = load_credentials({"DIFFUGTS_PACS_TOKEN": "tok", "DIFFUGTS_PACS_USER": "u", "DIFFUGTS_PACS_PASSWORD": "p"})
    assert (credentials.kind, credentials.token) == ("bearer token", "tok")


def test_basic_credentials_need_both_user_and_password():
    assert load_credentials({"DIFFUGTS_PACS_USER": "u", "DIFFUGTS_PACS_PASSWORD": "p"}).kind == "basic"
    with pytest.raises(ValueError, match="set both DIFFUGTS_PACS_USER and DIFFUGTS_PACS_PASSWORD"):
        load_credentials({"DIFFUGTS_PACS_USER": "u"})


def test_credentials_file_from_the_environment_or_the_option(tmp_path):
    path = tmp_path / "pacs.json"
    path.write_text(json.dumps({"username": "reader", "password": "s3cret"}))
    path.chmod(0o600)
    assert load_credentials({"DIFFUGTS_PACS_CREDENTIALS_FILE": str(path)}).username == "reader"
    path.write_text(json.dumps({"token": "abc"}))
    assert load_credentials({}, path).token == "abc"
    assert load_credentials({}).kind == "none"


@pytest.mark.parametrize(
    "content, message",
    [("user=reader", "is not valid JSON"), ('["x"]', "must hold a JSON object"), ('{"username": "reader"}', "must hold")],
)
def test_bad_credentials_file_is_refused_without_quoting_it(tmp_path, content, message):
    path = tmp_path / "pacs.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        load_credentials({}, path)
    assert "reader" not in str(error.value)


def test_secrets_never_show_in_repr_or_logs(caplog):
    credentials = Credentials(username="reader", password="s3cret-pw")
    assert "s3cret-pw" not in repr(credentials)
    encoded = base64.b64encode(b"reader:s3cret-pw").decode()
    assert encoded in credentials.secrets()
    handler = logging.StreamHandler()
    handler.addFilter(RedactSecrets(credentials.secrets()))
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "header Basic %s for %s", (encoded, "s3cret-pw"), None)
    handler.filter(record)
    assert record.getMessage() == "header Basic *** for ***"


def test_bearer_token_goes_into_the_authorization_header_only():
    session = make_session(Credentials(token="tok-123"))
    prepared = session.prepare_request(requests.Request("GET", "http://127.0.0.1/dicom-web/studies"))
    assert prepared.headers["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in repr(session.auth) and isinstance(session.auth, BearerAuth)


def test_only_ct_and_mr_series_are_pulled_under_safe_names(phantom_ct, tmp_path):
    good = pydicom.dcmread(phantom_ct.files[0])
    evil = pydicom.dcmread(phantom_ct.files[1])
    evil.SOPInstanceUID = "../../outside"
    study, series = str(good.StudyInstanceUID), str(good.SeriesInstanceUID)
    client = FakeDICOMweb([(series, "CT"), ("1.2.4", "SEG"), ("1.2.5", "SR")], [good, evil])
    assert pull_study(client, study, tmp_path / "input") == [series]
    assert client.retrieved == [series]
    assert sorted(p.name for p in (tmp_path / "input").iterdir()) == sorted([f"{good.SOPInstanceUID}.dcm", "instance-000001.dcm"])
    assert not (tmp_path / "outside.dcm").exists()
    with pytest.raises(ValueError, match=r"study 1.2 has no CT or MR series on the server \(1 series found\)"):
        pull_study(FakeDICOMweb([("1.2.4", "SEG")], []), "1.2", tmp_path / "other")


def test_credentials_in_the_url_are_refused(capsys):
    status = main(["--url", "http://reader:s3cret@127.0.0.1:1/dicom-web", "--study", "1.2.3"], environ={})
    assert status == 1
    error = capsys.readouterr().err
    assert "--url must not hold credentials" in error and "s3cret" not in error


def test_unreachable_pacs_is_a_one_line_error(capsys):
    status = main(["--url", "http://127.0.0.1:9/dicom-web", "--study", "1.2.3", "--timeout", "2", "--retries", "1"], environ={})
    assert status == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pacs_bridge: error:")]
    assert "cannot reach the PACS" in line


# -- against a fake DICOMweb server (fake_dicomweb.py) ----------------------------------------


def _with_new_uids(files, folder):
    """The series of ``files`` as another study (new study, series, instance and frame UIDs)."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for path in files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / path.name)
    return sorted(folder.glob("*.dcm"))


@pytest.fixture(scope="module")
def two_studies(phantom_ct, tmp_path_factory):
    """Study A (the phantom CT series) and study B (the same images under new UIDs)."""
    b_files = _with_new_uids(phantom_ct.files, tmp_path_factory.mktemp("study_b") / "series")
    uids = [
        (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)) for ds in (pydicom.dcmread(f[0], stop_before_pixels=True) for f in (phantom_ct.files, b_files))
    ]
    return SimpleNamespace(files=[*phantom_ct.files, *b_files], a=uids[0], b=uids[1])


def write_seg(path, study, series):
    """A minimal SEG-like file of ``study`` that references ``series`` (enough for the bridge)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SegmentationStorage, generate_uid(), "SEG"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.ReferencedSeriesSequence = [Dataset()]
    ds.ReferencedSeriesSequence[0].SeriesInstanceUID = series
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def fake_app(monkeypatch):
    """Replaces the application: it writes a SEG of the series of the first file in its input
    (or of ``fake_app.seg_of``), and records the series it was given."""
    app = SimpleNamespace(runs=[], seg_of=None)

    def run_application(input_folder, output_folder, models, environ):
        datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(input_folder.iterdir())]
        app.runs.append(sorted({str(ds.SeriesInstanceUID) for ds in datasets}))
        study, series = app.seg_of or (str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID))
        write_seg(output_folder / tools.pacs_bridge.SEG_FILE, study, series)
        return 0

    monkeypatch.setattr(tools.pacs_bridge, "run_application", run_application)
    return app


def _bridge(pacs, study, *extra):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DIFFUGTS_PACS_")}  # an open server
    return main(["--url", pacs.url, "--study", study, "--retries", "1", "--timeout", "10", *extra], environ=environ)


def _error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("pacs_bridge: error:")]
    return line


def test_a_reused_work_folder_gives_each_run_its_own_folder(two_studies, fake_app, tmp_path, capsys):
    # The reported bug: the second study's run found the first study's series and SEG in the
    # reused folder, and stored that SEG into study A.
    work = tmp_path / "work"
    with FakePACS(two_studies.files) as pacs:
        assert _bridge(pacs, two_studies.a[0], "--work", str(work)) == 0
        first = capsys.readouterr().out
        assert _bridge(pacs, two_studies.b[0], "--work", str(work)) == 0
        second = capsys.readouterr().out
    assert f"in study {two_studies.a[0]}" in first and f"in study {two_studies.b[0]}" in second
    assert fake_app.runs == [[two_studies.a[1]], [two_studies.b[1]]]
    assert [(study, str(seg.StudyInstanceUID), str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)) for study, seg in pacs.stored] == [
        (two_studies.a[0], *two_studies.a),
        (two_studies.b[0], *two_studies.b),
    ]
    runs = sorted(work.iterdir())
    assert len(runs) == 2 and all((run / "output" / "diffugts_seg.dcm").is_file() for run in runs)


@pytest.mark.parametrize("which", ["other study", "other series of the study"])
def test_a_seg_of_another_series_is_never_stored(two_studies, fake_app, tmp_path, capsys, which):
    # A stale or foreign SEG in the output: refused before STOW, whatever the application did.
    fake_app.seg_of = two_studies.b if which == "other study" else (two_studies.a[0], "1.2.3.4")
    with FakePACS(two_studies.files) as pacs:
        assert _bridge(pacs, two_studies.a[0], "--work", str(tmp_path / "work")) == 1
    line = _error_line(capsys)
    assert f"references series {fake_app.seg_of[1]} of study {fake_app.seg_of[0]}" in line
    assert f"not the series retrieved from study {two_studies.a[0]} ({two_studies.a[1]})" in line
    assert pacs.stored == [] and [r for r in pacs.requests if r[0] == "POST"] == []


def test_no_seg_from_the_application_is_one_line(two_studies, monkeypatch, capsys):
    monkeypatch.setattr(tools.pacs_bridge, "run_application", lambda *_: 0)
    with FakePACS(two_studies.files) as pacs:
        assert _bridge(pacs, two_studies.a[0]) == 1
    assert "the application wrote no SEG" in _error_line(capsys)


def _client(pacs):
    client = DICOMwebClient(pacs.url, permissive_uid=True, timeout=10, callback=LastReply())
    client.set_http_retry_params(retry=False)
    return client


def test_a_server_that_ignores_offset_is_not_paged_forever(two_studies, tmp_path, caplog):
    with FakePACS(two_studies.files) as pacs:
        # The first page at any offset; after 20 pages, a 500 ends the test instead of hanging it.
        pacs.qido = lambda study, offset: pacs.series_page(study, 0) if len(pacs.qido_requests()) <= 20 else (500, "text/plain", b"")
        assert pull_study(_client(pacs), two_studies.a[0], tmp_path / "input") == [two_studies.a[1]]
    assert len(pacs.qido_requests()) == 2
    assert "the PACS ignores the QIDO offset" in caplog.text


def test_a_server_that_pages_without_end_is_stopped(two_studies, tmp_path):
    def endless(study, offset):  # 100 new series on every page, for ever
        items = [{"00080060": {"vr": "CS", "Value": ["CT"]}, "0020000E": {"vr": "UI", "Value": [f"1.2.{offset + i}"]}} for i in range(100)]
        return 200, "application/dicom+json", json.dumps(items).encode()

    with FakePACS(two_studies.files) as pacs:
        pacs.qido = endless
        with pytest.raises(UserError, match="the PACS lists more than 1000 series for study"):
            pull_study(_client(pacs), two_studies.a[0], tmp_path / "input")
    assert len(pacs.qido_requests()) == 11 and not (tmp_path / "input").exists()


def test_paging_follows_offset(two_studies, tmp_path):
    items = [{"00080060": {"vr": "CS", "Value": ["SR"]}, "0020000E": {"vr": "UI", "Value": [f"1.2.{i}"]}} for i in range(5)]
    with FakePACS(two_studies.files) as pacs:
        items += pacs.qido_items(two_studies.a[0])
        pacs.qido = lambda study, offset: (200, "application/dicom+json", json.dumps(items[offset : offset + 2]).encode())  # pages of 2
        assert pull_study(_client(pacs), two_studies.a[0], tmp_path / "input") == [two_studies.a[1]]
    assert [q.get("offset") for q in pacs.qido_requests()] == [["0"], ["2"], ["4"], ["6"]]


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("text/html; charset=utf-8", b"<html><body>Please log in</body></html>"),  # the report
        ("application/dicom+json", b"<html><body>Please log in</body></html>"),
        ("application/json", b'"no series"'),  # JSON, not a list
        ("application/json", b'{"error": "unknown study"}'),  # JSON, not a dataset
        ("application/json", b'[{"0020000E": "1.2.3"}]'),  # a list, not of datasets
        ("application/json", b"null"),
    ],
)
def test_a_qido_reply_that_is_not_dicom_json_is_one_line(two_studies, fake_app, capsys, content_type, body):
    with FakePACS(two_studies.files) as pacs:
        pacs.qido = lambda study, offset: (200, content_type, body)
        assert _bridge(pacs, two_studies.a[0]) == 1
    line = _error_line(capsys)
    assert f"the PACS sent something that is not DICOM JSON for the series of study {two_studies.a[0]}" in line
    assert f"GET {pacs.url}/studies/{two_studies.a[0]}/series answered {content_type}" in line
    assert fake_app.runs == []


@pytest.mark.parametrize(
    "content_type, body, message",
    [
        ("text/html", b"<html><body>Please log in</body></html>", "the PACS sent something that is not DICOM"),  # the report
        (MULTIPART_DICOM, multipart([b"<html><body>Please log in</body></html>"]), "the PACS sent something that is not DICOM"),
        ("application/dicom", b"<html><body>Please log in</body></html>", "the PACS sent something that is not DICOM"),
        (MULTIPART_DICOM, b"--fake-pacs-boundary\r\nno headers", "the PACS sent something that is not DICOM"),
        (MULTIPART_DICOM, b"", "the PACS sent no instance"),  # zero parts
        (MULTIPART_DICOM, b"\r\n--fake-pacs-boundary--\r\n", "the PACS sent no instance"),  # zero parts
        (MULTIPART_DICOM, None, "the PACS sent an instance of series"),  # the instances of study B
    ],
)
def test_a_wado_reply_that_is_not_the_series_is_one_line(two_studies, fake_app, capsys, content_type, body, message):
    with FakePACS(two_studies.files) as pacs:
        if body is None:
            body = multipart(pacs.series[two_studies.b])
        pacs.wado = lambda study, series: (200, content_type, body)
        assert _bridge(pacs, two_studies.a[0]) == 1
    line = _error_line(capsys)
    assert message in line and two_studies.a[1] in line
    assert f"GET {pacs.url}/studies/{two_studies.a[0]}/series/{two_studies.a[1]} answered {content_type}" in line
    assert fake_app.runs == []


def test_a_stow_reply_that_is_not_dicom_json_is_one_line(two_studies, fake_app, capsys):
    with FakePACS(two_studies.files) as pacs:
        pacs.stow_reply = (200, "application/dicom+json", b"<html>stored?</html>")
        assert _bridge(pacs, two_studies.a[0]) == 1
    line = _error_line(capsys)
    assert "the PACS answered the STOW of SEG" in line and "check whether it was stored" in line
    assert f"POST {pacs.url}/studies/{two_studies.a[0]} answered application/dicom+json" in line


@pytest.mark.parametrize(
    "extra, message",
    [(["--study", "1.2/../3"], "--study must be a UID"), (["--study", ""], "--study must be a UID"), (["--series", "a b"], "--series must be a UID")],
)
def test_a_bad_uid_is_one_line(capsys, extra, message):
    assert main(["--url", "http://127.0.0.1:9/dicom-web", "--study", "1.2.3", *extra], environ={}) == 1
    assert message in _error_line(capsys)


def test_a_work_folder_that_cannot_hold_runs_is_one_line(two_studies, fake_app, tmp_path, capsys):
    (tmp_path / "work").write_text("a file")
    with FakePACS(two_studies.files) as pacs:
        assert _bridge(pacs, two_studies.a[0], "--work", str(tmp_path / "work")) == 1
    assert f"cannot create a run folder in --work {tmp_path / 'work'}" in _error_line(capsys)


@pytest.mark.slow
def test_two_studies_through_one_work_folder_with_the_application(two_studies, app_env, tmp_path, capsys):
    # The reported scenario end to end: the real application, the second study's SEG goes to it.
    work = tmp_path / "work"
    with FakePACS(two_studies.files) as pacs:
        assert _bridge(pacs, two_studies.a[0], "--work", str(work)) == 0, capsys.readouterr().err[-3000:]
        assert _bridge(pacs, two_studies.b[0], "--work", str(work)) == 0, capsys.readouterr().err[-3000:]
    assert f"in study {two_studies.b[0]}" in capsys.readouterr().out
    assert [(study, str(seg.StudyInstanceUID), str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)) for study, seg in pacs.stored] == [
        (two_studies.a[0], *two_studies.a),
        (two_studies.b[0], *two_studies.b),
    ]


@pytest.mark.slow
def test_round_trip_through_orthanc_stores_the_seg_of_the_series(phantom_ct, app_env, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a private network namespace (unshare --net) needs root here")
    assert shutil.which("Orthanc"), "Orthanc is missing: install orthanc and orthanc-dicomweb (bash tools/setup.sh)"
    result_path = tmp_path / "result.json"
    script = f'ip link set lo up && exec "{sys.executable}" tests/app/orthanc_scenario.py "{phantom_ct.folder}" "{tmp_path / "work"}" "{result_path}"'
    process = subprocess.run(["unshare", "--net", "--", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(result_path.read_text())

    assert result["bridge_returncode"] == 0, result["bridge_output"][-3000:]
    assert "stored DICOM SEG" in result["bridge_output"]
    (seg,) = result["segs"]
    assert seg["sop_class"] == "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage
    assert seg["referenced_series"] == [result["series"]]
    assert seg["referenced_instances"] == result["source_instances"] == len(phantom_ct.files)

    password = result["password"]
    encoded = base64.b64encode(f"bridge:{password}".encode()).decode()
    assert "DEBUG" in result["bridge_output"]  # the debug log was on, and still
    assert password not in result["bridge_output"] and encoded not in result["bridge_output"]

    assert result["unauthenticated_returncode"] == 1
    assert "401 Unauthorized" in result["unauthenticated_output"]
