"""One run of the bundle's evaluation command (``inference.json`` + ``evaluate.json``) on a datalist.

Every DSC / NSD / false-positive figure of the paper tables comes from the ``metrics.json`` such a
run writes; this module only builds the command, runs it and reads the results back. Settings
are those of ``benchmarks.zero_shot``: one 128^3 patch per phantom volume (no seams), the
bundle's defaults otherwise, plus the run's own overrides (``--num_steps 5``, ...).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "EvalRun", "evaluate", "bundle_command"]

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class EvalRun:
    """What a finished evaluation left: its metrics, per-case reports and wall time."""

    name: str
    metrics: dict[str, Any]
    reports: list[dict[str, Any]]
    seconds: float
    overrides: list[str]

    def seconds_per_case(self, category: str | None = None, stage: str = "total") -> float:
        """Mean of the reports' ``stage_seconds[stage]`` over the cases (``total``: read, segment, write)."""
        names = {c["case"] for c in self.metrics["per_case"] if category is None or c["category"] == category}
        values = [r["stage_seconds"].get(stage, 0.0) for r in self.reports if r["case"] in names]
        return sum(values) / len(values) if values else float("nan")


def bundle_run_command(configs: Sequence[Path | str], *arguments: str) -> list[str]:
    """``python -m monai.bundle run`` of ``configs`` (merged in order), with the bundle's root and
    logging config, then ``arguments`` (overrides such as ``--datalist X``)."""
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    bundle = ROOT / "bundle"
    return [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--bundle_root", str(bundle),
            "--logging_file", str(bundle / "configs/logging.conf"), *arguments]  # fmt: skip


def bundle_command(datalist: Path, output_dir: Path, overrides: Sequence[str] = ()) -> list[str]:
    """The bundle's evaluation (``inference.json`` + ``evaluate.json``) of ``datalist`` into ``output_dir``."""
    configs = [ROOT / "bundle/configs/inference.json", ROOT / "bundle/configs/evaluate.json"]
    return bundle_run_command(
        configs, "--datalist", str(datalist), "--output_dir", str(output_dir), "--patch_size", "[128,128,128]", "--progress", "False", *overrides
    )


def _read_run(name: str, run_dir: Path, overrides: list[str], seconds: float) -> EvalRun:
    eval_dir = run_dir / "eval"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    reports = [json.loads(p.read_text()) for p in sorted(eval_dir.glob("*_report.json"))]
    return EvalRun(name, metrics, reports, seconds, overrides)


def evaluate(
    name: str,
    datalist: dict[str, Any],
    work_dir: Path,
    overrides: Sequence[str] = (),
    *,
    reuse: bool = False,
    keep_images: bool = False,
    weights: dict[str, str] | None = None,
) -> EvalRun:
    """Run the bundle's evaluation of ``datalist`` under ``work_dir/name``.

    Args:
        name: the run's folder name (``zero_shot``, ``levels_0``, ...).
        datalist: a decathlon datalist with a ``test`` list (absolute paths).
        overrides: extra bundle arguments, e.g. ``["--num_steps", "5"]``.
        reuse: return an earlier finished run with the same datalist, command and ``weights``
            instead of running again (resumes an interrupted benchmark).
        keep_images: keep the NIfTI outputs (about 30 MB per case); else only reports and metrics.
        weights: the weights' hashes, part of what a reused run must match.
    """
    run_dir = work_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    datalist_path = run_dir / "datalist.json"
    command = bundle_command(datalist_path, run_dir / "eval", overrides)
    signature = {"datalist": datalist, "command": command, "weights": weights or {}}
    signature_path = run_dir / "run.json"
    if reuse and (run_dir / "eval" / "metrics.json").is_file() and signature_path.is_file():
        earlier = json.loads(signature_path.read_text())
        if all(earlier.get(key) == value for key, value in signature.items()):
            print(f"[{name}] reusing the finished run in {run_dir}", flush=True)
            return _read_run(name, run_dir, list(overrides), float(earlier.get("seconds", float("nan"))))
    for stale in (run_dir / "eval").glob("*") if (run_dir / "eval").is_dir() else ():
        stale.unlink()
    datalist_path.write_text(json.dumps(datalist, indent=2))
    print(f"[{name}] {len(datalist['test'])} case(s): {' '.join(command[2:4])} ... {' '.join(overrides)}", flush=True)
    log_path = run_dir / "bundle.log"
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_offline_env())
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-20:])
        raise RuntimeError(f"bundle evaluation '{name}' failed (exit {done.returncode}); log {log_path}:\n{tail}")
    if not keep_images:
        for image in (run_dir / "eval").glob("*.nii.gz"):
            image.unlink()
    signature_path.write_text(json.dumps({**signature, "seconds": seconds}, indent=2))
    print(f"[{name}] done in {seconds / 60:.1f} min", flush=True)
    return _read_run(name, run_dir, list(overrides), seconds)


def _offline_env() -> dict[str, str]:
    # Nothing is downloaded at run time: the text encoder ships in a package.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
