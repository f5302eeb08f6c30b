"""Weights files of the foundation and the heads: read safely, checked against the network, written whole.

Official formats (the MAISI release), which the ``mini`` profile's files share:

* VAE (``autoencoder_v1.pt`` / ``autoencoder_v2.pt``): a plain ``state_dict``.
* Diffusion (``diff_unet_3d_rflow-ct.pt`` / ``-mr.pt``): ``{"unet_state_dict": ..., "scale_factor": ...}``.

Every load uses ``torch.load(..., weights_only=True)``: no pickled code from a file is executed.
A file that cannot be read or does not fit is one :class:`CheckpointError` line naming it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .errors import UserError

__all__ = [
    "CheckpointError",
    "read_checkpoint",
    "load_state_dict_strict",
    "load_vae_weights",
    "load_diffusion_weights",
    "save_vae_weights",
    "save_diffusion_weights",
    "atomic_save",
    "file_sha256",
]


class CheckpointError(UserError):
    """A weights file cannot be read or does not fit the network it is loaded into."""


def read_checkpoint(path: str | os.PathLike, device: torch.device | str) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code.

    Raises:
        CheckpointError: one line naming the file and why it was refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"cannot read weights file {path}: {_unpickling_reason(error)}") from error
    except Exception as error:  # torch raises several types for truncated or foreign files
        reason = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read weights file {path}: {reason}") from error


def _unpickling_reason(error: pickle.UnpicklingError) -> str:
    # torch's message is a page of advice to load the file unsafely; keep only what it refused.
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if refused:
        return f"it holds a pickled Python object ({refused.group(1)}), not only tensors: refused, weights are loaded with weights_only=True"
    return "not a PyTorch checkpoint of tensors (refused by weights_only=True)"


def load_state_dict_strict(network: torch.nn.Module, state: Any, path: str | os.PathLike, what: str) -> None:
    """Load ``state`` or raise one ``CheckpointError`` line naming the file and the mismatched keys."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what} weights file {path} does not hold a state_dict of tensors")
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state))
        if state[key].shape != expected[key].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)):
            if keys:
                shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
                parts.append(f"{len(keys)} {label} keys ({shown})")
        raise CheckpointError(f"{what} weights file {path} does not fit the network (wrong profile?): {'; '.join(parts)}")
    network.load_state_dict(state, strict=True)


def load_vae_weights(vae: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a VAE checkpoint in the official format (a plain ``state_dict``)."""
    device = next(vae.parameters()).device
    load_state_dict_strict(vae, read_checkpoint(path, device), path, "VAE")


def load_diffusion_weights(unet: torch.nn.Module, path: str | os.PathLike) -> float:
    """Load an official diffusion checkpoint; return its latent ``scale_factor``."""
    device = next(unet.parameters()).device
    checkpoint = read_checkpoint(path, device)
    if not isinstance(checkpoint, Mapping) or "unet_state_dict" not in checkpoint:
        raise CheckpointError(f"diffusion weights file {path} has no 'unet_state_dict' entry")
    if "scale_factor" not in checkpoint:
        raise CheckpointError(f"diffusion weights file {path} has no 'scale_factor' entry")
    load_state_dict_strict(unet, checkpoint["unet_state_dict"], path, "diffusion UNet")
    scale_factor = float(torch.as_tensor(checkpoint["scale_factor"]).item())
    if not scale_factor > 0:
        raise CheckpointError(f"diffusion weights file {path} has a non-positive scale_factor {scale_factor}")
    return scale_factor


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, for reports and provenance."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_save(payload: Any, path: str | os.PathLike) -> None:
    """``torch.save`` under a temporary name, then rename: never a partial weights file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: torch.save(payload, temporary))


def save_vae_weights(vae: torch.nn.Module, path: str | os.PathLike) -> None:
    """Write a VAE checkpoint in the official format."""
    atomic_save({k: v.detach().cpu() for k, v in vae.state_dict().items()}, path)


def save_diffusion_weights(unet: torch.nn.Module, scale_factor: float, path: str | os.PathLike) -> None:
    """Write a diffusion checkpoint in the official format."""
    state = {k: v.detach().cpu() for k, v in unet.state_dict().items()}
    atomic_save({"unet_state_dict": state, "scale_factor": torch.tensor(float(scale_factor))}, path)
