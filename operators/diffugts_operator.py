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
import time
from typing import Any

import numpy as np
from monai.deploy.core import Fragment, Operator, OperatorSpec
from monai.deploy.core.domain.dicom_series_selection import StudySelectedSeries
from transformers.utils import logging as transformers_logging

import scripts
from scripts import Modality, build_pipeline
from scripts.errors import UserError
from scripts.preprocessing import plausibility_warnings

from .app_config import AppConfig
from .segmentation_run import SegmentationRun
from .series_rules import series_folder
from .stages import patch_progress, stage
from .volume_geometry import series_affine, slices_to_xyz
from .weights import WeightsChoice

__all__ = ["DiffuGTSOperator"]

logger = logging.getLogger(__name__)


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
        logger.info("building the '%s' pipeline from %s (%s)", weights.profile.name, weights.folder or "no weights folder", weights.source)
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
