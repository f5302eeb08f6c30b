"""Multi-scale features of the frozen VAE encoder, tapped by iterating its blocks.

``torch.fx`` tracing of the MAISI encoder fails, and forward hooks would need removing on every
error path; iterating ``encoder.blocks`` gives the taps and the latent in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, cast

import torch

if TYPE_CHECKING:
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi

__all__ = ["DEFAULT_TAPS", "EncoderFeatures", "encode_with_features"]

#: Outputs of encoder blocks 2, 5 and 8: the last residual block at full, 1/2 and 1/4 resolution.
DEFAULT_TAPS = (2, 5, 8)


class EncoderFeatures(NamedTuple):
    """Encoder taps, finest first, and the latent mean ``z_mu`` (before the scale factor)."""

    levels: list[torch.Tensor]
    latent: torch.Tensor


def encode_with_features(vae: AutoencoderKlMaisi, image: torch.Tensor, taps: Sequence[int] = DEFAULT_TAPS) -> EncoderFeatures:
    """Run the VAE encoder once and return the tapped block outputs and ``z_mu``.

    Args:
        vae: an ``AutoencoderKlMaisi`` (any profile).
        image: (B, 1, X, Y, Z) in [0, 1], each spatial size a multiple of 4.
        taps: indices into ``vae.encoder.blocks``.
    """
    blocks = cast(torch.nn.ModuleList, vae.encoder.blocks)  # MONAI types ``encoder`` as a plain Module
    if not taps or max(taps) >= len(blocks) or min(taps) < 0:
        raise ValueError(f"taps {tuple(taps)} must index the encoder's {len(blocks)} blocks")
    levels = []
    hidden = image
    for index, block in enumerate(blocks):
        hidden = block(hidden)
        if index in taps:
            levels.append(hidden)
    return EncoderFeatures(levels, vae.quant_conv_mu(hidden))
