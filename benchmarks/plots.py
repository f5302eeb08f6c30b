"""PNG figures of the paper tables (matplotlib, headless), from the same payloads as ``tables``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on benchmark machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .published import PUBLISHED  # noqa: E402
from .tables import MISLEADING_KINDS, TUMOR_CATEGORIES, MethodResult, run_settings  # noqa: E402

__all__ = ["tumor_bars", "misleading_bars", "steps_plot", "stage_bars"]

_TUMOR_NAMES = {"liver": "liver tumor (CT)", "brain": "glioma (MR)"}


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def tumor_bars(results: Sequence[MethodResult], path: Path, title: str, paper: Sequence[str] = ("DiffuGTS",)) -> Path:
    """DSC and NSD (%) per method for the two unseen tumor types; paper rows hatched."""
    labels = [r.label for r in results] + [f"paper: {p}" for p in paper]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, metric, index in ((axes[0], "DSC", 0), (axes[1], "NSD", 1)):
        width = 0.8 / max(1, len(labels))
        for column, (category, tumor) in enumerate(zip(TUMOR_CATEGORIES, ("liver", "brain"))):
            for row, result in enumerate(results):
                found = result.category(category)
                value = 100 * found[1][metric.lower()]["mean"] if found else np.nan
                error = 100 * found[1][metric.lower()]["std"] if found else 0
                axis.bar(column + row * width, value, width, yerr=error, color=f"C{row}", label=result.label if column == 0 else None)
            for offset, method in enumerate(paper):
                row = len(results) + offset
                axis.bar(
                    column + row * width,
                    PUBLISHED[method][tumor][index],
                    width,
                    color="lightgray",
                    hatch="//",
                    edgecolor="gray",
                    label=labels[row] if column == 0 else None,
                )
        axis.set_xticks([c + 0.4 - width / 2 for c in range(2)], [_TUMOR_NAMES["liver"], _TUMOR_NAMES["brain"]])
        axis.set_title(f"{metric} (%)")
        axis.set_ylim(0, 100)
    axes[0].legend(fontsize=7, loc="upper right")
    figure.suptitle(title)
    return _save(figure, path)


def misleading_bars(results: Sequence[MethodResult], path: Path) -> Path:
    """False-positive mL per misleading-prompt category and method (log scale)."""
    categories = list(MISLEADING_KINDS)
    figure, axis = plt.subplots(figsize=(11, 4))
    width = 0.8 / max(1, len(results))
    for row, result in enumerate(results):
        values = []
        for category in categories:
            found = result.category(category)
            values.append(found[1]["false_positive_ml"]["mean"] if found else np.nan)
        axis.bar(np.arange(len(categories)) + row * width, np.maximum(values, 1e-3), width, color=f"C{row}", label=result.label)
    axis.set_yscale("log")
    axis.set_ylabel("false-positive volume (mL, mean)")
    axis.set_xticks(np.arange(len(categories)) + 0.4 - width / 2, [c.replace(" on ", "\non ").replace(", ", ",\n") for c in categories], fontsize=7)
    axis.legend(fontsize=7)
    axis.set_title("Misleading prompts: foreground where the prompted finding is absent (0 is best)")
    return _save(figure, path)


def steps_plot(points: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """DSC against diffusion steps, with seconds per case on a second axis."""
    points = sorted(points, key=lambda p: p["steps"])
    steps = [p["steps"] for p in points]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.errorbar(steps, [100 * p["dsc"]["mean"] for p in points], yerr=[100 * p["dsc"]["std"] for p in points], marker="o", label="DSC")
    axis.set_xlabel("diffusion steps")
    axis.set_ylabel("DSC (%), liver tumors")
    axis.set_xscale("log")
    axis.set_xticks(steps, [str(s) for s in steps])
    time_axis = axis.twinx()
    time_axis.plot(steps, [p["seconds_per_case"] for p in points], marker="s", color="C1", label="s per case")
    time_axis.set_ylabel("seconds per case", color="C1")
    axis.set_title("Quality per second: DSC and time against diffusion steps")
    return _save(figure, path)


def stage_bars(measurements: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Stacked per-stage wall time per measured volume."""
    stages: list[str] = []
    for m in measurements:
        stages += [s for s in m["stage_seconds"] if s not in stages]
    labels = [f"{m['label']}\n({run_settings(m)})" for m in measurements]
    figure, axis = plt.subplots(figsize=(9, 1.2 + 0.8 * len(measurements)))
    left = np.zeros(len(measurements))
    for index, stage in enumerate(stages):
        values = np.array([m["stage_seconds"].get(stage, 0.0) for m in measurements])
        axis.barh(labels, values, left=left, color=f"C{index}", label=stage)
        left += values
    rest = np.array([m["end_to_end_seconds"] for m in measurements]) - left
    axis.barh(labels, np.maximum(rest, 0), left=left, color="lightgray", label="other (stitching, I/O)")
    axis.set_xlabel("seconds")
    axis.legend(fontsize=7, ncol=4, loc="lower right")
    axis.set_title("Per-stage wall time, mini profile")
    return _save(figure, path)
