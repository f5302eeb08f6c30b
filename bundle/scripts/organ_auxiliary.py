"""Organ labels as an auxiliary task of the supervised baseline (the learnability gate's UNet).

[ours] The baseline's tumor target is sparse: on a 48^3 crop most voxels are background, and over
four recipes its validation Dice plateaued at 0.2-0.3 with 17-33 false-positive components per
validation volume, most of them in bowel loops, fat and vessels (looked at on 10 validation cases).
A tumor is a tumor because of the organ it sits in; training the same network to also name the
organ of every voxel gives it a dense target, as multi-class nnU-Net models of KiTS (kidney + tumor)
and MSD pancreas (pancreas + tumor) do. The organ head is used for training only: in ``eval()``
the network returns the tumor channel alone, so the evaluator, the sliding-window inferer and the
benchmark see the same one-channel baseline (MONAI's ``DynUNet`` switches its deep-supervision
outputs the same way).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import torch
from monai.transforms import MapTransform
from torch import nn

__all__ = ["IGNORE_ORGAN", "TumorWithOrgans", "OrganTargetd", "TumorWithOrgansLoss"]

#: Organ target value of voxels whose organ is not known in the phantom vocabulary.
IGNORE_ORGAN = -1


class TumorWithOrgans(nn.Module):
    """``network`` with ``1 + organ_classes`` output channels: all of them while training, the
    tumor logit (channel 0) alone in ``eval()``."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.network(image)
        return logits if self.training else logits[:, :1]


class OrganTargetd(MapTransform):
    """Stack the tumor mask and the organ label map into one two-channel target under ``label_key``.

    Organ maps from sources outside ``sources`` (the real chest CT has only bone, lung and "soft
    tissue") would teach a contradicting vocabulary: their organ channel is set to
    :data:`IGNORE_ORGAN`, as are values at or above ``organ_classes`` (the MR labels) and items
    without an organ map.
    """

    def __init__(
        self, label_key: str = "label", organ_key: str = "organs", organ_classes: int = 17, source_key: str = "source", sources: Iterable[str] = ("phantom",)
    ) -> None:
        super().__init__([label_key, organ_key])
        if organ_classes < 2:
            raise ValueError(f"organ_classes must be at least 2, got {organ_classes}")
        self.label_key, self.organ_key, self.organ_classes = label_key, organ_key, int(organ_classes)
        self.source_key, self.sources = source_key, frozenset(sources)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        label = item[self.label_key]
        organs = item.pop(self.organ_key, None)
        organs = torch.full_like(torch.as_tensor(label), IGNORE_ORGAN) if organs is None else torch.as_tensor(organs).round()
        if item.get(self.source_key, "phantom") not in self.sources:
            organs = torch.full_like(organs, IGNORE_ORGAN)
        organs = torch.where(organs >= self.organ_classes, torch.full_like(organs, IGNORE_ORGAN), organs)
        item[self.label_key] = torch.cat([torch.as_tensor(label).float(), organs.float()], dim=0)
        return item


class TumorWithOrgansLoss(nn.Module):
    """``tumor_loss`` on channel 0 against the tumor mask plus ``organ_weight`` times the cross
    entropy of the other channels against the organ map (voxels at :data:`IGNORE_ORGAN` left out).

    PyTorch's cross entropy because MONAI's ``DiceCELoss`` has no ignore value; a batch with no
    known organ (all from the real chest CT) contributes zero, not NaN.
    """

    def __init__(self, tumor_loss: nn.Module, organ_weight: float = 1.0) -> None:
        super().__init__()
        if organ_weight < 0:
            raise ValueError(f"organ_weight must be >= 0, got {organ_weight}")
        self.tumor_loss, self.organ_weight = tumor_loss, float(organ_weight)
        self.cross_entropy = nn.CrossEntropyLoss(ignore_index=IGNORE_ORGAN, reduction="sum")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tumor = self.tumor_loss(logits[:, :1], target[:, :1])
        organs = target[:, 1].long()
        known = (organs != IGNORE_ORGAN).sum()
        if known == 0 or self.organ_weight == 0:
            return tumor
        return tumor + self.organ_weight * self.cross_entropy(logits[:, 1:], organs) / known
