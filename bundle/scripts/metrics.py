"""Segmentation metrics of the benchmark: DSC, NSD (MONAI's) and false-positive volume.

Empty-reference convention: a case with no tumor and no predicted foreground scores DSC = NSD = 1,
and any foreground there scores 0 (healthy cases and misleading prompts are judged this way).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_surface_dice

__all__ = ["dice_score", "normalized_surface_dice", "false_positive_volume_ml", "DEFAULT_NSD_TOLERANCE_MM"]

#: NSD tolerance in mm (the boundary distance counted as agreement).
DEFAULT_NSD_TOLERANCE_MM = 2.0


def _one_hot(mask: np.ndarray) -> torch.Tensor:
    foreground = torch.as_tensor(np.asarray(mask) > 0)
    return torch.stack([~foreground, foreground])[None].float()


def _check(prediction: np.ndarray, reference: np.ndarray) -> None:
    if np.shape(prediction) != np.shape(reference):
        raise ValueError(f"prediction shape {np.shape(prediction)} differs from reference {np.shape(reference)}")


def _empty_case(prediction: np.ndarray, reference: np.ndarray) -> float | None:
    if np.any(reference):
        return None
    return 0.0 if np.any(prediction) else 1.0


def dice_score(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice similarity coefficient of two binary masks."""
    _check(prediction, reference)
    empty = _empty_case(prediction, reference)
    if empty is not None:
        return empty
    return float(compute_dice(_one_hot(prediction), _one_hot(reference), include_background=False)[0, 0])


def normalized_surface_dice(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float],
    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (MONAI ``compute_surface_dice``)."""
    _check(prediction, reference)
    empty = _empty_case(prediction, reference)
    if empty is not None:
        return empty
    if not np.any(prediction):
        return 0.0
    value = compute_surface_dice(_one_hot(prediction), _one_hot(reference), class_thresholds=[tolerance_mm], spacing=list(spacing))
    return float(value[0, 0])


def false_positive_volume_ml(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume (mL) predicted as tumor outside the reference."""
    _check(prediction, reference)
    voxels = np.count_nonzero((np.asarray(prediction) > 0) & ~(np.asarray(reference) > 0))
    return voxels * float(np.prod(spacing)) / 1000.0
