"""Progress of a run in its log: each stage with its time, and patches of long volumes.

A run on a large series takes minutes; its log (stderr, often a file of a PACS integration)
should say what is being done and how long each step took:

* :func:`stage`: one line ``<stage>: done in X s`` when a stage succeeds.
* :class:`SeriesToVolumeOperator`: the SDK's ``DICOMSeriesToVolumeOperator`` with its stage line.
* :func:`patch_progress`: the pipeline's progress bars (MONAI's sliding window over patches, the
  diffusion steps of a patch) as log lines, one every ``every_s`` seconds and only for a loop
  that lasts that long: a log file gets no carriage returns, a small volume no progress at all.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import tqdm
from monai.deploy.operators import DICOMSeriesToVolumeOperator

__all__ = ["stage", "SeriesToVolumeOperator", "patch_progress", "PROGRESS_MODULES"]

logger = logging.getLogger("diffugts.progress")

#: The modules whose ``tqdm`` draws the pipeline's bars, looked up at each call: MONAI's sliding
#: window (its patches; tests/operators/test_stages.py pins it) and the bundle's inpainting loop
#: (diffusion steps).
PROGRESS_MODULES = ("monai.inferers.utils", "scripts.inpainting")
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # cursor moves of nested bars
_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%), {elapsed} elapsed, about {remaining} left"


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Log ``name: done in X s`` when the block succeeds (a failure is reported by the caller)."""
    start = time.perf_counter()
    yield
    logger.info("%s: done in %.2f s", name, time.perf_counter() - start)


class SeriesToVolumeOperator(DICOMSeriesToVolumeOperator):
    """The SDK's operator, unchanged, with a stage line."""

    def compute(self, op_input, op_output, context) -> None:
        with stage("series to volume"):
            super().compute(op_input, op_output, context)


class _LogLines(io.TextIOBase):
    """A file for tqdm: each status it draws becomes one log line (repeats dropped)."""

    def __init__(self) -> None:
        self.last = ""

    def write(self, text: str) -> int:
        for line in re.split(r"[\r\n]+", _ESCAPES.sub("", text)):
            line = line.strip()
            if line and line != self.last:
                logger.info("%s", line)
                self.last = line
        return len(text)


@contextlib.contextmanager
def patch_progress(every_s: float = 10.0) -> Iterator[None]:
    """Within the block, the pipeline's progress bars (``PipelineConfig.progress``) are log lines.

    Each module of :data:`PROGRESS_MODULES` calls the ``tqdm`` it imported; for the block that
    name is tqdm writing into the log, first after ``every_s`` seconds, then every ``every_s``.
    """
    logged = functools.partial(tqdm.tqdm, file=_LogLines(), position=0, delay=every_s, mininterval=every_s, ascii=True, desc="patches", bar_format=_FORMAT)
    modules: list[Any] = [importlib.import_module(name) for name in PROGRESS_MODULES]  # each has a module-level ``tqdm``
    saved = [module.tqdm for module in modules]
    for module in modules:
        module.tqdm = logged
    try:
        yield
    finally:
        for module, original in zip(modules, saved):
            module.tqdm = original
