"""The frozen MAISI foundation: VAE and rectified-flow diffusion UNet, two weight profiles.

``maisi`` uses the official hyper-parameters of the MAISI rectified-flow release
(``config_maisi3d-rflow.json``); ``mini`` uses the same classes at reduced widths and is the
embedded default this project trains itself. Checkpoints are read in the official formats:

* VAE (``autoencoder_v1.pt`` / ``autoencoder_v2.pt``): a plain ``state_dict``.
* Diffusion (``diff_unet_3d_rflow-ct.pt`` / ``-mr.pt``): ``{"unet_state_dict": ..., "scale_factor": ...}``.

Every load uses ``torch.load(..., weights_only=True)``: no pickled code from a file is executed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi, MaisiGroupNorm3D
from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import DiffusionModelUNetMaisi
from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

from .atomic import atomic_write
from .errors import UserError
from .preprocessing import Modality

__all__ = [
    "CheckpointError",
    "FoundationProfile",
    "PROFILES",
    "get_profile",
    "runtime_settings",
    "build_vae",
    "build_diffusion_unet",
    "build_scheduler",
    "load_vae_weights",
    "load_diffusion_weights",
    "save_vae_weights",
    "save_diffusion_weights",
    "modality_class_label",
    "read_checkpoint",
    "load_state_dict_strict",
    "atomic_save",
    "file_sha256",
    "spacing_condition",
]

#: MAISI's modality classes (``configs/modality_mapping.json`` of the MAISI release): ct=1, mri=8.
MODALITY_CLASS_LABELS = {Modality.CT: 1, Modality.MR: 8}


class CheckpointError(UserError):
    """A weights file cannot be read or does not fit the network it is loaded into."""


@dataclass(frozen=True)
class FoundationProfile:
    """Hyper-parameters of the two frozen networks and how they are run.

    Attributes:
        name: ``maisi`` (official architecture) or ``mini`` (embedded default).
        vae: keyword arguments of ``AutoencoderKlMaisi`` (device-dependent ones excluded).
        unet: keyword arguments of ``DiffusionModelUNetMaisi`` (device-dependent ones excluded).
        patch_size: sliding-window patch in voxels at the working spacing; bounds memory.
        working_spacing: voxel size (mm) per modality the networks run at.
        num_inference_steps: default number of diffusion steps.
        heads: keyword arguments of ``DiffuGTSHeads`` that go with this profile's features.
        coarse_threshold: default AOVA level that enters the coarse mask, in (0, 1).
    """

    name: str
    vae: Mapping[str, Any]
    unet: Mapping[str, Any]
    patch_size: tuple[int, int, int]
    working_spacing: Mapping[Modality, tuple[float, float, float]] = field(default_factory=dict)
    num_inference_steps: int = 30
    heads: Mapping[str, Any] = field(default_factory=dict)
    coarse_threshold: float = 0.5

    @property
    def feature_channels(self) -> tuple[int, int, int]:
        """Channels of the encoder taps (blocks 2, 5, 8): one per VAE resolution level."""
        return tuple(int(c) for c in self.vae["num_channels"])  # type: ignore[return-value]

    @property
    def divisor(self) -> int:
        """Spatial multiple an input must have: VAE 4x times 2 per UNet downsampling."""
        vae_factor = 2 ** (len(self.vae["num_channels"]) - 1)
        unet_factor = 2 ** (len(self.unet["num_channels"]) - 1)
        return vae_factor * unet_factor


_MAISI_VAE = {
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 1,
    "latent_channels": 4,
    "num_channels": [64, 128, 256],
    "num_res_blocks": [2, 2, 2],
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
    "attention_levels": [False, False, False],
    "with_encoder_nonlocal_attn": False,
    "with_decoder_nonlocal_attn": False,
    "use_checkpointing": False,
    "use_convtranspose": False,
    "dim_split": 1,
}
_MAISI_UNET = {
    "spatial_dims": 3,
    "in_channels": 4,
    "out_channels": 4,
    "num_channels": [64, 128, 256, 512],
    "attention_levels": [False, False, True, True],
    "num_head_channels": [0, 0, 32, 32],
    "num_res_blocks": 2,
    "include_top_region_index_input": False,
    "include_bottom_region_index_input": False,
    "include_spacing_input": True,
    "num_class_embeds": 128,
    "resblock_updown": True,
    "include_fc": True,
}

PROFILES: dict[str, FoundationProfile] = {
    "maisi": FoundationProfile(
        name="maisi",
        vae=_MAISI_VAE,
        unet=_MAISI_UNET,
        patch_size=(128, 128, 128),
        # MAISI was trained on a range of spacings; keep the input's unless the user sets one.
        working_spacing={},
        num_inference_steps=30,
    ),
    # Same classes and block layout (so the taps 2, 5, 8 mean the same), reduced widths, three UNet
    # levels: about 2 M parameters in all, a few seconds per 64^3 patch on two CPU cores. One
    # 128^3 patch covers a 256 mm CT at 2 mm: no seams, and 27 overlapping 64^3 patches cost 4x more.
    "mini": FoundationProfile(
        name="mini",
        vae={**_MAISI_VAE, "num_channels": [16, 32, 64], "norm_num_groups": 8},
        unet={
            **_MAISI_UNET,
            "num_channels": [32, 64, 64],
            "attention_levels": [False, False, True],
            "num_head_channels": [0, 0, 16],
            "num_res_blocks": 1,
        },
        patch_size=(128, 128, 128),
        working_spacing={Modality.CT: (2.0, 2.0, 2.0), Modality.MR: (1.5, 1.5, 1.5)},
        num_inference_steps=10,
        # [ours] A learned attention temperature: with the fixed 1/sqrt(d) scale the first trained
        # head's map collapsed to empty. 3x3x3 adapters: the 1x1x1 ones (pointwise on the small
        # VAE's features) reached a best validation DSC of 0.029 for the map alone, these 0.051.
        heads={"similarity": "cosine", "adapter_kernel_size": 3},
        # [ours] Where the map alone scores best on the validation split (seen categories only),
        # with no foreground on its healthy scans.
        coarse_threshold=0.25,
    ),
}


def get_profile(name: str | FoundationProfile) -> FoundationProfile:
    """Look a profile up by name; raise ``ValueError`` listing the valid names."""
    if isinstance(name, FoundationProfile):
        return name
    try:
        return PROFILES[str(name)]
    except KeyError:
        raise UserError(f"unknown profile {name!r}: expected one of {', '.join(PROFILES)}") from None


def runtime_settings(device: torch.device | str) -> dict[str, Any]:
    """Device-dependent network options: flash attention and fp16 norms only on CUDA.

    On CPU both are off and the MAISI convolution splitting is disabled (``num_splits=1``): the
    split exists to save GPU memory and only costs time on a CPU.
    """
    on_cuda = torch.device(device).type == "cuda"
    return {
        "use_flash_attention": on_cuda,
        "norm_float16": on_cuda,
        "num_splits": 4 if on_cuda else 1,
    }


class FusedMaisiGroupNorm3D(MaisiGroupNorm3D):
    """``MaisiGroupNorm3D`` computed by ``F.group_norm``: the same normalisation and parameters.

    MAISI's version loops over groups in Python to save GPU memory; on a CPU that loop makes the
    VAE two to three times slower, in training most of all. Used wherever fp16 norms are off.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)


