"""Imaging effects that keep the phantoms from being trivially separable.

Order of application in a phantom (see :mod:`.phantom`): piecewise-constant anatomy plus smooth
tissue texture, lesions, partial-volume blur, then (MR) bias field, then scanner noise. Noise comes
last so that its standard deviation is the one drawn (benchmark.md: 10 to 20 HU SD for CT).

Each function takes a ``numpy.random.Generator`` and draws everything from it, so a seed fixes the
result bit for bit. Gaussian filtering uses ``scipy.ndimage`` rather than MONAI's
``GaussianSmooth``: same kernel, several times faster on CPU (``python -m benchmarks.hot_paths``
times both), which is what keeps the generation of a case to seconds. The MR bias field is MONAI's
``RandBiasField``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from monai.transforms import RandBiasField
from scipy import ndimage

__all__ = [
    "smooth_noise",
    "partial_volume_blur",
    "add_correlated_noise",
    "add_rician_noise",
    "apply_bias_field",
]


def smooth_noise(shape: Sequence[int], scale_voxels: npt.ArrayLike, rng: np.random.Generator) -> np.ndarray:
    """A smooth zero-mean random field with unit standard deviation (float32).

    White noise on a coarse lattice (one node per ``scale_voxels``) is interpolated trilinearly to
    ``shape``: correlation length about ``scale_voxels``, at a few milliseconds per 128^3 field.

    Args:
        shape: output shape (3D).
        scale_voxels: correlation length in voxels, one value or one per axis (>= 1).
        rng: random generator.
    """
    shape = tuple(int(n) for n in shape)
    scale = np.broadcast_to(np.asarray(scale_voxels, dtype=np.float64), (3,))
    if np.any(scale < 1.0):
        raise ValueError(f"scale_voxels must be >= 1, got {scale_voxels!r}")
    coarse_shape = tuple(int(np.ceil(n / s)) + 2 for n, s in zip(shape, scale))
    coarse = rng.standard_normal(coarse_shape, dtype=np.float32)
    fine = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None, None], size=shape, mode="trilinear", align_corners=False)[0, 0].numpy()
    sd = float(fine.std())
    return (fine / sd if sd > 0 else fine).astype(np.float32, copy=False)


def partial_volume_blur(image: np.ndarray, sigma_voxels: float | Sequence[float]) -> np.ndarray:
    """Gaussian blur standing in for the scanner's point spread and partial-volume mixing."""
    return ndimage.gaussian_filter(image, sigma=sigma_voxels, mode="nearest", truncate=3.0).astype(np.float32)


def add_correlated_noise(image: np.ndarray, sd: float, rng: np.random.Generator, *, correlation_voxels: float = 0.6) -> np.ndarray:
    """Add Gaussian noise of exactly ``sd`` standard deviation, correlated like CT noise.

    White noise is low-passed with a Gaussian of ``correlation_voxels`` (reconstruction-kernel
    correlation, the grainy look of CT) and rescaled so that its sample SD equals ``sd``.
    """
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    if correlation_voxels > 0:
        noise = ndimage.gaussian_filter(noise, correlation_voxels, mode="wrap", truncate=3.0)
    noise *= np.float32(sd / max(float(noise.std()), 1e-12))
    return (image + noise).astype(np.float32, copy=False)


def add_rician_noise(image: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude MR noise: ``|image + n_real + i n_imag|`` with Gaussian ``n`` of SD ``sd``.

    Rician: Gaussian-like in bright tissue, positive-biased Rayleigh noise in the dark background.
    """
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    real = image + np.float32(sd) * rng.standard_normal(image.shape, dtype=np.float32)
    imag = np.float32(sd) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32, copy=False)


def apply_bias_field(image: np.ndarray, rng: np.random.Generator, *, strength: float = 0.1) -> np.ndarray:
    """Multiply by a smooth MR bias field (MONAI ``RandBiasField``, degree-3 Legendre basis).

    ``strength`` bounds each of the 19 polynomial coefficients; 0.1 gives a 5th-to-95th
    percentile field ratio of about 1.4 (+-20 %), the order of an uncorrected head scan.
    """
    transform = RandBiasField(degree=3, coeff_range=(-strength, strength), prob=1.0)
    transform.set_random_state(seed=int(rng.integers(0, 2**31 - 1)))
    biased = transform(image[None])
    if isinstance(biased, torch.Tensor):
        biased = biased.detach().cpu().numpy()
    return np.asarray(biased[0], dtype=np.float32)
