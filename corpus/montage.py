"""A PNG montage of corpus cases for a person to look at: slices with organ and tumor outlines.

Each panel shows an axial and a coronal slice through the largest tumor cross-section (the
volume centre for healthy cases), in radiological display: the patient's right on the viewer's
left, anterior (axial) or superior (coronal) at the top. Tumors are outlined in red, organs in
thin colored lines. CT uses an abdominal window (-160 to 240 HU) or a lung window (-1000 to
300 HU) for lung tumors and chest volumes; MR a 0.5 to 99.5 percentile window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scripts.atomic import atomic_write
from scripts.preprocessing import CT_DISPLAY_WINDOW, Modality

from .labels import OrganLabel

__all__ = ["MontagePanel", "panel_from_case", "write_montage", "write_lesion_montage"]

_ABDOMEN_WINDOW = CT_DISPLAY_WINDOW
_LUNG_WINDOW = (-1000.0, 300.0)


@dataclass
class MontagePanel:
    """Two 2D views of one case, already in display orientation."""

    title: str
    views: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]  # (image, organs, tumor, aspect)
    window: tuple[float, float]


def _display_axial(volume: np.ndarray, k: int) -> np.ndarray:
    return volume[::-1, ::-1, k].T


def _display_coronal(volume: np.ndarray, j: int) -> np.ndarray:
    return volume[::-1, j, ::-1].T


def panel_from_case(case, *, title: str | None = None) -> MontagePanel:
    """Extract the montage slices of a :class:`~.phantom.PhantomCase` (keeps only 2D arrays).

    Assumes RAS-aligned voxel axes, as phantoms and reoriented real volumes have.
    """
    tumor = case.tumor_mask > 0
    shape = case.image.shape
    if tumor.any():
        k = int(np.argmax(tumor.sum(axis=(0, 1))))
        j = int(np.argmax(tumor.sum(axis=(0, 2))))
    else:
        k, j = shape[2] // 2, shape[1] // 2
    if case.modality is Modality.CT:
        # Lung window for lung tumors and for chest volumes without abdominal organs.
        chest = not np.any(case.organ_labels == OrganLabel.LIVER) and np.any(case.organ_labels == OrganLabel.LUNG)
        window = _LUNG_WINDOW if case.category.value == "lung tumor" or chest else _ABDOMEN_WINDOW
    else:
        low, high = np.percentile(case.image[::2, ::2, ::2], (0.5, 99.5))
        window = (float(low), float(high))
    sx, sy, sz = case.spacing
    views = [
        (_display_axial(case.image, k), _display_axial(case.organ_labels, k), _display_axial(tumor, k), sy / sx),
        (_display_coronal(case.image, j), _display_coronal(case.organ_labels, j), _display_coronal(tumor, j), sz / sx),
    ]
    if title is None:
        first = case.lesions[0] if case.lesions else None
        detail = f"{len(case.lesions)} lesion(s), {first.diameter_mm:.0f} mm" if first else "healthy"
        title = f"{case.category.value} | {case.source} | seed {case.seed}\n{detail}"
    return MontagePanel(
        title=title, views=[(np.ascontiguousarray(a), np.ascontiguousarray(o), np.ascontiguousarray(t), asp) for a, o, t, asp in views], window=window
    )


def _save(figure, path: Path, dpi: int) -> Path:
    """Write a matplotlib figure as a PNG atomically and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=dpi))
    finally:
        plt.close(figure)
    return path


def write_montage(panels: Sequence[MontagePanel], path: str | os.PathLike, *, columns: int = 4, dpi: int = 80) -> Path:
    """Draw ``panels`` (two views each) on a grid and write a PNG atomically.

    Raises:
        ValueError: if ``panels`` is empty.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("panels must not be empty")
    path = Path(path)
    columns = max(1, min(columns, len(panels)))
    rows = int(np.ceil(len(panels) / columns))
    figure, axes = plt.subplots(rows * 2, columns, figsize=(3.2 * columns, 6.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    colors = plt.get_cmap("tab20")
    for index, panel in enumerate(panels):
        row, col = divmod(index, columns)
        for view_index, (image, organs, tumor, aspect) in enumerate(panel.views):
            ax = axes[row * 2 + view_index, col]
            ax.imshow(image, cmap="gray", vmin=panel.window[0], vmax=panel.window[1], aspect=aspect, interpolation="nearest")
            for label in np.unique(organs):
                if label == 0:
                    continue
                ax.contour(organs == label, levels=[0.5], colors=[colors(int(label) % 20)], linewidths=0.4, alpha=0.7)
            if tumor.any():
                ax.contour(tumor, levels=[0.5], colors=["red"], linewidths=1.0)
            if view_index == 0:
                ax.set_title(panel.title, fontsize=7)
    return _save(figure, path, dpi)


def write_lesion_montage(cases: Sequence, path: str | os.PathLike, *, crop_mm: float = 110.0, dpi: int = 110) -> Path:
    """One column per case: an axial slice through its largest lesion, zoomed to ``crop_mm``,
    without and with the lesion outline (the model card's picture of how lesions look).

    CT uses a soft-tissue window (-160 to 240 HU; lung window for lung tumors), MR the 0.5 to 99.5
    percentile window.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not cases:
        raise ValueError("cases must not be empty")
    path = Path(path)
    figure, axes = plt.subplots(2, len(cases), figsize=(2.4 * len(cases), 5.0), squeeze=False)
    for column, case in enumerate(cases):
        panel = panel_from_case(case)
        image, _, tumor, aspect = panel.views[0]
        rows, cols = np.nonzero(tumor)
        half = int(round(crop_mm / 2.0 / case.spacing[0]))
        if rows.size:
            r0, c0 = int(rows.mean()), int(cols.mean())
        else:
            r0, c0 = image.shape[0] // 2, image.shape[1] // 2
        window = (slice(max(0, r0 - half), r0 + half), slice(max(0, c0 - half), c0 + half))
        for row in range(2):
            ax = axes[row, column]
            ax.axis("off")
            ax.imshow(image[window], cmap="gray", vmin=panel.window[0], vmax=panel.window[1], aspect=aspect, interpolation="nearest")
            if row == 1 and tumor[window].any():
                ax.contour(tumor[window], levels=[0.5], colors=["red"], linewidths=0.8)
        first = case.lesions[0] if case.lesions else None
        contrast = f", {first.intensity_target:+.0f} HU" if first is not None and case.modality is Modality.CT else ""
        axes[0, column].set_title(f"{case.category.value}\nseed {case.seed}{contrast}", fontsize=7)
    return _save(figure, path, dpi)
