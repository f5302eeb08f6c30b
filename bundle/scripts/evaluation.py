"""Evaluation of masks against reference labels: per-case scores, per-category summary, markdown.

One place for the layout of ``metrics.json`` (``{nsd_tolerance_mm, per_category, per_case}``, each
method's scores under its own key), which the bundle's evaluation and the supervised baseline's
benchmark both write and ``benchmarks.tables`` reads. The metric functions are MONAI's, wrapped in
:mod:`.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .metrics import dice_score, false_positive_volume_ml, normalized_surface_dice

__all__ = ["SUMMARY_METRICS", "case_scores", "summarize", "metrics_markdown"]

#: Metrics summarised per category as mean and standard deviation over cases.
SUMMARY_METRICS = ("dsc", "nsd", "false_positive_ml")


def case_scores(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float], nsd_tolerance_mm: float) -> dict[str, Any]:
    """DSC, NSD at ``nsd_tolerance_mm``, false-positive mL and whether the prediction is empty."""
    return {
        "dsc": dice_score(prediction, reference),
        "nsd": normalized_surface_dice(prediction, reference, spacing, nsd_tolerance_mm),
        "false_positive_ml": false_positive_volume_ml(prediction, reference, spacing),
        "foreground_free": not bool(np.any(prediction)),
    }


def summarize(per_case: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per category (sorted): ``n`` and, per method, mean and std of each summary metric and the
    rate of cases without foreground. Each row holds ``category`` and one score dict per method."""
    categories: dict[str, list[Mapping[str, Any]]] = {}
    for row in per_case:
        categories.setdefault(row["category"], []).append(row)
    summary: dict[str, dict[str, Any]] = {}
    for category, rows in sorted(categories.items()):
        summary[category] = {"n": len(rows)}
        for method in methods:
            stats: dict[str, Any] = {
                metric: {"mean": float(np.mean([r[method][metric] for r in rows])), "std": float(np.std([r[method][metric] for r in rows]))}
                for metric in SUMMARY_METRICS
            }
            stats["foreground_free_rate"] = float(np.mean([r[method]["foreground_free"] for r in rows]))
            summary[category][method] = stats
    return summary


def metrics_markdown(summary: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str], nsd_tolerance_mm: float) -> str:
    """A markdown table of :func:`summarize`'s output; ``labels`` maps each method key to its
    column label, in the order of the rows."""
    lines = [
        f"| category | method | n | DSC | NSD ({nsd_tolerance_mm:g} mm) | false-positive mL | cases without foreground |",
        "|---|---|---|---|---|---|---|",
    ]
    for category, row in summary.items():
        for method, label in labels.items():
            cells = [f"{row[method][m]['mean']:.3f} ± {row[method][m]['std']:.3f}" for m in SUMMARY_METRICS]
            free = f"{100 * row[method]['foreground_free_rate']:.0f}%"
            lines.append(f"| {category} | {label} | {row['n']} | " + " | ".join(cells) + f" | {free} |")
    return "\n".join(lines) + "\n"
