"""The run's progress in its log: stage lines, and the pipeline's progress bars as log lines."""

import importlib
import logging

import torch
from monai.inferers import SlidingWindowInferer

from operators.stages import PROGRESS_MODULES, patch_progress, stage


def test_a_stage_that_succeeds_logs_its_time(caplog):
    caplog.set_level(logging.INFO)
    with stage("series selection"):
        pass
    assert "series selection: done in 0.00 s" in caplog.text


def test_sliding_window_patches_become_log_lines_without_carriage_returns(caplog, capsys):
    # Pins what patch_progress relies on: MONAI's sliding window draws its bar with the tqdm
    # of monai.inferers.utils, looked up at each call.
    caplog.set_level(logging.INFO)
    inferer = SlidingWindowInferer(roi_size=(4, 4, 4), sw_batch_size=1, overlap=0, progress=True)
    with patch_progress(every_s=0):
        inferer(torch.zeros(1, 1, 8, 8, 4), lambda patch: patch)
    lines = [r.getMessage() for r in caplog.records if r.name == "diffugts.progress"]
    assert lines[-1].startswith("patches: 4/4 (100%)") and "left" in lines[-1]
    assert len(lines) == len(set(lines)) and not any("\r" in line or "\x1b" in line for line in lines)
    assert "patches" not in capsys.readouterr().err  # no bar drawn besides the log


def test_short_loops_log_nothing_and_the_bars_are_restored(caplog):
    caplog.set_level(logging.INFO)
    modules = [importlib.import_module(name) for name in PROGRESS_MODULES]
    before = [module.tqdm for module in modules]
    with patch_progress(every_s=60):
        for module in modules:
            assert module.tqdm is not before[modules.index(module)]
            list(module.tqdm(range(3), desc="diffusion", leave=False))
    assert [module.tqdm for module in modules] == before
    assert not [r for r in caplog.records if r.name == "diffugts.progress"]
