"""Which weights the application runs: the models path (``-m`` / ``HOLOSCAN_MODEL_PATH``) or the
embedded default, refused when a weights file is missing (untrained networks give confident,
meaningless masks) unless the research switch allows it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import scripts
from scripts.errors import UserError
from scripts.foundation import DEFAULT_PROFILE, PROFILES, FoundationProfile, get_profile
from scripts.pipeline import WEIGHT_FILES

__all__ = ["AUTO_PROFILE", "EMBEDDED_MODELS", "WeightsChoice", "resolve_weights"]

#: The profile setting that takes the weights folder's name when it names a profile.
AUTO_PROFILE = "auto"

#: The embedded default: the bundle's ``mini`` weights, shipped with the code.
EMBEDDED_MODELS = Path(scripts.__file__).resolve().parent.parent / "models" / DEFAULT_PROFILE


@dataclass(frozen=True)
class WeightsChoice:
    """Which weights a run uses: the profile (resolved here, once) and the folder (``None``: none found)."""

    profile: FoundationProfile
    folder: Path | None
    source: str


def resolve_weights(model_path: str | os.PathLike | None, *, explicit: bool, profile: str = AUTO_PROFILE, allow_random: bool = False) -> WeightsChoice:
    """Find the weights folder for the application's model path.

    Layouts accepted: a folder holding the weight files (``autoencoder.pt``,
    ``diffusion_unet.pt``, ``diffugts_heads.pt``), or a MAP models folder with one sub-folder per
    model (``/opt/holoscan/models/mini/...``), which must then hold exactly one.

    Args:
        model_path: ``-m`` / ``HOLOSCAN_MODEL_PATH``.
        explicit: the user named ``model_path`` (``-m`` or the environment); otherwise a missing
            path falls back to the embedded default.
        profile: ``auto`` takes the folder's name when it is a profile name (``mini``,
            ``maisi``), else ``mini``.
        allow_random: the research switch (``allow_random_weights`` in the configuration): a
            missing file leaves its network at a seeded random initialisation.

    Raises:
        UserError: an explicit path that holds no weights, or a file instead of a folder; a
            weights file missing from the folder used, unless ``allow_random``. The networks would
            run on random weights and give a confident, meaningless mask (a whole-field "tumor").
    """
    folder: Path | None  # None: the models path holds no weights
    path = Path(model_path) if model_path else None
    if path is None or not path.exists():
        if explicit and path is not None:
            raise UserError(f"models path {path} does not exist")
        folder, source = EMBEDDED_MODELS, "embedded default"
    else:
        if not path.is_dir():
            raise UserError(f"models path {path} is a file: give the folder holding {', '.join(WEIGHT_FILES.values())}")
        folder, source = _weights_folder(path), "models path"
        if folder is None:
            if explicit:
                raise UserError(f"models path {path} holds none of {', '.join(WEIGHT_FILES.values())} (nor one model sub-folder holding them)")
            folder, source = EMBEDDED_MODELS, "embedded default"
    if profile == AUTO_PROFILE:
        profile = folder.name if folder.name in PROFILES else DEFAULT_PROFILE
    missing = [folder / name for name in WEIGHT_FILES.values() if not (folder / name).is_file()]
    if missing and not allow_random:
        raise UserError(
            f"weights file(s) {', '.join(map(str, missing))} missing ({source}): the networks would run on random "
            "weights and the masks would mean nothing; add the file(s), or (research only) set allow_random_weights "
            "in the configuration"
        )
    return WeightsChoice(profile=get_profile(profile), folder=folder if folder.is_dir() else None, source=source)


def _weights_folder(path: Path) -> Path | None:
    if any((path / name).is_file() for name in WEIGHT_FILES.values()):
        return path
    subfolders = [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if len(subfolders) == 1 and any((subfolders[0] / name).is_file() for name in WEIGHT_FILES.values()):
        return subfolders[0]
    return None
