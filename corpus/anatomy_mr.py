"""Procedural MR head with T2-FLAIR-like contrast, in arbitrary units (white matter = 1).

Laid out in an "adult" frame (mm, x right, y anterior, z superior, origin near the centre of the
cerebrum) and scaled so that the head fits the field of view (a 128^3 volume at 1.5 mm holds the
head at about 0.88 of adult size). Relative signal before bias field, gain and noise:

=====================  ============  ===================
tissue                 signal        label
=====================  ============  ===================
background             0             BACKGROUND
scalp                  0.7 to 0.9    SCALP
skull                  ~0.05         SKULL
CSF, ventricles        ~0.12         CSF, VENTRICLES
gray matter (cortex)   1.2 to 1.3    GRAY_MATTER
white matter           1.0           WHITE_MATTER
basal ganglia,         ~1.15         DEEP_GRAY_MATTER
thalami
cerebellum             ~1.12         CEREBELLUM
brainstem              ~1.05         BRAINSTEM
=====================  ============  ===================

FLAIR suppresses free water, so CSF is dark while gray matter is brighter than white matter;
gliomas and their edema are hyperintense (see :mod:`.lesions`).
"""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy, TissueContrast
from .geometry import VoxelGrid
from .labels import OrganLabel as L
from .realism import smooth_noise
from .shapes import Tube, ellipsoid_box, ellipsoid_rho, rotation_matrix

__all__ = ["build_head"]

_HEAD_SEMI_AXES_MM = (78.0, 98.0, 88.0)
_TEXTURE = {
    L.SCALP: 0.08,
    L.GRAY_MATTER: 0.03,
    L.WHITE_MATTER: 0.025,
    L.DEEP_GRAY_MATTER: 0.03,
    L.CEREBELLUM: 0.06,
    L.BRAINSTEM: 0.03,
    L.CSF: 0.02,
    L.VENTRICLES: 0.01,
    L.SKULL: 0.02,
}


