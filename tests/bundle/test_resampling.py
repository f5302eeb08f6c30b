import numpy as np
import pytest
import torch

from scripts.resampling import axis_aligned_scales, resample_axis_aligned


def test_axis_aligned_scales_reads_scale_and_shift_per_axis():
    xform = np.array([[0.25, 0, 0, -0.375], [0, 2.0, 0, 0.5], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    scale, shift = axis_aligned_scales(xform)
    np.testing.assert_array_equal(scale, [0.25, 2.0, 1.0])
    np.testing.assert_array_equal(shift, [-0.375, 0.5, 0.0])


def test_a_mapping_that_mixes_axes_is_refused():
    rotation = np.eye(4)
    rotation[:2, :2] = [[0.0, -1.0], [1.0, 0.0]]
    assert axis_aligned_scales(rotation) is None
    with pytest.raises(ValueError, match="mixes axes"):
        resample_axis_aligned(torch.zeros(1, 4, 4, 4), rotation, (4, 4, 4))


def test_linear_values_between_voxels_and_clamping_at_the_border():
    data = torch.arange(4, dtype=torch.float32).view(1, 4, 1, 1).expand(1, 4, 2, 2).contiguous()
    xform = np.diag([0.5, 1.0, 1.0, 1.0])
    xform[0, 3] = -0.75  # positions -0.75, -0.25, 0.25, ..., 3.25: clamped below 0 and above 3
    out = resample_axis_aligned(data, xform, (9, 2, 2))
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [0, 0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])


def test_identity_returns_the_data():
    data = torch.rand(2, 5, 6, 7)
    torch.testing.assert_close(resample_axis_aligned(data, np.eye(4), (5, 6, 7)), data)
