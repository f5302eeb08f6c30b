"""Run the application or the bundle on one input, as a user would, and record what came out.

In-process runs (``app``, ``bundle``) call the same entry points as the command lines, with the
same arguments, and capture stdout, stderr and the exit status; the ``-cli`` runners start the
real commands in a subprocess, to prove end to end that a user mistake prints no traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundle"
CONFIGS = BUNDLE / "configs"
#: One diffusion step and no progress bars: the same code path, seconds per run.
BUNDLE_FAST = {"num_steps": 1, "progress": False}
RUNNERS = ("app", "bundle", "app-cli", "bundle-cli")


@dataclass
class Invocation:
    """One run to make.

    Attributes:
        runner: ``app``, ``bundle``, ``app-cli`` or ``bundle-cli``.
        output: the output folder the run is pointed at.
        inputs: every file or folder the run reads; each must be byte-identical afterwards.
        names: what the one-line error must name (a file, a folder, a variable), all of them.
        input_folder: the app's ``-i``.
        app_args: extra app arguments (``-m MODELS``).
        bundle_args: bundle overrides (``input_image``, ``prompt``, ``heads_weights`` ...).
        env: environment variables set for the run.
        marker: a file that must not exist afterwards (what a malicious pickle would create).
        check: extra checks of a successful run, given the output folder.
    """

    runner: str
    output: Path
    inputs: Sequence[Path] = ()
    names: Sequence[str] = ()
    input_folder: Path | None = None
    app_args: Sequence[str] = ()
    bundle_args: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    marker: Path | None = None
    check: Callable[[Path], None] | None = None


@dataclass
class Outcome:
    status: int
    stdout: str
    stderr: str


def sha256_tree(paths: Sequence[Path]) -> dict[str, str]:
    """sha256 of every file under (or at) each path."""
    digests = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def files_under(folder: Path) -> list[str]:
    """Every file under ``folder`` (hidden temporary files included); ``[]`` when it is absent."""
    if not folder.is_dir():
        return [folder.name] if folder.exists() else []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@contextlib.contextmanager
def _environment(overrides: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _app_argv(invocation: Invocation) -> list[str]:
    return [str(ROOT / "app"), "-i", str(invocation.input_folder), "-o", str(invocation.output), *invocation.app_args]


def _bundle_overrides(invocation: Invocation) -> dict[str, Any]:
    return {**BUNDLE_FAST, "output_dir": str(invocation.output), **invocation.bundle_args}


def run_app(invocation: Invocation) -> Outcome:
    from app.app import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with _environment(invocation.env), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main([sys.executable, *_app_argv(invocation)])
    return Outcome(status, stdout.getvalue(), stderr.getvalue())


def run_bundle(invocation: Invocation) -> Outcome:
    """``python -m monai.bundle run --config_file inference.json ...`` in this process.

    The bundle ends a user mistake with ``SystemExit("error: ...")``; Python would print that
    message on stderr and exit with status 1, so that is what is recorded.
    """
    from monai.bundle import run

    stdout, stderr = io.StringIO(), io.StringIO()
    status = 0
    with _environment(invocation.env), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            run(
                config_file=str(CONFIGS / "inference.json"),
                meta_file=str(CONFIGS / "metadata.json"),
                logging_file=str(CONFIGS / "logging.conf"),
                bundle_root=str(BUNDLE),
                **_bundle_overrides(invocation),
            )
        except SystemExit as exit_:
            if isinstance(exit_.code, str):
                print(exit_.code, file=sys.stderr)
                status = 1
            else:
                status = exit_.code or 0
    return Outcome(status, stdout.getvalue(), stderr.getvalue())


def _subprocess(command: list[str], invocation: Invocation) -> Outcome:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **invocation.env}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return Outcome(result.returncode, result.stdout, result.stderr)


def run_app_cli(invocation: Invocation) -> Outcome:
    return _subprocess([sys.executable, *_app_argv(invocation)], invocation)


def run_bundle_cli(invocation: Invocation) -> Outcome:
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "inference.json"), "--bundle_root", str(BUNDLE)]
    for key, value in _bundle_overrides(invocation).items():
        command += [f"--{key}", str(value)]
    return _subprocess(command, invocation)


def run(invocation: Invocation) -> Outcome:
    runner = {"app": run_app, "bundle": run_bundle, "app-cli": run_app_cli, "bundle-cli": run_bundle_cli}[invocation.runner]
    return runner(invocation)


def error_lines(outcome: Outcome, runner: str) -> list[str]:
    """The lines of stderr that report a user mistake (``diffugts: error:`` / ``error:``)."""
    prefix = "diffugts: error:" if runner.startswith("app") else "error:"
    return [line for line in outcome.stderr.splitlines() if line.startswith(prefix)]
