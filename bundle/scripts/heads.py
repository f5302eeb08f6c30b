"""The trainable parts of DiffuGTS: AOVA adapters/projections and the residual refiner.

The foundation networks stay frozen; these are the only weights DiffuGTS learns, saved together as
one plain ``state_dict`` (``diffugts_heads.pt``).

:class:`DiffuGTSNetwork` is the same module with a plain tensor ``forward`` (the refiner on its
stacked inputs): the bundle's ``network_def``, which MONAI's ``verify_net_in_out`` and
``ckpt_export`` (TorchScript) can check. The pipeline calls ``.aova`` and ``.refiner`` of either.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import torch
from torch import nn

from .aova import AOVAHead, AOVAOptions
from .checkpoints import load_state_dict_strict, read_checkpoint
from .foundation import FoundationProfile
from .residual import ResidualRefiner

__all__ = ["HeadsStage", "DiffuGTSHeads", "DiffuGTSNetwork", "heads_for_profile", "network_for_profile", "load_heads_weights"]


class HeadsStage(StrEnum):
    """Which head a forward pass of :class:`DiffuGTSHeads` runs (the training stage that trains it)."""

    AOVA = "aova"
    REFINER = "refiner"


class DiffuGTSHeads(nn.Module):
    """AOVA head and residual refiner in one module.

    Args:
        feature_channels: channels of the VAE encoder taps (``FoundationProfile.feature_channels``).
        text_dim: sentence-embedding dimension (384 for MiniLM).
        aova: the AOVA head's options (:class:`~.aova.AOVAOptions`); ``aova_overrides`` (its field
            names, e.g. ``levels``) replace single ones.
        refiner_channels: widths of the refiner UNet.
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        text_dim: int = 384,
        aova: AOVAOptions | None = None,
        refiner_channels: Sequence[int] = (16, 32, 64),
        **aova_overrides: Any,
    ) -> None:
        super().__init__()
        self.aova = AOVAHead(feature_channels, text_dim, aova, **aova_overrides)
        self.refiner = ResidualRefiner(len(feature_channels), refiner_channels)

    def forward(self, stage: HeadsStage | str, *inputs: torch.Tensor, level_logits: bool = False) -> torch.Tensor:
        """``(HeadsStage.AOVA, features, keys, abnormal)`` -> AOVA map, or with ``level_logits`` each
        level's log-odds stacked, (B, levels, *size), what the AOVA stage's loss takes;
        ``(HeadsStage.REFINER, image, pseudo_healthy, aova_map, feature_residuals)`` -> logits. One
        entry point so DistributedDataParallel sees the forward pass of whichever part is trained."""
        try:
            stage = HeadsStage(stage)
        except ValueError:
            raise ValueError(f"stage must be {' or '.join(repr(s.value) for s in HeadsStage)}, got {stage!r}") from None
        if stage is HeadsStage.AOVA:
            output = self.aova(*inputs, with_logits=level_logits)
            return torch.cat(output.level_logits, dim=1) if output.level_logits is not None else output.aova_map
        return self.refiner(*inputs)


class DiffuGTSNetwork(DiffuGTSHeads):
    """:class:`DiffuGTSHeads` (same parameters, same ``state_dict``) whose ``forward`` takes one tensor.

    ``forward(stack)`` is the refiner on its stacked inputs, (B, 4 + levels, X, Y, Z) with each size
    a multiple of 4, and returns the tumor probability (B, 1, X, Y, Z) before the coarse-mask
    confinement. The stack's channels, in order: the image and its pseudo-healthy counterpart in
    [0, 1], the pixel residual |x - x_ph|, the AOVA map, one feature residual per encoder level
    (:class:`~.residual.ResidualRefiner`). The other inputs of DiffuGTS (the frozen MAISI networks,
    the prompt's sentence embeddings) are no part of this module.
    """

    # TorchScript compiles what forward uses; the AOVA head takes a list of features (Python).
    __jit_ignored_attributes__ = ["aova"]

    def forward(self, stack: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.sigmoid(self.refiner.network(stack))


def heads_for_profile(profile: FoundationProfile, **options) -> DiffuGTSHeads:
    """Heads sized for the encoder taps of ``profile``, with its AOVA options; ``options``
    (``text_dim``, ``refiner_channels``, or fields of :class:`~.aova.AOVAOptions`) override them."""
    return DiffuGTSHeads(profile.feature_channels, aova=profile.aova, **options)


def network_for_profile(profile: FoundationProfile, **options) -> DiffuGTSNetwork:
    """:func:`heads_for_profile` as a :class:`DiffuGTSNetwork` (the bundle's ``network_def``)."""
    return DiffuGTSNetwork(profile.feature_channels, aova=profile.aova, **options)


def load_heads_weights(heads: DiffuGTSHeads, path: str | os.PathLike) -> None:
    """Load a heads checkpoint (plain ``state_dict``, ``weights_only=True``)."""
    device = next(heads.parameters()).device
    load_state_dict_strict(heads, read_checkpoint(path, device), path, "DiffuGTS heads")
