"""Provenance and the results folder's ``README.md``: what produced the figures, and every section.

Each stage of ``benchmarks.paper_tables`` writes ``<stage>.md`` stamped with its own date, commit
and weights; ``README.md`` is the provenance of the latest invocation followed by every stage
section found in the folder, so rerunning one stage keeps the others' (older, stamped) sections.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["STAGES", "TITLES", "provenance", "stamp", "write_section", "write_summary", "parse_stages"]

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("zero_shot", "ablations", "misleading", "steps", "performance", "gpu")
TITLES = {
    "zero_shot": "Zero-shot segmentation of unseen tumors",
    "ablations": "Ablations",
    "misleading": "Misleading prompts",
    "steps": "Diffusion steps against quality and time",
    "performance": "Performance of the mini profile on this machine",
    "gpu": "The maisi profile on a GPU",
}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def provenance() -> dict[str, Any]:
    """Machine, date, code, versions and the embedded weights' sha256."""
    import monai
    import torch

    sys.path.insert(0, str(ROOT / "bundle"))
    from scripts.checkpoints import file_sha256

    models = ROOT / "bundle" / "models" / "mini"
    return {
        "date": now(),
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": list(os.getloadavg()),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "weights": {p.name: file_sha256(p) for p in sorted(models.glob("*.pt"))},
    }


def stamp(info: dict[str, Any], limit: int | None) -> str:
    """One italic line: when, at which commit and heads, on how many cases, how loaded the machine was."""
    commit = info["commit"][:10] + (" + uncommitted changes" if info["uncommitted_changes"] else "")
    heads = info["weights"].get("diffugts_heads.pt", "none")[:12]
    return (
        f"_Produced {info['date']} at commit {commit}; heads sha256 {heads}…; "
        f"{'at most ' + str(limit) if limit else 'all'} cases per split; load average at start "
        f"{info['load_average'][0]:.1f} on {info['cores']} cores._"
    )


def write_section(out: Path, stage: str, stamp_line: str, body: str) -> Path:
    path = out / f"{stage}.md"
    path.write_text(f"## {TITLES[stage]}\n\n{stamp_line}\n\n{body}")
    return path


def write_summary(out: Path, info: dict[str, Any], command: str) -> Path:
    """``README.md``: this invocation's provenance, then every stage section found in ``out``."""
    weights = "<br>".join(f"{name} {digest[:16]}…" for name, digest in info["weights"].items()) or "none"
    memory = f", {info['memory_gb']:.0f} GB RAM" if info["memory_gb"] else ""
    lines = [
        "# DiffuGTS: the paper-shaped benchmark",
        "",
        f"Made by `{command}`. The corpus is this project's (phantoms and real healthy anatomy, "
        "`shared/docs/benchmark.md`), not the paper's datasets; the weights are the embedded `mini` profile, not MAISI's.",
        "",
        "| | |",
        "|---|---|",
        f"| machine | {info['cpu']}, {info['cores']} cores{memory}, GPU: {info['gpu'] or 'none'} |",
        f"| date | {info['date']} |",
        f"| git commit | {info['commit']}{' (with uncommitted changes)' if info['uncommitted_changes'] else ''} |",
        f"| versions | torch {info['torch']}, MONAI {info['monai']}, Python {info['python']} |",
        f"| weights (`bundle/models/mini`, sha256) | {weights} |",
        f"| load average at start | {' / '.join(f'{v:.1f}' for v in info['load_average'])} (1 / 5 / 15 min) |",
        "",
        "Each section carries its own stamp: sections of stages not run by this invocation are kept from earlier ones.",
        "",
    ]
    for stage in STAGES:
        section = out / f"{stage}.md"
        if section.is_file():
            lines += [section.read_text().rstrip(), ""]
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_stages(text: str) -> list[str]:
    """``"zero_shot,steps"`` -> the stage names; ``ValueError`` names unknown ones."""
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(f"unknown stage(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(STAGES)}")
    return stages
