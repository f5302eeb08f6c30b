"""The model step: the bundle's DiffuGTS pipeline on the selected DICOM series.

The operator does not implement any part of the method. It turns the SDK's volume (slices, rows,
columns) into the pipeline's ``(x, y, z)`` array with its RAS affine
(:mod:`operators.volume_geometry`), calls ``scripts.build_pipeline(...).segment(...)`` exactly
as the bundle's NIfTI inference does, and hands the results on with the source slices they
belong to.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.deploy.core import Fragment, Operator, OperatorSpec
from monai.deploy.core.domain.dicom_series import DICOMSeries
from monai.deploy.core.domain.dicom_series_selection import StudySelectedSeries
from monai.deploy.core.domain.dicom_study import DICOMStudy
from pydicom import Dataset
from transformers.utils import logging as transformers_logging

import scripts
from scripts import Modality, SegmentationResult, build_pipeline
from scripts.errors import UserError
from scripts.foundation import PROFILES
from scripts.pipeline import WEIGHT_FILES
from scripts.preprocessing import plausibility_warnings

from .app_config import AppConfig
from .series_rules import series_folder
from .stages import patch_progress, stage
from .volume_geometry import series_affine, slices_to_xyz, xyz_to_slices

__all__ = ["EMBEDDED_MODELS", "WeightsChoice", "resolve_weights", "SegmentationRun", "DiffuGTSOperator"]

logger = logging.getLogger(__name__)

#: The embedded default: the bundle's ``mini`` weights, shipped with the code.
EMBEDDED_MODELS = Path(scripts.__file__).resolve().parent.parent / "models" / "mini"


@dataclass(frozen=True)
class WeightsChoice:
    """Which weights a run uses: the profile name and the folder (``None``: none found)."""

    profile: str
    folder: Path | None
    source: str


def resolve_weights(model_path: str | os.PathLike | None, *, explicit: bool, profile: str = "auto", allow_random: bool = False) -> WeightsChoice:
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
    if profile == "auto":
        profile = folder.name if folder.name in PROFILES else "mini"
    missing = [folder / name for name in WEIGHT_FILES.values() if not (folder / name).is_file()]
    if missing and not allow_random:
        raise UserError(
            f"weights file(s) {', '.join(map(str, missing))} missing ({source}): the networks would run on random "
            "weights and the masks would mean nothing; add the file(s), or (research only) set allow_random_weights "
            "in the configuration"
        )
    return WeightsChoice(profile=profile, folder=folder if folder.is_dir() else None, source=source)


def _weights_folder(path: Path) -> Path | None:
    if any((path / name).is_file() for name in WEIGHT_FILES.values()):
        return path
    subfolders = [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if len(subfolders) == 1 and any((subfolders[0] / name).is_file() for name in WEIGHT_FILES.values()):
        return subfolders[0]
    return None


@dataclass
class SegmentationRun:
    """What the model step produced, with everything the writers need to place it.

    Attributes:
        study_selected_series: the selection (one study, one series), as the SDK passes it on.
        source_datasets: the series' slices in the order of the volume's slice axis.
        modality: ``CT`` or ``MR``.
        volume: the input in (slice, row, column) order, HU for CT, scanner units for MR.
        affine: voxel-to-world RAS affine of the pipeline's ``(x, y, z)`` axes.
        results: the pipeline's results, one per prompt, on the ``(x, y, z)`` grid.
        profile: weights profile used.
        weights: provenance of each weights file (name and sha256, or random-init).
        weights_source: ``embedded default`` or ``models path``.
        pipeline_config: the knobs of the run (validated).
        stage_seconds: the pipeline's wall time per stage.
        seconds: wall time of the whole model step (pipeline build excluded).
        warnings: what looked implausible about the input (logged, and kept in the provenance).
    """

    study_selected_series: list[StudySelectedSeries]
    source_datasets: list[Dataset]
    modality: Modality
    volume: np.ndarray
    affine: np.ndarray
    results: list[SegmentationResult]
    profile: str
    weights: dict[str, str]
    weights_source: str
    pipeline_config: dict[str, Any]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def study(self) -> DICOMStudy:
        return self.study_selected_series[0].study

    @property
    def series(self) -> DICOMSeries:
        return self.study_selected_series[0].selected_series[0].series

    @property
    def selection_name(self) -> str:
        return self.study_selected_series[0].selected_series[0].selection_name

    @property
    def untrained(self) -> list[str]:
        """The networks left at a random initialisation (only with ``allow_random_weights``)."""
        return [key for key, value in self.weights.items() if value.startswith("random-init")]

    def mask_slices(self, index: int) -> np.ndarray:
        """Mask of prompt ``index`` in (slice, row, column) order, uint8 {0, 1}."""
        return xyz_to_slices(self.results[index].mask)

    def aova_map(self, index: int) -> np.ndarray:
        """AOVA map of prompt ``index`` on the input grid (x, y, z); the app always asks the pipeline for it."""
        aova = self.results[index].aova_map
        assert aova is not None, "the pipeline ran without the AOVA map"
        return aova

    def aova_slices(self, index: int) -> np.ndarray:
        """AOVA map of prompt ``index`` in (slice, row, column) order, float32 in [0, 1]."""
        return xyz_to_slices(self.aova_map(index))


class DiffuGTSOperator(Operator):
    """Run the DiffuGTS pipeline on the selected series with the prompts of its modality.

    Named inputs:
        image: the SDK ``Image`` from ``DICOMSeriesToVolumeOperator``.
        study_selected_series_list: the selection the image was made from.
    Named output:
        segmentation: a :class:`SegmentationRun`.

    Args:
        fragment: the application.
        config: prompts and knobs.
        weights: from :func:`resolve_weights`.

    The pipeline is built at construction, so a bad weights file or knob fails before any DICOM
    is read.
    """

    def __init__(self, fragment: Fragment, *args, config: AppConfig, weights: WeightsChoice, **kwargs) -> None:
        self.config = config
        self.weights_choice = weights
        logger.info("building the '%s' pipeline from %s (%s)", weights.profile, weights.folder or "no weights folder", weights.source)
        # Progress on: segment() turns the bars into log lines (operators.stages.patch_progress).
        # The text encoder's "Loading weights" bar would put carriage returns into the log.
        transformers_logging.disable_progress_bar()
        with stage("pipeline build (weights, networks, text encoder)"):
            self.pipeline = build_pipeline(
                weights.profile,
                weights_dir=weights.folder,
                device=config.device,
                config=dataclasses.replace(config.pipeline_config(), progress=True),
            )
        if any(value.startswith("random-init") for value in self.pipeline.weights.values()):
            logger.warning("allow_random_weights: some networks are untrained (%s): the masks mean nothing", self.pipeline.weights)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("image")
        spec.input("study_selected_series_list")
        spec.output("segmentation")

    def compute(self, op_input, op_output, context) -> None:
        image = op_input.receive("image")
        selection = op_input.receive("study_selected_series_list")
        op_output.emit(self.segment(image.asnumpy(), selection), "segmentation")

    def segment(self, volume: np.ndarray, selection: list[StudySelectedSeries]) -> SegmentationRun:
        """Segment ``volume`` (slice, row, column) of the selected series with its modality's prompts."""
        start = time.perf_counter()
        series = selection[0].selected_series[0].series
        datasets = [instance.get_native_sop_instance() for instance in series.get_sop_instances()]
        volume = np.asarray(volume, dtype=np.float32)
        if volume.ndim != 3 or volume.shape[0] != len(datasets):
            raise ValueError(f"the series gave a {volume.shape} array for {len(datasets)} slices: cannot place the masks")
        modality = Modality.parse(series.Modality)
        prompts = self.config.prompts_for(modality)
        # The bundle's checks (an MR of CT numbers, a CT without air, a thin slab): warned, not refused.
        warnings = [f"series {series.SeriesInstanceUID} ({modality.value}): {w}" for w in plausibility_warnings(slices_to_xyz(volume), modality)]
        for warning in warnings:
            logger.warning("%s", warning)
        # Rounded to float32, the precision of a NIfTI header: the DICOM path and the bundle's
        # NIfTI inference then segment the same geometry bit for bit (the change is < 1e-7 relative).
        affine = series_affine(datasets, space="RAS").astype(np.float32).astype(np.float64)
        logger.info(
            "segmenting %s series %s (%d slices of %dx%d) for %s",
            modality.value,
            series.SeriesInstanceUID,
            *volume.shape,
            ", ".join(repr(p) for p in prompts),
        )
        try:
            with stage("segmentation"), patch_progress():
                output = self.pipeline.segment(slices_to_xyz(volume), affine=affine, modality=modality, prompts=list(prompts))
        except UserError as error:  # a bad volume (NaN voxels, too large): name the series and its files
            raise UserError(f"series {series.SeriesInstanceUID} in {series_folder(series)}: {error}") from None
        for result in output.results:
            logger.info("'%s': %.2f mL segmented", result.prompt.prompt, result.tumor_volume_ml)
        return SegmentationRun(
            study_selected_series=selection,
            source_datasets=datasets,
            modality=modality,
            volume=volume,
            affine=affine,
            results=output.results,
            profile=self.pipeline.profile.name,
            weights=dict(self.pipeline.weights),
            weights_source=self.weights_choice.source,
            pipeline_config=_config_record(self.pipeline.config),
            stage_seconds=dict(output.stage_seconds),
            seconds=time.perf_counter() - start,
            warnings=warnings,
        )


def _config_record(config: scripts.PipelineConfig) -> dict[str, Any]:
    record = {}
    for name in config.__dataclass_fields__:
        value = getattr(config, name)
        record[name] = value.value if hasattr(value, "value") else (list(value) if isinstance(value, tuple) else value)
    return record
