"""The PACS bridge: credentials handling, and a real round trip through Orthanc on loopback."""

import base64
import json
import logging
import os
import shutil
import subprocess
import sys

import pydicom
import pytest
import requests
from app_helpers import ROOT

from tools.pacs_bridge import BearerAuth, Credentials, RedactSecrets, load_credentials, main, make_session, pull_study


class FakeDICOMweb:
    """QIDO answers and WADO instances of a study, as DICOMwebClient returns them."""

    def __init__(self, series, instances):
        self.series, self.instances, self.retrieved = series, instances, []

    def search_for_series(self, **_):
        return [{"00080060": {"vr": "CS", "Value": [m]}, "0020000E": {"vr": "UI", "Value": [u]}} for u, m in self.series]

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
    client = FakeDICOMweb([("1.2.3", "CT"), ("1.2.4", "SEG"), ("1.2.5", "SR")], [good, evil])
    assert pull_study(client, "1.2", tmp_path / "input") == ["1.2.3"]
    assert client.retrieved == ["1.2.3"]
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
