"""Training of the embedded ``mini`` profile and of the DiffuGTS heads.

Every stage is a MONAI ``SupervisedTrainer`` with its own iteration function (the bundle's
``configs/train*.json`` wire them up); data go through :class:`PrepareVolumed`, which applies the
pipeline's own intensity normalisation and working grid, so training sees what inference sees.

Stages:

1. ``vae``: the mini VAE on healthy CT and MR patches (L1 reconstruction + KL).
2. ``diffusion``: the mini rectified-flow UNet on latents of healthy patches, conditioned on
   spacing and modality as MAISI is (velocity target z0 - noise).
3. ``aova``: adapters and attention projections; Dice + BCE of the AOVA map against the tumor
   mask, and towards an empty map for healthy patches and for prompts naming an absent finding.
4. ``refiner``: the residual refiner on the residuals of a pseudo-healthy counterpart made by the
   frozen networks exactly as at inference (AOVA frozen).
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Collection, Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.losses import DiceLoss
from monai.transforms import MapTransform
from torch import nn

from .checkpoints import atomic_save, load_diffusion_weights, load_vae_weights, save_diffusion_weights
from .features import encode_with_features
from .foundation import FoundationProfile, build_diffusion_unet, build_vae, modality_class_label
from .heads import DiffuGTSHeads, HeadsStage, load_heads_weights
from .method import FrozenFoundation, PatchSettings, pseudo_healthy_inputs
from .preprocessing import Modality, VolumeGeometry, as_volume, intensity_window, normalize_intensity
from .text import PromptBuilder, SentenceEncoder
from .training_handlers import LossHistory  # noqa: F401  (configs name it as scripts.training.LossHistory)

if TYPE_CHECKING:
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi

__all__ = [
    "PrepareVolumed",
    "LatentMeanAutoencoder",
    "ReconstructionOf",
    "AOVAMapOf",
    "HounsfieldWindow",
    "VAEIteration",
    "DiffusionIteration",
    "AOVAIteration",
    "RefinerIteration",
    "latent_scale_factor",
    "latent_scale_factor_of",
    "load_frozen_vae",
    "load_frozen_unet",
    "load_heads",
    "TRAINING_PROMPTS",
    "ForModalityd",
    "validation_subset",
    "LossHistory",
    "save_state_dict",
    "save_diffusion_checkpoint",
]

logger = logging.getLogger(__name__)

#: Prompts used in training: the seen categories only. Liver and brain findings never appear.
TRAINING_PROMPTS = ("kidney tumor", "colon tumor", "pancreas tumor", "lung tumor", "hepatic vessel tumor")


class PrepareVolumed(MapTransform):
    """Normalise intensity by the item's modality and put image (and labels) on the working grid.

    Uses :mod:`scripts.preprocessing` exactly as the pipeline does: CT window or MR percentiles,
    RAS, the profile's working spacing for the modality, padding to the profile divisor.

    Args:
        keys: image key first, then label keys (resampled with nearest neighbour); a missing
            first label (healthy item) becomes an empty mask.
        profile: the foundation profile.
        modality_key: item key holding ``CT`` or ``MR``.
        label_maps: label keys that hold several values (an organ label map): resampled with
            nearest neighbour but not binarised.
    """

    def __init__(self, keys: KeysCollection, profile: FoundationProfile, modality_key: str = "modality", label_maps: str | Collection[Hashable] = ()) -> None:
        super().__init__(keys)
        self.profile = profile
        self.modality_key = modality_key
        self.label_maps = {label_maps} if isinstance(label_maps, str) else set(label_maps)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        modality = Modality.parse(item[self.modality_key])
        image_key, *label_keys = self.keys
        volume = as_volume(item[image_key])
        geometry = VolumeGeometry(working_spacing=self.profile.working_spacing.get(modality), divisor=self.profile.divisor)
        item[image_key] = geometry(normalize_intensity(volume, intensity_window(volume, modality)))
        for key in label_keys:
            if key in item:
                label = MetaTensor(torch.as_tensor(np.asarray(item[key])).float().reshape(volume.shape), affine=volume.affine)
                nearest = VolumeGeometry(working_spacing=geometry.working_spacing, divisor=geometry.divisor, mode="nearest")
                resampled = nearest(label)
                item[key] = resampled.float() if key in self.label_maps else (resampled > 0.5).float()
        if label_keys and label_keys[0] not in item:  # a healthy item: its tumor mask is empty
            item[label_keys[0]] = torch.zeros_like(item[image_key].as_tensor())
        item["prompt"] = item.get("prompt") or ""  # healthy items name no finding
        item["spacing"] = torch.tensor(item[image_key].pixdim.tolist(), dtype=torch.float32)
        item["class_label"] = torch.tensor(modality_class_label(modality))
        return item


def validation_subset(datalist: str | Path, per_category: int, categories: list[str], key: str = "validation") -> list[dict[str, Any]]:
    """The first ``per_category`` entries of each of ``categories`` in a decathlon datalist.

    A few cases per category keep a validation pass to a minute or two on two CPU cores, often
    enough to draw a curve and to stop a stage at its gate.
    """
    from monai.data import load_decathlon_datalist

    entries = load_decathlon_datalist(str(datalist), True, key)
    chosen: list[dict[str, Any]] = []
    for category in categories:
        chosen += [e for e in entries if e.get("category") == category][:per_category]
    if not chosen:
        raise ValueError(f"{datalist} holds no {key} entry of the categories {categories}")
    return chosen


class ForModalityd(MapTransform):
    """Apply ``transform`` only to items of one modality (MR-only augmentations, for example).

    Args:
        transform: a dictionary transform (e.g. a ``Compose`` of ``RandBiasFieldd`` ...).
        modality: ``CT`` or ``MR``.
        modality_key: item key holding the modality.
    """

    def __init__(self, transform: Any, modality: str, modality_key: str = "modality") -> None:
        super().__init__(keys=[modality_key])
        self.transform = transform
        self.modality = Modality.parse(modality)
        self.modality_key = modality_key

    def __call__(self, data: Mapping[Hashable, Any]) -> Any:
        return self.transform(data) if Modality.parse(data[self.modality_key]) is self.modality else data


def _train_step(engine: Any, loss: torch.Tensor) -> None:
    engine.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    engine.optimizer.step()


class LatentMeanAutoencoder(nn.Module):
    """A VAE whose forward reconstructs through ``z_mu``: one forward pass that DDP can see.

    The wrapped ``vae`` is what gets saved (its keys are the official ones).
    """

    def __init__(self, vae: AutoencoderKlMaisi) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_mu, z_sigma = self.vae.encode(image)
        return self.vae.decode(z_mu), z_mu, z_sigma


class HounsfieldWindow(nn.Module):
    """``network`` on a CT patch re-windowed from the pipeline's intensities ([-1000, 1000] HU as
    [0, 1]) to ``[low, high]`` HU, clipped.

    [ours] For the supervised baseline: in the pipeline's window a 50 HU lesion is 0.025 of the
    range, and the UNet trained on it sat at a Dice loss of 1.0 for 2000 iterations; a soft-tissue
    window, what a supervised CT model would use (nnU-Net clips to the foreground's percentiles),
    makes the same lesion 0.1 of it. Inside the network so that training and evaluation share it.
    """

    def __init__(self, network: nn.Module, low: float = -200.0, high: float = 300.0) -> None:
        super().__init__()
        if not high > low:
            raise ValueError(f"high must exceed low, got [{low}, {high}]")
        self.network, self.low, self.high = network, float(low), float(high)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        hu = image * 2000.0 - 1000.0
        return self.network(((hu - self.low) / (self.high - self.low)).clamp(0.0, 1.0))


class AOVAMapOf(nn.Module):
    """The AOVA map alone of each item's own prompt, for the AOVA stage's evaluator.

    ``forward(image, prompts)``: ``prompts`` is the batch's list of prompts, which MONAI's
    ``PrepareBatchExtraInput(extra_keys="prompt")`` passes through the inferer; one prompt serves
    every window of a sliding-window batch.
    """

    def __init__(self, heads: nn.Module, vae: AutoencoderKlMaisi, text_encoder: SentenceEncoder) -> None:
        super().__init__()
        self.heads, self.vae = heads, vae.eval().requires_grad_(False)
        self.keys = _PromptKeys(text_encoder)

    def forward(self, image: torch.Tensor, prompts: list[str] | str) -> torch.Tensor:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if len(prompts) not in (1, len(image)):
            raise ValueError(f"{len(prompts)} prompts for a batch of {len(image)} images")
        maps = []
        for index in range(len(image)):
            prompt = prompts[index if len(prompts) > 1 else 0]
            levels = encode_with_features(self.vae, image[index : index + 1]).levels
            maps.append(self.heads(HeadsStage.AOVA, levels, *self.keys(prompt, image.device)))
        return torch.cat(maps)


class ReconstructionOf(nn.Module):
    """The reconstruction alone of a :class:`LatentMeanAutoencoder`, for an evaluator's inferer."""

    def __init__(self, autoencoder: nn.Module) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.autoencoder(image)[0]


class VAEIteration:
    """L1 reconstruction + KL for the VAE (``engine.network``, a :class:`LatentMeanAutoencoder`).

    [ours] The reconstruction goes through the latent mean, not a sample: DiffuGTS only ever
    encodes to ``z_mu``, and with MAISI's tiny KL weight the sampling noise keeps the decoder
    from converging within a CPU budget (the loss stalled at L1 0.12 with sampling). The KL term
    still bounds the latents.
    """

    def __init__(self, kl_weight: float = 1e-6) -> None:
        self.kl_weight = kl_weight

    def __call__(self, engine: Any, batch: dict[str, Any]) -> dict[str, Any]:
        image = torch.as_tensor(batch["image"]).to(engine.state.device)
        engine.network.train()
        reconstruction, z_mu, z_sigma = engine.network(image)
        l1 = (reconstruction - image).abs().mean()
        kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2) + 1e-8) - 1).mean()
        loss = l1 + self.kl_weight * kl
        _train_step(engine, loss)
        return {"loss": loss.item(), "l1": l1.item()}


