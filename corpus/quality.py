"""How hard a case is: tumor-to-organ contrast and noise, measured on the final image.

These are the quantities benchmark.md bounds (contrast down to 10 to 20 HU for liver and pancreas
tumors against noise of 10 to 20 HU SD). The corpus command writes them into every case's
metadata and logs their ranges; the tests check them against the benchmark's ranges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["robust_sd", "measure_noise_sd", "estimate_noise_sd", "measure_contrast", "case_quality"]


def robust_sd(values: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation (1.4826 MAD)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _crop(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    found = ndimage.find_objects(mask.view(np.uint8))
    if not found or found[0] is None:
        return tuple(slice(0, 0) for _ in mask.shape)
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(found[0], mask.shape))


def measure_noise_sd(image: np.ndarray, region: np.ndarray, *, exclude: np.ndarray | None = None, erode_voxels: int = 2) -> float:
    """Robust SD of ``image`` inside ``region`` eroded by ``erode_voxels`` (edges left out).

    ``exclude`` (e.g. vessels and the tumor, dilated) is removed first. Includes tissue texture,
    as a radiologist's ROI standard deviation would. NaN when nothing is left.
    """
    sl = _crop(region, 1)
    local = region[sl]
    if exclude is not None:
        local = local & ~exclude[sl]
    if erode_voxels > 0:
        local = ndimage.binary_erosion(local, iterations=erode_voxels)
    return robust_sd(image[sl][local])


def measure_contrast(
    image: np.ndarray,
    tumor: np.ndarray,
    host: np.ndarray,
    spacing: Sequence[float],
    *,
    shell_mm: float = 15.0,
    gap_voxels: int = 2,
    exclude: np.ndarray | None = None,
) -> float:
    """Mean tumor intensity minus the mean of the host organ around it.

    The reference is the host tissue within ``shell_mm`` of the tumor, leaving a gap of
    ``gap_voxels`` so that the blurred edge counts for neither side. Both sides leave out the
    host's outermost voxel layer, where partial volume mixes in the neighbouring tissue. NaN when
    either side is empty.
    """
    tumor = tumor.astype(bool)
    if not tumor.any():
        return float("nan")
    pad = int(np.ceil(shell_mm / min(spacing))) + gap_voxels + 1
    sl = _crop(tumor, pad)
    local_tumor = tumor[sl]
    distance = ndimage.distance_transform_edt(~local_tumor, sampling=spacing)
    near = ndimage.binary_dilation(local_tumor, iterations=gap_voxels)
    inner = ndimage.binary_erosion(host[sl])
    reference = inner & ~near & (distance <= shell_mm)
    if exclude is not None:
        reference &= ~exclude[sl]
    inner_tumor = local_tumor & inner
    if not reference.any() or not inner_tumor.any():
        return float("nan")
    values = image[sl]
    return float(values[inner_tumor].mean() - values[reference].mean())


def estimate_noise_sd(image: np.ndarray, region: np.ndarray) -> float:
    """Noise SD from the residual to the 3x3x3 local mean inside ``region`` eroded by one voxel.

    Insensitive to smooth variation (bias field, organ gradients); for white noise it returns the
    noise SD, for correlated CT noise somewhat less. 0 when the region is empty.
    """
    sl = _crop(region, 2)
    local = image[sl].astype(np.float32)
    residual = local - ndimage.uniform_filter(local, size=3, mode="nearest")
    inner = ndimage.binary_erosion(region[sl], iterations=1)
    if not inner.any():
        return 0.0
    return robust_sd(residual[inner]) * float(np.sqrt(27.0 / 26.0))


def case_quality(case) -> dict[str, float]:
    """Contrast and noise of a :class:`~.phantom.PhantomCase`, for its metadata.

    Keys: ``noise_sd`` (CT phantoms: ROI SD in the liver away from vessels and tumor; MR and
    real hosts: :func:`estimate_noise_sd` in white matter or the host organ), and for tumor cases
    ``contrast`` (tumor mean minus host organ mean, :func:`measure_contrast`), ``tumor_mean``,
    and for MR ``contrast_relative`` (contrast over the white matter median).
    """
    from .labels import OrganLabel, host_labels
    from .lesions import load_vocabulary

    labels, image = case.organ_labels, case.image
    tumor = case.tumor_mask > 0
    vessels = labels == OrganLabel.HEPATIC_VESSEL
    result: dict[str, float] = {}
    liver = labels == OrganLabel.LIVER
    white = labels == OrganLabel.WHITE_MATTER
    if case.modality.value == "CT" and case.source == "phantom" and liver.any():
        exclude = ndimage.binary_dilation(vessels | tumor, iterations=2)
        result["noise_sd"] = measure_noise_sd(image, liver, exclude=exclude)
    elif white.any():
        result["noise_sd"] = estimate_noise_sd(image, white & ~tumor)
    elif "noise_sd_estimate" in case.imaging:
        result["noise_sd"] = float(case.imaging["noise_sd_estimate"])
    if tumor.any():
        organ = load_vocabulary()["findings"][case.category.value]["organ"]
        host = np.isin(labels, host_labels(organ))
        result["contrast"] = measure_contrast(image, tumor, host, case.spacing, exclude=vessels & ~tumor)
        result["tumor_mean"] = float(image[tumor].mean())
        if case.modality.value == "MR" and white.any():
            result["contrast_relative"] = result["contrast"] / float(np.median(image[white & ~tumor]))
    return {key: round(float(value), 4) for key, value in result.items()}
