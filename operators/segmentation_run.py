"""What the model step hands to the writers (SEG, SR, report): the results with the source slices
and the provenance they need to place and describe them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from monai.deploy.core.domain.dicom_series import DICOMSeries
from monai.deploy.core.domain.dicom_series_selection import StudySelectedSeries
from monai.deploy.core.domain.dicom_study import DICOMStudy
from pydicom import Dataset

from scripts import Modality, SegmentationResult

from .volume_geometry import xyz_to_slices

__all__ = ["SegmentationRun"]


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
