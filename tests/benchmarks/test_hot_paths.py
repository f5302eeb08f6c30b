"""The hot-path benchmark compares like with like: each hand-written routine gives the library's result."""

import numpy as np
import torch

from benchmarks import hot_paths


def test_a_row_names_both_sides_and_their_ratio(capsys):
    row = hot_paths.compare("a short sum", lambda: sum(range(1_000)), lambda: sum(range(100_000)), "a long sum", repeats=2)
    assert (row["hot path"], row["library"]) == ("a short sum", "a long sum")
    assert row["speed-up"] > 1  # a hundred times the work
    assert "a short sum" in capsys.readouterr().out


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
