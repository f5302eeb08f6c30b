"""Pixel- and feature-level residual learning: the final tumor probability.

The scan and its pseudo-healthy counterpart differ where the tumor was. The refiner sees the image,
the pseudo-healthy image, the pixel residual |x - x_ph|, one feature residual per encoder level
(||F_l(x) - F_l(x_ph)|| over channels, upsampled) and the AOVA map, and predicts tumor logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet
from scipy import ndimage
from torch import nn

__all__ = ["pixel_residual", "feature_residuals", "ResidualRefiner", "postprocess_mask", "bounding_box"]


def pixel_residual(image: torch.Tensor, pseudo_healthy: torch.Tensor) -> torch.Tensor:
    """|x - x_ph|, (B, 1, ...)."""
    return (image - pseudo_healthy).abs()


def feature_residuals(features: Sequence[torch.Tensor], pseudo_features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """Per-level channel-wise L2 distance / sqrt(C), upsampled to ``size``: (B, levels, *size)."""
    maps = []
    for feature, pseudo in zip(features, pseudo_features):
        distance = (feature - pseudo).norm(dim=1, keepdim=True) / math.sqrt(feature.shape[1])
        maps.append(F.interpolate(distance, size=tuple(size), mode="trilinear"))
    return torch.cat(maps, dim=1)


class ResidualRefiner(nn.Module):
    """A small MONAI 3D UNet from the residual stack to tumor logits.

    Args:
        num_feature_levels: feature residual channels (one per encoder tap).
        channels: UNet widths; the input needs each size divisible by 2 ** (len(channels) - 1).
    """

    def __init__(self, num_feature_levels: int = 3, channels: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        self.in_channels = 4 + num_feature_levels  # image, pseudo-healthy, pixel residual, AOVA, features
        self.network = UNet(
            spatial_dims=3,
            in_channels=self.in_channels,
            out_channels=1,
            channels=tuple(channels),
            strides=(2,) * (len(channels) - 1),
            num_res_units=1,
            norm="instance",
        )

    def forward(self, image: torch.Tensor, pseudo_healthy: torch.Tensor, aova_map: torch.Tensor, feature_residual: torch.Tensor) -> torch.Tensor:
        stack = torch.cat([image, pseudo_healthy, pixel_residual(image, pseudo_healthy), aova_map, feature_residual], dim=1)
        return self.network(stack)


def postprocess_mask(
    probability: np.ndarray,
    spacing: Sequence[float],
    *,
    threshold: float = 0.5,
    min_volume_ml: float = 0.0,
) -> np.ndarray:
    """Binary uint8 mask: threshold, then small components removed.

    Args:
        probability: tumor probability on the output grid.
        spacing: voxel size in mm (to convert ``min_volume_ml`` to voxels).
        threshold: in (0, 1).
        min_volume_ml: connected components smaller than this are dropped (1 mL = 1000 mm^3).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    if min_volume_ml < 0:
        raise ValueError(f"min_volume_ml must be >= 0, got {min_volume_ml}")
    mask = probability > threshold
    voxel_ml = float(np.prod(spacing)) / 1000.0
    min_voxels = int(math.ceil(min_volume_ml / voxel_ml)) if min_volume_ml > 0 else 0
    if min_voxels > 1 and mask.any():
        _remove_small_components(mask, min_voxels)
    return mask.astype(np.uint8)


def _remove_small_components(mask: np.ndarray, min_voxels: int) -> None:
    """Clear, in place, the 26-connected components of fewer than ``min_voxels`` voxels.

    What MONAI's ``RemoveSmallObjects`` (skimage) does, faster on large volumes with many small
    components (``python -m benchmarks.hot_paths`` times both): labels only the foreground's bounding box and clears each
    small component inside its own box, where MONAI also sorts every voxel to check the labels and
    skimage copies the array and indexes all of it by label.
    """
    box = bounding_box(mask)
    labels, _ = ndimage.label(mask[box], structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel())
    cropped = mask[box]  # a view: clearing it clears the mask
    for index, component in enumerate(ndimage.find_objects(labels), start=1):
        if component is not None and sizes[index] < min_voxels:
            cropped[component][labels[component] == index] = False


def bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the smallest box holding every true voxel of ``mask`` (which has one)."""
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)