_ModuleT = TypeVar("_ModuleT", bound=torch.nn.Module)


def fuse_group_norms(network: _ModuleT) -> _ModuleT:
    """Switch every fp32 ``MaisiGroupNorm3D`` of ``network`` to :class:`FusedMaisiGroupNorm3D` in place."""
    for module in network.modules():
        if type(module) is MaisiGroupNorm3D and not module.norm_float16:
            module.__class__ = FusedMaisiGroupNorm3D
    return network


def build_vae(profile: str | FoundationProfile, device: torch.device | str = "cpu", *, trainable: bool = False) -> AutoencoderKlMaisi:
    """The profile's VAE: frozen and in eval mode, unless built to be trained (``mini`` only)."""
    settings = runtime_settings(device)
    if trainable:  # fp16 norms are an inference-only memory saving
        settings["norm_float16"] = False
    vae = fuse_group_norms(AutoencoderKlMaisi(**get_profile(profile).vae, **settings, save_mem=False))
    return vae.to(device) if trainable else _frozen(vae, device)


def build_diffusion_unet(profile: str | FoundationProfile, device: torch.device | str = "cpu", *, trainable: bool = False) -> DiffusionModelUNetMaisi:
    """The profile's diffusion UNet: frozen and in eval mode, unless built to be trained."""
    settings = runtime_settings(device)
    unet = DiffusionModelUNetMaisi(**get_profile(profile).unet, use_flash_attention=settings["use_flash_attention"])
    return unet.to(device) if trainable else _frozen(unet, device)


def build_scheduler(kind: str = "rflow", num_train_timesteps: int = 1000) -> RFlowScheduler | DDPMScheduler:
    """The noise scheduler of the MAISI release: ``rflow`` (default) or ``ddpm``."""
    if kind == "rflow":
        return RFlowScheduler(
            num_train_timesteps=num_train_timesteps,
            use_discrete_timesteps=False,
            use_timestep_transform=True,
            sample_method="uniform",
        )
    if kind == "ddpm":
        return DDPMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_start=0.0015,
            beta_end=0.0195,
            schedule="scaled_linear_beta",
            clip_sample=False,
        )
    raise UserError(f"unknown scheduler {kind!r}: expected 'rflow' or 'ddpm'")


def modality_class_label(modality: Modality | str) -> int:
    """MAISI's class label for the modality (CT = 1, MR = 8)."""
    return MODALITY_CLASS_LABELS[Modality.parse(modality)]


def spacing_condition(spacing: tuple[float, float, float], batch: int, device: torch.device | str) -> torch.Tensor:
    """The UNet's spacing input: voxel spacing in mm times 100, shape (batch, 3)."""
    return torch.tensor([list(spacing)] * batch, dtype=torch.float32, device=device) * 100.0


def _frozen(network: torch.nn.Module, device: torch.device | str) -> Any:
    network.requires_grad_(False)
    return network.to(device).eval()


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
