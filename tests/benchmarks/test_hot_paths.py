"""The hot-path benchmark compares like with like: each hand-written routine gives the library's result."""

import numpy as np
import torch

from benchmarks import hot_paths


def test_a_row_names_both_sides_and_their_ratio(capsys, monkeypatch):
    # The timings are the benchmark's business; the row is what is tested here.
    seconds = iter([0.5, 2.0])
    monkeypatch.setattr(hot_paths, "_best", lambda function, repeats: next(seconds))
    row = hot_paths.compare("ours", lambda: None, lambda: None, "the library's", repeats=1)
    assert row == {"hot path": "ours", "ours_s": 0.5, "library": "the library's", "library_s": 2.0, "speed-up": 4.0}
    assert "ours" in capsys.readouterr().out


def test_best_keeps_the_fastest_of_the_repeats(monkeypatch):
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])  # runs of 3, 1 and 2 seconds
    monkeypatch.setattr(hot_paths.time, "perf_counter", lambda: next(ticks))
    assert hot_paths._best(lambda: None, 3) == 1.0


def test_the_resampling_it_times_matches_monai():
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    from scripts.resampling import resample_axis_aligned

    maps = torch.rand(1, 8, 8, 4)
    scale = np.diag([8 / 20, 8 / 20, 4 / 9, 1.0])
    ours = resample_axis_aligned(maps, scale, (20, 20, 9))
    monai = SpatialResample(mode="bilinear", padding_mode="border")(
        MetaTensor(maps, affine=torch.eye(4, dtype=torch.float64)), dst_affine=torch.as_tensor(scale), spatial_size=(20, 20, 9)
    )
    assert torch.allclose(ours, monai.as_tensor(), atol=1e-5)
