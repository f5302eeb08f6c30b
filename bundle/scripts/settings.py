"""The bundle's user settings reach the code as plain text, never as config code.

MONAI's config parser treats every string that starts with ``$`` as a Python expression and a
whole string ``@id`` as a reference, and an override such as ``--prompt "..."`` is config
content like any other. Configs are trusted code (MONAI's stated model), but a prompt is free
text that a worklist or a web form may hand to the command line: ``--prompt "$__import__('os')..."``
must be a strange prompt, not a command.

:func:`take_settings_as_text` runs first in the config's ``initialize`` list. It stores the raw
value of every setting of :data:`INFERENCE_SETTINGS` as already resolved, so that MONAI hands that
text to whatever refers to it instead of evaluating it. Each setting therefore has a plain default
in the configs (``tests/bundle/test_settings.py`` keeps it so); anything derived from a setting is
a separate config item (``output_folder``, ``vae_weights_file``).

What MONAI still does with an override before any bundle code runs (documented in the README):
a value that starts with ``%`` is replaced by the content it names (a JSON/YAML file read, never
executed), and a value that is an import statement (``$import x``) imports that installed module.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import logging
import os
from typing import Any, cast

from monai.bundle import ConfigParser
from monai.bundle.config_parser import ID_SEP_KEY
from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS

from .errors import UserError, exit_on_user_error
from .foundation import FoundationProfile, get_profile

logger = logging.getLogger(__name__)

__all__ = ["INFERENCE_SETTINGS", "take_settings_as_text", "active_parser", "seed_everything", "foundation_profile"]

#: Every setting a user of ``inference.json`` (and ``evaluate.json``, ``maisi.json``) may give on
#: the command line, with what it takes. The README's table of knobs lists the same names.
INFERENCE_SETTINGS: dict[str, str] = {
    "input_image": "path of one image (NIfTI, NRRD, MHA)",
    "datalist": "path of a decathlon datalist (instead of input_image)",
    "datalist_key": "the datalist's list to run (default 'test')",
    "prompt": "the finding to segment, free text (a list: one output per prompt)",
    "modality": "CT or MR",
    "output_dir": "output folder (default <bundle_root>/eval)",
    "profile": "mini (embedded weights) or maisi (official MAISI weights)",
    "device": "auto, cpu, cuda or cuda:N",
    "vae_weights": "weights file of the autoencoder (default: the profile's)",
    "diffusion_weights": "weights file of the diffusion UNet (default: the profile's)",
    "heads_weights": "weights file of the heads (default: the profile's)",
    "evaluate": "true: compute metrics against the datalist's labels",
    "nsd_tolerance_mm": "NSD tolerance in mm, > 0",
    "num_steps": "diffusion steps, >= 1 (null: the profile's)",
    "strength": "noise level of the inpainting, in (0, 1]",
    "inpainting": "latent or direct",
    "scheduler": "rflow or ddpm",
    "coarse_threshold": "AOVA level of the coarse mask, in (0, 1) (null: the profile's)",
    "coarse_dilation": "coarse-mask margin in voxels, integer >= 0",
    "threshold": "tumor probability threshold, in (0, 1)",
    "confine_to_coarse_mask": "true or false",
    "min_tumor_volume_ml": "smallest kept component in mL, >= 0",
    "overlap": "sliding-window overlap, in [0, 1)",
    "patch_size": "three multiples of the profile's divisor (null: the profile's)",
    "working_spacing": "three voxel sizes in mm, each > 0 (null: the profile's)",
    "seed": "integer seed of the diffusion noise",
    "memory_budget_gb": "refuse volumes above this many GiB, > 0 (null: available memory)",
    "progress": "true or false: progress bars",
    "save_maps": "all, none, or some of probability, aova_map, pseudo_healthy",
}


#: Settings that are true or false. The command line gives ``--progress false`` as the text
#: "false", which Python would take as true: such text is converted where it comes in.
BOOLEAN_SETTINGS = ("evaluate", "confine_to_coarse_mask", "progress")


def _as_boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise UserError(f"{name} must be true or false, got {value!r}")


def active_parser() -> ConfigParser:
    """The ``ConfigParser`` whose content is being resolved.

    MONAI gives config code no handle on the parser that runs it; the frames of this call hold it
    (``ConfigParser.get_parsed_content`` is always on the stack while an item is instantiated).
    """
    frame = inspect.currentframe()
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, ConfigParser):
            return candidate
        frame = frame.f_back
    raise RuntimeError("take_settings_as_text must be called from a bundle config being parsed")


def _declared_keys(bundle_root: str, configs: tuple[str, ...]) -> set[str]:
    keys = {"_meta_"}  # the metadata MONAI merges in
    # MONAI's settings dicts are unannotated (inferred as dict[str, object]).
    for tracking in cast(dict[str, dict[str, Any]], DEFAULT_EXP_MGMT_SETTINGS).values():  # what ``--tracking mlflow`` adds
        keys |= set(tracking.get("configs", {}))
        keys |= {ids[part].split("#")[0] for ids in tracking.get("handlers_id", {}).values() for part in ("id", "handlers")}
    for name in configs:
        keys |= set(ConfigParser.load_config_file(os.path.join(bundle_root, "configs", name)))
    return keys


def _refuse_unknown(parser: ConfigParser, settings: dict[str, str], declared: set[str]) -> None:
    unknown = sorted(set(parser.get("", {})) - set(settings) - declared)
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(settings), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; the settings are: {', '.join(settings)}"
        raise UserError(f"unknown setting '{key}'{hint}")


def take_settings_as_text(bundle_root: str, configs: list[str] | tuple[str, ...], settings: dict[str, str] | None = None) -> None:
    """Make every setting's raw value its resolved value, and refuse settings nobody declared.

    Args:
        bundle_root: the bundle folder (its ``configs/`` holds ``configs``).
        configs: the config files a run may merge; a top-level key that none of them declares
            and that is not a setting is a misspelt setting (``--treshold``), refused.
        settings: the user settings (default :data:`INFERENCE_SETTINGS`).
    """
    settings = INFERENCE_SETTINGS if settings is None else settings
    parser = active_parser()
    with exit_on_user_error(logger):
        _refuse_unknown(parser, settings, _declared_keys(bundle_root, tuple(configs)))
        booleans = {name: _as_boolean(name, parser[name]) for name in BOOLEAN_SETTINGS if name in settings and name in parser}
    resolver = parser.ref_resolver
    for name in settings:
        if name not in parser:
            continue
        resolver.resolved_content[name] = booleans[name] if name in booleans else copy.deepcopy(parser[name])
        # Nested values (list items) too: nothing may resolve ``@save_maps::0`` as an expression.
        for item_id in [i for i in resolver.items if i.startswith(f"{name}{ID_SEP_KEY}")]:
            resolver.resolved_content[item_id] = copy.deepcopy(resolver.items[item_id].get_config())


def seed_everything(seed: Any) -> None:
    """MONAI's ``set_determinism`` with the ``seed`` setting, checked first (one line, not a traceback)."""
    from monai.utils import set_determinism

    from .pipeline import checked_seed

    with exit_on_user_error(logger):
        set_determinism(seed=checked_seed(seed))


def foundation_profile(name: Any) -> FoundationProfile:
    """The configs' ``foundation_profile`` item: the ``profile`` setting resolved once, an unknown
    name ending the run in one line (not MONAI's instantiation traceback)."""
    with exit_on_user_error(logger):
        return get_profile(str(name))
