"""Run-time configuration of the DiffuGTS application: prompts per modality and the knobs.

The configuration is data, never code: a JSON file (the application ships ``app/config.json``)
and environment variables that a PACS integration or a MAP deployment sets without editing files.

* ``DIFFUGTS_APP_CONFIG``: path of a JSON file that replaces the shipped configuration.
* ``DIFFUGTS_PROMPTS``: a JSON object ``{"CT": ["liver tumor"], "MR": ["brain tumor"]}``; each
  modality it names replaces that modality's prompts from the file.
* ``DIFFUGTS_SERIES_RULES``: path of a series selection rules file (the SDK's JSON rules format,
  see :mod:`operators.series_rules`).

The pipeline knobs' defaults are the bundle's: the top-level values of ``configs/inference.json``
next to the ``scripts`` package (:data:`BUNDLE_INFERENCE_CONFIG`), so that the app and the bundle
cannot drift apart; the app's ``pipeline`` only overrides them.

Example:
    >>> config = AppConfig.from_mapping({"prompts": {"CT": ["liver tumor"]}})
    >>> config.prompts_for("CT")
    ('liver tumor',)
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import scripts
from scripts import Modality, PipelineConfig
from scripts.errors import UserError
from scripts.foundation import DEFAULT_PROFILE, PROFILES
from scripts.pipeline import OPTIONAL_MAPS, resolve_device
from scripts.text import validate_prompt

from .weights import AUTO_PROFILE

__all__ = [
    "AppConfig",
    "ENV_APP_CONFIG",
    "ENV_PROMPTS",
    "ENV_SERIES_RULES",
    "MAX_PROMPTS_PER_MODALITY",
    "BUNDLE_INFERENCE_CONFIG",
    "bundle_knob_defaults",
]

ENV_APP_CONFIG = "DIFFUGTS_APP_CONFIG"
ENV_PROMPTS = "DIFFUGTS_PROMPTS"
ENV_SERIES_RULES = "DIFFUGTS_SERIES_RULES"
#: One SEG segment per prompt; more than this is a configuration mistake, not a use case.
MAX_PROMPTS_PER_MODALITY = 16

_PIPELINE_KNOBS = {f.name for f in fields(PipelineConfig)} - {"progress", "maps"}
#: Where the knobs' defaults come from (in a MAP: ``/opt/holoscan/lib/configs``, staged with ``scripts``).
BUNDLE_INFERENCE_CONFIG = Path(scripts.__file__).resolve().parent.parent / "configs" / "inference.json"
#: The app reports the AOVA map's maximum and shows both maps in its HTML report; neither is
#: sent to PACS.
_APP_MAPS = OPTIONAL_MAPS
_TOP_LEVEL_KEYS = {
    "description",
    "profile",
    "prompts",
    "pipeline",
    "series_rules",
    "allow_non_dicom_files",
    "allow_random_weights",
    "device",
    "montage_slices",
}


@dataclass(frozen=True)
class AppConfig:
    """Everything the operators need to know besides the input and output folders.

    Attributes:
        prompts: prompts per modality; each becomes one SEG segment.
        profile: ``auto`` (the models folder's name when it names a profile, else ``mini``),
            ``mini`` or ``maisi``.
        pipeline: keyword arguments of :class:`scripts.PipelineConfig` (``num_steps``, ``seed``,
            ``threshold`` ...): the bundle's defaults (:func:`bundle_knob_defaults`) with the
            configuration's overrides.
        series_rules: a selection rules file, or ``None`` for the default rules.
        allow_non_dicom_files: when false (default) an input folder holding non-DICOM files is
            refused, because it suggests the wrong folder was given.
        allow_random_weights: the research switch: a network whose weights file is missing runs
            on a seeded random initialisation (its masks mean nothing; the SEG says so) instead
            of the run being refused.
        device: ``cpu``, ``cuda`` or ``None`` (CUDA when available).
        montage_slices: slices shown in the report's PNG montage, 1 to 64.
    """

    prompts: Mapping[Modality, tuple[str, ...]] = field(default_factory=dict)
    profile: str = AUTO_PROFILE
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    series_rules: Path | None = None
    allow_non_dicom_files: bool = False
    allow_random_weights: bool = False
    device: str | None = None
    montage_slices: int = 12

    @classmethod
    def load(cls, default_path: str | os.PathLike, environ: Mapping[str, str] | None = None) -> AppConfig:
        """Read the file named by ``DIFFUGTS_APP_CONFIG`` (else ``default_path``), then apply
        ``DIFFUGTS_PROMPTS`` and ``DIFFUGTS_SERIES_RULES``.

        Raises:
            UserError: unreadable file, bad JSON, a setting of the wrong type or out of range, or
                a CUDA device this machine lacks; the message says which, with the valid range,
                and names the file or variable it came from.
        """
        environ = os.environ if environ is None else environ
        path = Path(environ.get(ENV_APP_CONFIG) or default_path)
        data = _read_json_object(path, "application configuration")
        if path.is_file() and data.get("series_rules") and isinstance(data["series_rules"], str):
            # A relative rules path in a config file is relative to that file.
            data["series_rules"] = str((path.parent / data["series_rules"]).resolve())
        if environ.get(ENV_PROMPTS):
            try:
                override = json.loads(environ[ENV_PROMPTS])
            except json.JSONDecodeError as error:
                raise UserError(f'{ENV_PROMPTS} is not valid JSON ({error.msg}): expected e.g. \'{{"CT": ["liver tumor"]}}\'') from None
            if not isinstance(override, dict):
                raise UserError(f'{ENV_PROMPTS} must be a JSON object such as \'{{"CT": ["liver tumor"]}}\'')
            try:
                _parse_prompts(override)
            except ValueError as error:
                raise UserError(f"{ENV_PROMPTS}: {error}") from None
            if isinstance(data.get("prompts") or {}, dict):  # else from_mapping refuses the file's prompts
                data["prompts"] = {**(data.get("prompts") or {}), **override}
        if environ.get(ENV_SERIES_RULES):
            if not Path(environ[ENV_SERIES_RULES]).is_file():
                raise UserError(f"{ENV_SERIES_RULES}: series rules file {environ[ENV_SERIES_RULES]} does not exist")
            data["series_rules"] = environ[ENV_SERIES_RULES]
        try:
            return cls.from_mapping(data)
        except ValueError as error:
            raise UserError(f"application configuration file {path}: {error}") from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AppConfig:
        """Validate a parsed configuration; ``UserError`` names the bad key, its valid values and the value."""
        unknown = sorted(set(data) - _TOP_LEVEL_KEYS)
        if unknown:
            raise UserError(f"unknown configuration key(s) {', '.join(unknown)}: expected {', '.join(sorted(_TOP_LEVEL_KEYS))}")
        prompts = _parse_prompts(data.get("prompts") or {})
        pipeline = data.get("pipeline") or {}
        if not isinstance(pipeline, dict):
            raise UserError(f'pipeline must be an object of knobs such as {{"num_steps": 10}}, got {pipeline!r}')
        bad = sorted(set(pipeline) - _PIPELINE_KNOBS)
        if bad:
            raise UserError(f"unknown pipeline knob(s) {', '.join(bad)}: expected {', '.join(sorted(_PIPELINE_KNOBS))}")
        profile = data.get("profile") or AUTO_PROFILE
        if profile != AUTO_PROFILE and profile not in PROFILES:
            raise UserError(f"profile must be {', '.join(repr(p) for p in (AUTO_PROFILE, *PROFILES))}, got {profile!r}")
        pipeline = {**bundle_knob_defaults(), **pipeline}
        _check_pipeline(pipeline, profile)
        device = _check_device(data.get("device"))
        montage_slices = data.get("montage_slices", 12)
        if isinstance(montage_slices, bool) or not isinstance(montage_slices, int) or not 1 <= montage_slices <= 64:
            raise UserError(f"montage_slices must be an integer from 1 to 64, got {montage_slices!r}")
        rules = data.get("series_rules")
        if rules is not None and not isinstance(rules, str):
            raise UserError(f"series_rules must be the path of a rules file (text) or null, got {rules!r}")
        if rules is not None and not Path(rules).is_file():
            raise UserError(f"series rules file {rules} does not exist")
        allow = data.get("allow_non_dicom_files", False)
        if not isinstance(allow, bool):
            raise UserError(f"allow_non_dicom_files must be true or false, got {allow!r}")
        allow_random = data.get("allow_random_weights", False)
        if not isinstance(allow_random, bool):
            raise UserError(f"allow_random_weights must be true or false, got {allow_random!r}")
        return cls(
            prompts=prompts,
            profile=profile,
            pipeline=dict(pipeline),
            series_rules=Path(rules) if rules is not None else None,
            allow_non_dicom_files=allow,
            allow_random_weights=allow_random,
            device=device,
            montage_slices=montage_slices,
        )

    def prompts_for(self, modality: Modality | str) -> tuple[str, ...]:
        """The prompts configured for ``modality``; ``UserError`` when there are none."""
        modality = Modality.parse(modality)
        prompts = self.prompts.get(modality, ())
        if not prompts:
            raise UserError(
                f'no prompts are configured for {modality.value}: add them to the configuration file or set {ENV_PROMPTS}=\'{{"{modality.value}": ["..."]}}\''
            )
        return prompts

    def pipeline_config(self) -> PipelineConfig:
        """The pipeline knobs as a :class:`scripts.PipelineConfig` (progress bars off: the model
        step turns them on as log lines; only the maps the app uses are brought back to the input grid)."""
        knobs = dict(self.pipeline)
        for key in ("patch_size", "working_spacing"):
            if knobs.get(key) is not None:
                knobs[key] = tuple(knobs[key])
        return PipelineConfig(**knobs, progress=False, maps=_APP_MAPS)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (for the provenance record)."""
        return {
            "profile": self.profile,
            "prompts": {modality.value: list(prompts) for modality, prompts in self.prompts.items()},
            "pipeline": dict(self.pipeline),
            "series_rules": str(self.series_rules) if self.series_rules else None,
            "allow_non_dicom_files": self.allow_non_dicom_files,
            "allow_random_weights": self.allow_random_weights,
            "device": self.device,
            "montage_slices": self.montage_slices,
        }


@functools.lru_cache(maxsize=4)
def _bundle_knobs(path: Path) -> tuple[tuple[str, Any], ...]:
    data = _read_json_object(path, "bundle inference configuration")
    missing = sorted(_PIPELINE_KNOBS - set(data))
    if missing:
        raise UserError(f"bundle inference configuration {path} lacks the pipeline knob(s) {', '.join(missing)}")
    knobs = {name: data[name] for name in sorted(_PIPELINE_KNOBS)}
    code = [name for name, value in knobs.items() if isinstance(value, str) and value[:1] in ("$", "@", "%")]
    if code:  # read as data: an expression would not be evaluated, and would not be a default
        raise UserError(f"bundle inference configuration {path}: knob(s) {', '.join(code)} must be plain values, not config code")
    return tuple((name, json.dumps(value)) for name, value in knobs.items())


def bundle_knob_defaults(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The pipeline knobs' defaults: the top-level values of the bundle's ``inference.json``
    (``path``, default :data:`BUNDLE_INFERENCE_CONFIG`).

    Raises:
        UserError: the file is missing or unreadable (a MAP staged without the bundle's
            ``configs``), lacks a knob, or gives one as config code.
    """
    return {name: json.loads(value) for name, value in _bundle_knobs(Path(path or BUNDLE_INFERENCE_CONFIG))}


def _check_pipeline(pipeline: Mapping[str, Any], profile: str) -> None:
    # The bundle's own checks (type and range of every knob), here where the setting enters, so
    # that the message names the file; with profile auto the divisor is mini's (16), and maisi's
    # (32) is checked again when the pipeline is built.
    try:
        PipelineConfig(**pipeline).validated(PROFILES[DEFAULT_PROFILE if profile == AUTO_PROFILE else profile])
    except UserError as error:
        raise UserError(f"pipeline: {error}") from None


def _check_device(device: Any) -> str | None:
    """The device setting, checked now by the bundle's own rule (torch would only fail at the
    first tensor moved there, with a traceback); ``None`` keeps CUDA-when-available."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return None
    if not isinstance(device, str):
        raise UserError(f"device must be 'cpu', 'cuda', 'cuda:N' or null (CUDA when available), got {device!r}")
    return str(resolve_device(device))


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {what} file {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{what} file {path} is not valid JSON: {error.msg} at line {error.lineno}") from None
    if not isinstance(data, dict):
        raise UserError(f"{what} file {path} must hold a JSON object")
    return data


def _parse_prompts(raw: Any) -> dict[Modality, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise UserError('prompts must map a modality to a list of prompts, e.g. {"CT": ["liver tumor"]}')
    prompts: dict[Modality, tuple[str, ...]] = {}
    for key, values in raw.items():
        modality = Modality.parse(key)
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
            raise UserError(f"prompts for {modality.value} must be a list of non-empty strings, got {values!r}")
        if len(values) > MAX_PROMPTS_PER_MODALITY:
            raise UserError(f"at most {MAX_PROMPTS_PER_MODALITY} prompts per modality, got {len(values)} for {modality.value}")
        try:  # the pipeline's own rules (letters, length), checked before any DICOM is read
            cleaned = tuple(validate_prompt(v) for v in values)
        except ValueError as error:
            raise UserError(f"prompts for {modality.value}: {error}") from None
        if len(set(cleaned)) != len(cleaned):
            raise UserError(f"prompts for {modality.value} repeat an entry: {list(cleaned)}")
        prompts[modality] = cleaned
    return prompts