@torch.no_grad()
def latent_scale_factor(vae: AutoencoderKlMaisi, images: torch.Tensor) -> float:
    """MAISI's scale factor: 1 / std of the latents, so diffusion works on unit-variance latents."""
    return float(1.0 / vae.encode_stage_2_inputs(images).flatten().std())


def latent_scale_factor_of(vae: AutoencoderKlMaisi, dataset: Any, device: torch.device | str, count: int = 8) -> float:
    """:func:`latent_scale_factor` over the first ``count`` items of a training dataset."""
    images = torch.cat([torch.as_tensor(dataset[i]["image"])[None] for i in range(min(count, len(dataset)))])
    value = latent_scale_factor(vae, images.to(device))
    logger.info("latent scale factor %.4f from %d patches", value, len(images))
    return value


def load_frozen_vae(profile: FoundationProfile, path: str | Path, device: torch.device | str) -> AutoencoderKlMaisi:
    """The profile's VAE with trained weights, frozen: the input of the later stages."""
    vae = build_vae(profile, device)
    load_vae_weights(vae, path)
    return vae


def load_frozen_unet(profile: FoundationProfile, path: str | Path, device: torch.device | str) -> tuple[nn.Module, float]:
    """The profile's diffusion UNet with trained weights, frozen, and its latent scale factor."""
    unet = build_diffusion_unet(profile, device)
    return unet, load_diffusion_weights(unet, path)


