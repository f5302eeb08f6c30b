"""The clean anatomy a phantom or real host gives to lesion insertion and imaging effects."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from .geometry import VoxelGrid
from .labels import OrganLabel

__all__ = ["TissueContrast", "Anatomy"]


class TissueContrast(str, Enum):
    """Which intensity rules a lesion follows in its host image.

    ``CT``: Hounsfield units, portal venous phase. ``T2_FLAIR``: the MR phantoms (CSF dark, gray
    matter brighter than white matter, gliomas and edema bright). ``T1``: real T1 hosts such as
    Colin27 (CSF dark, white matter brightest, gliomas and edema dark).
    """

    CT = "CT"
    T2_FLAIR = "T2-FLAIR"
    T1 = "T1"


@dataclass
class Anatomy:
    """A host volume before lesions (and, for phantoms, before blur, bias field and noise).

    Attributes:
        grid: shape and spacing; arrays are indexed along R, A, S (see :mod:`.geometry`).
        image: float32 intensities: HU for CT, arbitrary units for MR.
        labels: uint8 :class:`~.labels.OrganLabel` map.
        contrast: intensity rules for lesions inserted into this host.
        regions: named sub-regions (boolean volumes) that lesion locations refer to, e.g.
            ``"liver_right_lobe"``; see ``LOCATION_REGIONS`` in :mod:`.lesions`.
        noise_sd: noise already present in ``image`` (real hosts), which inserted lesions copy so
            that they are not smoother than their surroundings; 0 for clean phantoms.
        affine: 4x4 RAS affine; the grid's centred affine unless the host is a real volume.
    """

    grid: VoxelGrid
    image: np.ndarray
    labels: np.ndarray
    contrast: TissueContrast
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    noise_sd: float = 0.0
    affine: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.shape != self.grid.shape or self.labels.shape != self.grid.shape:
            raise ValueError(f"image {self.image.shape} and labels {self.labels.shape} must have the grid shape {self.grid.shape}")
        if self.affine is None:
            self.affine = self.grid.affine

    def mask(self, *labels: OrganLabel) -> np.ndarray:
        """Boolean volume of the voxels carrying any of ``labels``."""
        return np.isin(self.labels, np.asarray(labels, dtype=np.uint8))
