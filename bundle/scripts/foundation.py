"""The frozen MAISI foundation: VAE and rectified-flow diffusion UNet, two weight profiles.

``maisi`` uses the official hyper-parameters of the MAISI rectified-flow release
(``config_maisi3d-rflow.json``); ``mini`` uses the same classes at reduced widths and is the
embedded default this project trains itself. Their weights files are read and written by
:mod:`.checkpoints`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi, MaisiGroupNorm3D
from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import DiffusionModelUNetMaisi
from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

from .aova import AOVAOptions
from .errors import UserError
from .preprocessing import Modality

__all__ = [
    "SchedulerKind",
    "DEFAULT_PROFILE",
    "FoundationProfile",
    "PROFILES",
    "get_profile",
    "runtime_settings",
    "build_vae",
    "build_diffusion_unet",
    "build_scheduler",
    "modality_class_label",
    "spacing_condition",
]

#: MAISI's modality classes (``configs/modality_mapping.json`` of the MAISI release): ct=1, mri=8.
MODALITY_CLASS_LABELS = {Modality.CT: 1, Modality.MR: 8}


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
        aova: the AOVA head's options that go with this profile's features.
        coarse_threshold: default AOVA level that enters the coarse mask, in (0, 1).
    """

    name: str
    vae: Mapping[str, Any]
    unet: Mapping[str, Any]
    patch_size: tuple[int, int, int]
    working_spacing: Mapping[Modality, tuple[float, float, float]] = field(default_factory=dict)
    num_inference_steps: int = 30
    aova: AOVAOptions = field(default_factory=AOVAOptions)
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
        aova=AOVAOptions(similarity="cosine", adapter_kernel_size=3),
        # [ours] Where the map alone scores best on the validation split (seen categories only),
        # with no foreground on its healthy scans.
        coarse_threshold=0.25,
    ),
}


#: The embedded default's profile: what runs when no other weights are given.
DEFAULT_PROFILE = "mini"


def get_profile(name: str) -> FoundationProfile:
    """Look a profile up by name; ``UserError`` listing the valid names.

    Called once where a name comes in: the configs' ``foundation_profile`` item, the app's weights
    choice (:func:`operators.weights.resolve_weights`), a benchmark's ``--profile``. Everything
    else takes the :class:`FoundationProfile` itself.
    """
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


def build_vae(profile: FoundationProfile, device: torch.device | str = "cpu", *, trainable: bool = False) -> AutoencoderKlMaisi:
    """The profile's VAE: frozen and in eval mode, unless built to be trained (``mini`` only)."""
    settings = runtime_settings(device)
    if trainable:  # fp16 norms are an inference-only memory saving
        settings["norm_float16"] = False
    vae = fuse_group_norms(AutoencoderKlMaisi(**profile.vae, **settings, save_mem=False))
    return vae.to(device) if trainable else _frozen(vae, device)


def build_diffusion_unet(profile: FoundationProfile, device: torch.device | str = "cpu", *, trainable: bool = False) -> DiffusionModelUNetMaisi:
    """The profile's diffusion UNet: frozen and in eval mode, unless built to be trained."""
    settings = runtime_settings(device)
    unet = DiffusionModelUNetMaisi(**profile.unet, use_flash_attention=settings["use_flash_attention"])
    return unet.to(device) if trainable else _frozen(unet, device)


class SchedulerKind(StrEnum):
    """The noise schedulers of the MAISI release: rectified flow (its default) or DDPM."""

    RFLOW = "rflow"
    DDPM = "ddpm"

    @classmethod
    def parse(cls, value: SchedulerKind | str) -> SchedulerKind:
        """``value`` as a member; ``UserError`` naming the valid values otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise UserError(f"scheduler must be {' or '.join(repr(k.value) for k in cls)}, got {value!r}") from None


def build_scheduler(kind: SchedulerKind | str = SchedulerKind.RFLOW, num_train_timesteps: int = 1000) -> RFlowScheduler | DDPMScheduler:
    """The noise scheduler of the MAISI release: ``rflow`` (default) or ``ddpm``."""
    kind = SchedulerKind.parse(kind)
    if kind is SchedulerKind.RFLOW:
        return RFlowScheduler(
            num_train_timesteps=num_train_timesteps,
            use_discrete_timesteps=False,
            use_timestep_transform=True,
            sample_method="uniform",
        )
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=0.0015,
        beta_end=0.0195,
        schedule="scaled_linear_beta",
        clip_sample=False,
    )


def modality_class_label(modality: Modality | str) -> int:
    """MAISI's class label for the modality (CT = 1, MR = 8)."""
    return MODALITY_CLASS_LABELS[Modality.parse(modality)]


def spacing_condition(spacing: tuple[float, float, float], batch: int, device: torch.device | str) -> torch.Tensor:
    """The UNet's spacing input: voxel spacing in mm times 100, shape (batch, 3)."""
    return torch.tensor([list(spacing)] * batch, dtype=torch.float32, device=device) * 100.0


def _frozen(network: torch.nn.Module, device: torch.device | str) -> Any:
    network.requires_grad_(False)
    return network.to(device).eval()