def load_heads(heads: DiffuGTSHeads, path: str | Path) -> DiffuGTSHeads:
    """``heads`` with the weights of the previous stage loaded."""
    load_heads_weights(heads, path)
    return heads


class DiffusionIteration:
    """Rectified-flow training of the UNet (``engine.network``) on latents of the frozen VAE.

    A batch holds either the cached latents (``latent``, from :mod:`scripts.latent_cache`) or
    image patches (``image``), which are then encoded here.
    """

    def __init__(self, vae: AutoencoderKlMaisi | None, scheduler: Any, scale_factor: float) -> None:
        self.vae = vae.eval().requires_grad_(False) if vae is not None else None
        self.scheduler = scheduler
        self.scale_factor = float(scale_factor)

    def _latent(self, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        if "latent" in batch:
            return torch.as_tensor(batch["latent"]).to(device)
        if self.vae is None:
            raise ValueError("the batch holds no cached latent and no VAE was given to encode its image")
        with torch.no_grad():
            return self.vae.encode_stage_2_inputs(torch.as_tensor(batch["image"]).to(device))

    def __call__(self, engine: Any, batch: dict[str, Any]) -> dict[str, Any]:
        device = engine.state.device
        latent = self._latent(batch, device) * self.scale_factor
        noise = torch.randn_like(latent)
        timesteps = self.scheduler.sample_timesteps(latent)
        noisy = self.scheduler.add_noise(latent, noise, timesteps)
        engine.network.train()
        velocity = engine.network(
            noisy,
            timesteps=timesteps,
            spacing_tensor=torch.as_tensor(batch["spacing"]).to(device) * 100.0,
            class_labels=torch.as_tensor(batch["class_label"]).to(device),
        )
        loss = (velocity - (latent - noise)).abs().mean()
        _train_step(engine, loss)
        return {"loss": loss.item()}


class _PromptKeys:
    """The text-attribute keys of a prompt (sentence embeddings, abnormal flags), embedded once."""

    def __init__(self, text_encoder: SentenceEncoder) -> None:
        self.text_encoder = text_encoder
        self.builder = PromptBuilder()
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, prompt: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if prompt not in self._cache:
            embedding = self.text_encoder.embed_prompt(self.builder.build(prompt))
            self._cache[prompt] = (embedding.embeddings, embedding.abnormal)
        return tuple(t.to(device) for t in self._cache[prompt])  # type: ignore[return-value]


class _PromptSampler:
    """Picks the training prompt of an item: its own finding, or a misleading one.

    A healthy item gets a random seen prompt; a tumor item gets, with ``misleading_rate``, the
    prompt of another seen finding. In both cases the target is empty: the prompt names
    something absent (paper, supplementary D).
    """

    def __init__(self, text_encoder: SentenceEncoder, misleading_rate: float, seed: int = 0) -> None:
        if not 0.0 <= misleading_rate < 1.0:
            raise ValueError(f"misleading_rate must lie in [0, 1), got {misleading_rate}")
        self.keys = _PromptKeys(text_encoder)
        self.misleading_rate = misleading_rate
        self.random = random.Random(seed)

    def sample(self, batch: dict[str, Any], device: torch.device) -> tuple[str, torch.Tensor]:
        """The prompt for this (single-item) batch and its target mask."""
        if len(batch["prompt"]) != 1:
            raise ValueError("the heads are trained one prompt at a time: set batch_size to 1")
        prompt = batch["prompt"][0] or ""
        label = torch.as_tensor(batch["label"]).to(device) if "label" in batch else torch.zeros_like(torch.as_tensor(batch["image"])).to(device)
        if prompt and prompt not in TRAINING_PROMPTS:
            raise ValueError(f"training prompt {prompt!r} is not a seen category: liver and brain tumors never enter training")
        if not prompt:
            return self.random.choice(TRAINING_PROMPTS), torch.zeros_like(label)
        if self.random.random() < self.misleading_rate:
            return self.random.choice([p for p in TRAINING_PROMPTS if p != prompt]), torch.zeros_like(label)
        return prompt, label


def _dice_where_positive(dice: DiceLoss, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice only for patches that hold a tumor; BCE alone teaches the empty ones.

    A smoothed Dice on an empty target is about 1 for any foreground at all, so with healthy
    patches and misleading prompts in the mix it drove the AOVA map to nothing everywhere (the
    first trained heads collapsed that way).
    """
    if target.any():
        return dice(prediction, target)
    return prediction.sum() * 0.0


class AOVAIteration:
    """Dice + BCE of each AOVA level's map, on its log-odds (``engine.network`` is
    :class:`DiffuGTSHeads`, possibly DDP-wrapped).

    [ours] Each level is supervised on its own (deep supervision), from its log-odds
    (:meth:`~.aova.AOVAHead.level_logit`): the loss on the averaged map let two of the three levels
    saturate at 0 for good, which capped the averaged map at a third (see ``level_logit``; 4800
    iterations of the plain head on the mass reached validation DSC 0.002 at best). The inference
    map is unchanged: the mean of the levels' masses.

    Args:
        positive_weight: weight of tumor voxels in the BCE term, >= 1. [ours] With about 1% tumor
            voxels per patch and half the batches empty (healthy patches, misleading prompts), the
            unweighted BCE of the empty batches was 0.003 after 40 iterations (a map of about 0.003
            on them) while the tumor batches' loss stayed at 1.08; the learnability baseline
            needed a weight of 10 to find lesions.
    """

    def __init__(
        self, vae: AutoencoderKlMaisi, text_encoder: SentenceEncoder, misleading_rate: float = 0.3, seed: int = 0, positive_weight: float = 1.0
    ) -> None:
        if positive_weight < 1.0:
            raise ValueError(f"positive_weight must be >= 1, got {positive_weight}")
        self.vae = vae.eval().requires_grad_(False)
        self.sampler = _PromptSampler(text_encoder, misleading_rate, seed)
        self.dice = DiceLoss(sigmoid=True, smooth_nr=1e-3, smooth_dr=1e-3)
        self.positive_weight = float(positive_weight)

    def bce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """BCE on logits, tumor voxels weighted by ``positive_weight``."""
        return nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(self.positive_weight, device=logits.device))

    def level_loss(self, level_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean over levels (channels of ``level_logits``) of Dice (tumor patches only) + BCE."""
        losses = [_dice_where_positive(self.dice, logits, target) + self.bce(logits, target) for logits in level_logits.split(1, dim=1)]
        return torch.stack(losses).mean()

    def __call__(self, engine: Any, batch: dict[str, Any]) -> dict[str, Any]:
        device = engine.state.device
        image = torch.as_tensor(batch["image"]).to(device)
        prompt, target = self.sampler.sample(batch, device)
        with torch.no_grad():
            levels = encode_with_features(self.vae, image).levels
        engine.network.train()
        level_logits = engine.network(HeadsStage.AOVA, levels, *self.sampler.keys(prompt, device), level_logits=True)
        loss = self.level_loss(level_logits, target)
        _train_step(engine, loss)
        return {"loss": loss.item()}


class RefinerIteration:
    """Dice + BCE of the refiner on residuals of a pseudo-healthy image made as at inference."""

    def __init__(
        self,
        vae: AutoencoderKlMaisi,
        unet: nn.Module,
        scheduler: Any,
        scale_factor: float,
        text_encoder: SentenceEncoder,
        *,
        num_steps: int = 10,
        strength: float = 0.8,
        coarse_threshold: float | None = None,
        coarse_dilation: int = 2,
        profile: FoundationProfile,
        misleading_rate: float = 0.3,
        seed: int = 0,
    ) -> None:
        self.foundation = FrozenFoundation(vae.eval().requires_grad_(False), unet.eval().requires_grad_(False), scheduler, float(scale_factor))
        self.sampler = _PromptSampler(text_encoder, misleading_rate, seed)
        # The coarse mask as the pipeline makes it: the profile's threshold unless one is given.
        self.settings = PatchSettings(
            coarse_threshold=profile.coarse_threshold if coarse_threshold is None else coarse_threshold,
            coarse_dilation=coarse_dilation,
            num_steps=num_steps,
            strength=strength,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.dice = DiceLoss(sigmoid=True, smooth_nr=1e-3, smooth_dr=1e-3)
        self.bce = nn.BCEWithLogitsLoss()

    def residual_inputs(self, heads: DiffuGTSHeads, image: torch.Tensor, keys, abnormal, spacing, class_label):
        """AOVA map, pseudo-healthy image and feature residuals: the pipeline's own patch step
        (:func:`~.method.pseudo_healthy_inputs`)."""
        with torch.no_grad():
            features = self.foundation.encode(image)
        step = pseudo_healthy_inputs(
            self.foundation,
            heads,
            image,
            features,
            keys,
            abnormal,
            self.settings,
            spacing=spacing,
            class_labels=class_label,
            generator=self.generator,
        )
        return step.aova_map, step.pseudo_healthy, step.residuals

    def __call__(self, engine: Any, batch: dict[str, Any]) -> dict[str, Any]:
        device = engine.state.device
        image = torch.as_tensor(batch["image"]).to(device)
        prompt, target = self.sampler.sample(batch, device)
        heads = engine.network.module if hasattr(engine.network, "module") else engine.network
        heads.eval()
        inputs = self.residual_inputs(
            heads,
            image,
            *self.sampler.keys(prompt, device),
            torch.as_tensor(batch["spacing"]).to(device) * 100.0,
            torch.as_tensor(batch["class_label"]).to(device),
        )
        engine.network.train()
        logits = engine.network(HeadsStage.REFINER, image, *inputs)
        loss = _dice_where_positive(self.dice, logits, target) + self.bce(logits, target)
        _train_step(engine, loss)
        return {"loss": loss.item()}


def save_state_dict(network: nn.Module, path: str | Path, best: str | Path | None = None) -> None:
    """Save the stage's weights atomically at its end: the weights best on validation when the
    stage kept them (``best``), else the (unwrapped) network's last weights."""
    atomic_save(_weights_to_ship(network, best, path), path)


def _weights_to_ship(network: nn.Module, best: str | Path | None, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict a stage ships: its best weights on validation when it kept them, else the
    (unwrapped) network's last ones."""
    if best is not None and Path(best).is_file():
        logger.info("saving the weights best on validation (%s) to %s", best, path)
        return torch.load(best, map_location="cpu", weights_only=True)
    module = cast(nn.Module, network.module) if hasattr(network, "module") else network  # DDP wraps it in .module
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def save_diffusion_checkpoint(network: nn.Module, scale_factor: float, path: str | Path, best: str | Path | None = None) -> None:
    """Save the (unwrapped) UNet in the official MAISI diffusion format: the weights best on the
    inpainting validation when the stage kept them (``best``), else its last weights."""
    module = copy.deepcopy(cast(nn.Module, network.module) if hasattr(network, "module") else network).cpu()
    module.load_state_dict(_weights_to_ship(network, best, path))
    save_diffusion_weights(module, scale_factor, path)
