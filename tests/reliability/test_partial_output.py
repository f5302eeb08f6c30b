"""A fault or a signal after the first output was written leaves no output: a SEG without its
report is not a result, nor the first case of a datalist whose run was stopped."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.figure
import nibabel as nib
import pytest
from runners import BUNDLE, CONFIGS, ROOT, Invocation, error_lines, files_under, run_app, sha256_tree


@pytest.mark.slow
def test_a_disk_that_fills_up_after_the_seg_leaves_nothing_behind(sources, tmp_path, clean_environment, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The SEG is written first; the montage, next, meets a full disk.
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", disk_full)
    output = tmp_path / "out"
    output.mkdir()
    (output / "earlier_run_notes.txt").write_text("kept")  # not this run's: left alone
    invocation = Invocation(
        runner="app",
        output=output,
        input_folder=sources.series,
        inputs=[sources.series],
        env={"DIFFUGTS_APP_CONFIG": str(sources.app_config)},
    )
    before = sha256_tree(invocation.inputs)

    outcome = run_app(invocation)

    assert outcome.status == 1 and "Traceback" not in outcome.stderr
    (line,) = error_lines(outcome, "app")
    assert f"cannot write {output / 'diffugts_montage.png'}: No space left on device" in line
    assert files_under(output) == ["earlier_run_notes.txt"]
    assert sha256_tree(invocation.inputs) == before


# -- signals: a scheduler's SIGTERM, an out-of-memory SIGKILL ---------------------------------

STAGING = ".diffugts-staging-"


@pytest.fixture(scope="module")
def long_series(tmp_path_factory):
    """A 128^3 CT series: the model step takes seconds, long enough to be interrupted."""
    from corpus.phantom import generate_case
    from tools.demo import write_ct_series

    folder = tmp_path_factory.mktemp("long") / "series"
    case = generate_case("liver tumor", 7)
    write_ct_series(case.image, case.affine, folder, seed=7)
    return folder


def _start(command):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HOLOSCAN_LOG_LEVEL": "CRITICAL"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, process, timeout=240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert process.poll() is None, f"the run ended before the point to interrupt: {process.communicate()[1][-2000:]}"
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the run never reached the point to interrupt")


def _staged(output: Path, name: str | None = None):
    def check() -> bool:
        folders = list(output.glob(f"*{STAGING}*")) if output.is_dir() else []
        return bool(folders) and (name is None or any((f / name).is_file() for f in folders))

    return check


def _settles_empty(output: Path, seconds: float = 5.0) -> list[str]:
    """The files under ``output`` once the staging watchdog has had time to act."""
    deadline = time.monotonic() + seconds
    while files_under(output) and time.monotonic() < deadline:
        time.sleep(0.1)
    return files_under(output)


def _app_command(series: Path, output: Path):
    return [sys.executable, str(ROOT / "app"), "-i", str(series), "-o", str(output)]


@pytest.mark.slow
def test_sigterm_while_the_graph_runs_stops_the_app_within_seconds_and_leaves_nothing(long_series, tmp_path):
    output = tmp_path / "out"
    process = _start(_app_command(long_series, output))
    _wait_for(_staged(output), process)
    time.sleep(1.0)  # into the graph: the series is being read or segmented
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    process.communicate(timeout=30)
    assert time.monotonic() - sent < 10, "SIGTERM did not stop the run within seconds"
    assert process.returncode != 0
    assert _settles_empty(output) == []


@pytest.mark.slow
def test_sigkill_just_after_the_seg_is_written_leaves_no_seg_without_its_report(long_series, tmp_path):
    output = tmp_path / "out"
    process = _start(_app_command(long_series, output))
    _wait_for(_staged(output, "diffugts_seg.dcm"), process)
    process.kill()
    process.communicate(timeout=30)
    assert _settles_empty(output) == []


def _datalist(folder: Path, count: int = 3) -> Path:
    from corpus.phantom import generate_case

    entries = []
    for index in range(count):
        case = generate_case("liver tumor", 20 + index, size=(96, 96, 64))
        nib.save(nib.Nifti1Image(case.image.astype("float32"), case.affine), folder / f"case{index}.nii.gz")
        entries.append({"image": f"case{index}.nii.gz"})
    path = folder / "datalist.json"
    path.write_text(json.dumps({"test": entries}))
    return path


def _bundle_command(datalist: Path, output: Path):
    return [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(CONFIGS / "inference.json"),
        "--bundle_root",
        str(BUNDLE),
        "--datalist",
        str(datalist),
        "--prompt",
        "liver tumor",
        "--output_dir",
        str(output),
        "--progress",
        "False",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_signal_after_the_first_case_of_a_datalist_leaves_no_case_behind(tmp_path, stop):
    datalist, output = _datalist(tmp_path), tmp_path / "out"
    process = _start(_bundle_command(datalist, output))
    _wait_for(_staged(output if output.exists() else tmp_path, "case0_report.json"), process)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    if stop == signal.SIGTERM:
        assert "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1] == "error: stopped by SIGTERM; no output was written"
    deadline = time.monotonic() + 5.0  # the staging watchdog removes what a SIGKILL left
    while list(tmp_path.glob(f".out{STAGING}*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not output.exists() and not list(tmp_path.glob(f".out{STAGING}*"))


@pytest.mark.slow
def test_a_disk_that_fills_up_while_the_bundle_writes_leaves_nothing_behind(sources, tmp_path, monkeypatch):
    import nibabel
    from runners import run_bundle

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    image = tmp_path / "case.nii.gz"
    nibabel.save(nibabel.Nifti1Image(sources.image, sources.affine), image)
    monkeypatch.setattr(nibabel, "save", disk_full)  # the mask is the first file written
    output = tmp_path / "out"
    invocation = Invocation(runner="bundle", output=output, inputs=[image], bundle_args={"input_image": str(image), "prompt": "liver tumor"})
    before = sha256_tree(invocation.inputs)

    outcome = run_bundle(invocation)

    assert outcome.status == 1 and "Traceback" not in outcome.stderr
    (line,) = error_lines(outcome, "bundle")
    assert line == f"error: cannot write the outputs in {output}: No space left on device"
    assert not output.exists() and not list(tmp_path.glob(".out.diffugts-staging-*"))
    assert sha256_tree(invocation.inputs) == before
