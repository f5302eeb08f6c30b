"""A fault after the first output was written leaves no output: a SEG without its report is not a result."""

import errno

import matplotlib.figure
import pytest
from runners import Invocation, error_lines, files_under, run_app, sha256_tree


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
        runner="app", output=output, input_folder=sources.series, inputs=[sources.series],
        env={"DIFFUGTS_APP_CONFIG": str(sources.app_config)},
    )
    before = sha256_tree(invocation.inputs)

    outcome = run_app(invocation)

    assert outcome.status == 1 and "Traceback" not in outcome.stderr
    (line,) = error_lines(outcome, "app")
    assert f"cannot write {output / 'diffugts_montage.png'}: No space left on device" in line
    assert files_under(output) == ["earlier_run_notes.txt"]
    assert sha256_tree(invocation.inputs) == before