class _Head:
    def __init__(self, grid: VoxelGrid, rng: np.random.Generator) -> None:
        self.grid, self.rng = grid, rng
        half = grid.half_extent
        self.s = float(min(1.0, *(0.92 * half[d] / _HEAD_SEMI_AXES_MM[d] for d in range(3))))
        self.image = np.zeros(grid.shape, dtype=np.float32)
        self.labels = np.zeros(grid.shape, dtype=np.uint8)
        self.full = grid.full()

    def mm(self, adult) -> np.ndarray:
        return np.asarray(adult, dtype=np.float64) * self.s

    def jitter(self, value: float, sd: float) -> float:
        return float(value + self.rng.normal(0.0, sd))

    def paint(self, mask, label, value, slices=None) -> None:
        target = (slice(None),) * 3 if slices is None else slices
        self.labels[target][mask] = np.uint8(label)
        image = self.image[target]
        image[mask] = value[mask] if isinstance(value, np.ndarray) else np.float32(value)

    def rho(self, center, semi, angles=(0.0, 0.0, 0.0), box=None):
        center, semi = self.mm(center), self.mm(semi)
        box = box if box is not None else ellipsoid_box(self.grid, center, semi)
        return box, ellipsoid_rho(box, center, semi, rotation_matrix(angles))

    def build(self) -> Anatomy:
        rng, s, grid = self.rng, self.s, self.grid
        x, y, z = self.full.x, self.full.y, self.full.z
        head_semi = [self.jitter(v, 3.0) for v in _HEAD_SEMI_AXES_MM]
        tilt = (self.jitter(0.0, 4.0), 0.0, self.jitter(0.0, 4.0))
        center = [0.0, self.jitter(-5.0, 2.0), self.jitter(0.0, 3.0)]

        def shell(inset_mm: float):
            semi = [a - inset_mm for a in head_semi]
            return self.rho(center, semi, tilt, box=self.full)[1]

        self.paint(shell(0.0) < 1.0, L.SCALP, self.jitter(0.8, 0.05))
        self.paint(shell(5.0) < 1.0, L.SKULL, 0.05)
        self.paint(shell(12.0) < 1.0, L.CSF, 0.12)

        # Cerebrum: an ellipsoid whose gray-white boundary follows gyral folds (a smooth field),
        # with sulci (thin CSF clefts along the field's crests) cutting through the cortex.
        brain_semi = [head_semi[0] - 14.0, head_semi[1] - 14.0, head_semi[2] - 12.0]
        _, brain = self.rho(np.add(center, [0.0, 2.0, -2.0]), brain_semi, tilt, box=self.full)
        gyri = smooth_noise(grid.shape, np.maximum(7.0 * s / np.asarray(grid.spacing), 1.0), rng)
        cerebrum = brain < 1.0
        mean_semi = float(np.mean(brain_semi))
        # Gray-white boundary 4 to 14 mm deep (white matter fingers into the gyri), cortex never
        # thinner than 2.5 mm; sulci are clefts along a level set of the fold field.
        white = ((brain + np.float32(5.0 / mean_semi) * gyri) < 1.0 - 9.0 / mean_semi) & (brain < 1.0 - 2.5 / mean_semi)
        gm_value, wm_value = self.jitter(1.25, 0.03), 1.0
        self.paint(cerebrum, L.GRAY_MATTER, gm_value)
        self.paint(white & cerebrum, L.WHITE_MATTER, wm_value)
        sulci = cerebrum & ~white & (np.abs(gyri - 1.0) < 0.12) & (brain > 1.0 - 12.0 / mean_semi)
        self.paint(sulci, L.CSF, 0.12)
        fissure = cerebrum & (np.abs(x - np.float32(center[0] * s)) < max(1.5, 0.6 * grid.spacing[0])) & (brain > 0.35) & (z > -10 * s)
        self.paint(fissure, L.CSF, 0.12)

        for side in (1.0, -1.0):
            box, rho = self.rho([11.0 * side, 2.0, 16.0], [self.jitter(7.0, 1.0), 30.0, 9.0], (0.0, 0.0, 8.0 * side))
            deep = self.rho([22.0 * side, 8.0, 6.0], [7.0, 16.0, 11.0], box=box)[1]
            thalamus = self.rho([11.0 * side, -14.0, 3.0], [9.0, 14.0, 9.0], box=box)[1]
            self.paint(((deep < 1.0) | (thalamus < 1.0)) & cerebrum[box.slices], L.DEEP_GRAY_MATTER, self.jitter(1.15, 0.02), box.slices)
            self.paint(rho < 1.0, L.VENTRICLES, 0.1, box.slices)
        box, rho = self.rho([0.0, -5.0, 2.0], [2.5, 12.0, 9.0])
        self.paint(rho < 1.0, L.VENTRICLES, 0.1, box.slices)

        box, rho = self.rho([0.0, -52.0, -50.0], [48.0, 32.0, 24.0])
        self.paint((rho < 1.1) & (rho >= 1.0), L.CSF, 0.12, box.slices)
        folia = smooth_noise(rho.shape, np.maximum(2.5 * s / np.asarray(grid.spacing), 1.0), rng)
        self.paint(rho < 1.0, L.CEREBELLUM, (1.12 + 0.08 * np.tanh(2.0 * folia)).astype(np.float32), box.slices)
        stem_rho, _ = Tube(self.mm([[0.0, -18.0, -15.0], [0.0, -28.0, -100.0]]), self.mm([13.0, 11.0])).evaluate(grid)
        self.paint(stem_rho < 1.0, L.BRAINSTEM, 1.05)

        amplitude = np.zeros(256, dtype=np.float32)
        for label, value in _TEXTURE.items():
            amplitude[int(label)] = value
        texture = smooth_noise(grid.shape, np.maximum(2.0 / np.asarray(grid.spacing), 1.0), rng)
        self.image *= 1.0 + texture * amplitude[self.labels]

        cerebral = np.isin(self.labels, (L.GRAY_MATTER, L.WHITE_MATTER, L.DEEP_GRAY_MATTER))
        regions = {
            "brain_hemisphere": cerebral,
            "brain_frontal_white_matter": (self.labels == L.WHITE_MATTER) & (y > 25 * s),
            "brain_temporal": cerebral & (np.abs(x) > 35 * s) & (z < 5 * s) & (y > -45 * s) & (y < 45 * s),
        }
        return Anatomy(grid=grid, image=self.image, labels=self.labels, contrast=TissueContrast.T2_FLAIR, regions=regions)


def build_head(grid: VoxelGrid, rng: np.random.Generator) -> Anatomy:
    """Build a clean T2-FLAIR-like head (no blur, bias field or noise) on ``grid`` from ``rng``.

    Lesion location regions: ``brain_hemisphere`` (cerebral gray and white matter),
    ``brain_frontal_white_matter``, ``brain_temporal``.
    """
    return _Head(grid, rng).build()
