"""The hand-written hot paths against the library call each one replaces, timed on this machine.

Where the code uses its own routine instead of MONAI, numpy or scikit-image, its comment says why
and points here for the figures (timings in comments go stale; this prints today's). Each row:
the sizes the choice was made for (a 512x512x155 input grid: 40M voxels; a 128^3 corpus volume),
the best of ``--repeats`` wall times of ours and of the library's, and their ratio.

    .venv/bin/python -m benchmarks.hot_paths [--repeats 3] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from .bundle_eval import ROOT

sys.path.insert(0, str(ROOT / "bundle"))

from scripts.preprocessing import IntensityWindow, _percentile, normalize_intensity  # noqa: E402
from scripts.resampling import resample_axis_aligned  # noqa: E402
from scripts.residual import _remove_small_components  # noqa: E402

__all__ = ["compare", "main"]

INPUT_GRID = (512, 512, 155)  # a clinical CT or MR series
WORKING_GRID = (128, 128, 40)  # the same field of view on the mini profile's working grid


def _best(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def compare(name: str, ours: Callable[[], object], library: Callable[[], object], library_name: str, repeats: int) -> dict[str, object]:
    """Best-of-``repeats`` seconds of ``ours`` and ``library``, printed as one row."""
    ours_s, library_s = _best(ours, repeats), _best(library, repeats)
    row = {"hot path": name, "ours_s": round(ours_s, 4), "library": library_name, "library_s": round(library_s, 4), "speed-up": round(library_s / ours_s, 2)}
    print(f"{name:<44} ours {ours_s:8.3f} s   {library_name:<34} {library_s:8.3f} s   x{library_s / ours_s:5.1f}", flush=True)
    return row


def _resampling(repeats: int) -> dict[str, object]:
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    maps = torch.rand(1, *WORKING_GRID)
    # Output index i samples the working grid at scale @ i: the source grid is the world frame.
    scale = np.diag([WORKING_GRID[i] / INPUT_GRID[i] for i in range(3)] + [1.0])
    source = MetaTensor(maps, affine=torch.eye(4, dtype=torch.float64))
    resample = SpatialResample(mode="bilinear", padding_mode="border")
    return compare(
        "working grid -> input grid (trilinear)",
        lambda: resample_axis_aligned(maps, scale, INPUT_GRID),
        lambda: resample(source, dst_affine=torch.as_tensor(scale), spatial_size=INPUT_GRID),
        "monai SpatialResample",
        repeats,
    )


def _concurrent_writes(repeats: int, folder: Path) -> dict[str, object]:
    rng = np.random.default_rng(0)
    maps = [(rng.random(INPUT_GRID, dtype=np.float32) > 0.99).astype(np.uint8) * 200 for _ in range(4)]

    def save(index: int) -> None:
        nib.save(nib.Nifti1Image(maps[index], np.eye(4)), str(folder / f"map{index}.nii.gz"))

    def concurrently() -> None:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            list(pool.map(save, range(4)))

    def one_after_the_other() -> None:
        for index in range(4):
            save(index)

    return compare("four NIfTI maps written (gzip)", concurrently, one_after_the_other, "one after the other", repeats)


def _percentiles(repeats: int) -> dict[str, object]:
    values = np.random.default_rng(1).gamma(2.0, 100.0, int(np.prod(INPUT_GRID))).astype(np.float32)
    return compare("99.5th percentile of 40M values", lambda: _percentile(values, 99.5), lambda: np.percentile(values, 99.5), "np.percentile", repeats)


def _normalization(repeats: int) -> dict[str, object]:
    from monai.transforms import ScaleIntensityRange

    volume = torch.randn(*INPUT_GRID) * 300
    window = IntensityWindow(-1000.0, 1000.0)
    scale = ScaleIntensityRange(-1000.0, 1000.0, 0.0, 1.0, clip=True)
    return compare(
        "intensity window to [0, 1], clipped",
        lambda: normalize_intensity(volume.clone(), window),
        lambda: scale(volume),
        "monai ScaleIntensityRange",
        repeats,
    )


def _finite_check(repeats: int) -> dict[str, object]:
    volume = torch.randn(*INPUT_GRID)
    return compare(
        "all voxels finite",
        lambda: all(torch.isfinite(extreme) for extreme in torch.aminmax(volume)),
        lambda: bool(torch.isfinite(volume).all()),
        "torch.isfinite(volume).all()",
        repeats,
    )


def _small_components(repeats: int) -> dict[str, object]:
    from monai.transforms import RemoveSmallObjects

    rng = np.random.default_rng(2)
    mask = np.zeros(INPUT_GRID, dtype=bool)
    mask[200:260, 200:260, 60:80] = True  # one lesion
    for x, y, z in rng.integers((100, 100, 20), (400, 400, 130), size=(900, 3)):
        mask[x : x + 2, y : y + 2, z : z + 1] = True  # specks
    remove = RemoveSmallObjects(min_size=20, connectivity=3)
    return compare(
        "remove components < 20 voxels (26-connected)",
        lambda: _remove_small_components(mask.copy(), 20),
        lambda: remove(torch.as_tensor(mask[None])),
        "monai RemoveSmallObjects",
        repeats,
    )


def _gaussian(repeats: int) -> dict[str, object]:
    from monai.transforms import GaussianSmooth
    from scipy import ndimage

    volume = np.random.default_rng(3).random((128, 128, 128), dtype=np.float32)
    smooth = GaussianSmooth(sigma=2.0)
    return compare(
        "Gaussian blur of a 128^3 corpus volume",
        lambda: ndimage.gaussian_filter(volume, 2.0, mode="nearest", truncate=3.0),
        lambda: smooth(volume[None]),
        "monai GaussianSmooth",
        repeats,
    )


def _slice_order(repeats: int) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from operators.html_report import _z_slices

    xyz = np.random.default_rng(4).random((512, 512, 256), dtype=np.float32)
    return compare(
        "(x, y, z) map to (row, column) slices",
        lambda: sum(1 for _ in _z_slices(xyz)),
        lambda: np.ascontiguousarray(xyz.transpose(2, 1, 0)),
        "whole-volume transpose",
        repeats,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, the best kept (>= 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    print(f"torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        rows = [
            _resampling(args.repeats),
            _concurrent_writes(args.repeats, Path(folder)),
            _percentiles(args.repeats),
            _normalization(args.repeats),
            _finite_check(args.repeats),
            _small_components(args.repeats),
            _gaussian(args.repeats),
            _slice_order(args.repeats),
        ]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
