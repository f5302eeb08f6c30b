import copy

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from scripts.preprocessing import (
    CT_WINDOW,
    MR_PERCENTILES,
    IntensityWindow,
    Modality,
    VolumeGeometry,
    as_volume,
    denormalize_intensity,
    intensity_window,
    normalize_intensity,
)


def test_ct_window_maps_hounsfield_units_to_unit_range_and_clips():
    hu = torch.tensor([-2000.0, -1000.0, 0.0, 1000.0, 3000.0])
    assert intensity_window(hu, "CT") == CT_WINDOW
    np.testing.assert_allclose(normalize_intensity(hu, CT_WINDOW).numpy(), [0, 0, 0.5, 1, 1])


def test_mr_window_maps_0th_to_99_5th_percentile_to_unit_range():
    values = torch.arange(1001, dtype=torch.float32)  # percentiles are exact on 0..1000
    window = intensity_window(values, "MR")
    assert window.low == 0.0 and window.high == pytest.approx(995.0)
    scaled = normalize_intensity(values, window)
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert scaled[500].item() == pytest.approx(500 / 995)


def test_normalize_equals_monais_scale_intensity_range_and_keeps_the_affine():
    from monai.transforms import ScaleIntensityRange

    window = IntensityWindow(-200.0, 300.0)
    volume = as_volume(torch.linspace(-500, 600, 4 * 5 * 6).view(4, 5, 6), affine=LPS_AFFINE)
    ours = normalize_intensity(volume, window)
    monai_scaled = ScaleIntensityRange(a_min=-200.0, a_max=300.0, b_min=0.0, b_max=1.0, clip=True)(volume)
    torch.testing.assert_close(ours.as_tensor(), monai_scaled.as_tensor())
    np.testing.assert_array_equal(ours.affine.numpy(), LPS_AFFINE)


def test_denormalize_inverts_normalize_inside_the_window():
    values = torch.linspace(-900, 900, 11)
    restored = denormalize_intensity(normalize_intensity(values, CT_WINDOW), CT_WINDOW)
    np.testing.assert_allclose(restored.numpy(), values.numpy(), atol=1e-3)


@pytest.mark.parametrize("text,expected", [("ct", Modality.CT), ("MRI", Modality.MR), (" mr ", Modality.MR)])
def test_modality_parse_accepts_common_spellings(text, expected):
    assert Modality.parse(text) is expected


def test_unknown_modality_names_the_valid_values():
    with pytest.raises(ValueError, match="unknown modality 'PET'.*CT, MR"):
        Modality.parse("PET")


LPS_AFFINE = np.array([[-0.8, 0, 0, 10], [0, -0.8, 0, 5], [0, 0, 2.5, -3], [0, 0, 0, 1]])


@pytest.mark.parametrize("affine", [np.diag([1.0, 1.0, 1.0, 1.0]), LPS_AFFINE], ids=["RAS", "LPS"])
def test_geometry_without_resampling_inverts_exactly(affine):
    image = np.random.default_rng(0).random((37, 41, 23)).astype(np.float32)
    geometry = VolumeGeometry(working_spacing=None, divisor=16)
    working = geometry(as_volume(image, affine=affine))
    assert all(s % 16 == 0 for s in working.shape[1:])
    restored = geometry.invert(working.as_tensor().clone(), working)
    np.testing.assert_array_equal(restored[0].numpy(), image)


def test_geometry_orients_to_ras_and_resamples_to_working_spacing():
    image = np.zeros((40, 40, 16), dtype=np.float32)
    geometry = VolumeGeometry(working_spacing=(1.5, 1.5, 1.5), divisor=16)
    working = geometry(as_volume(image, affine=LPS_AFFINE))
    np.testing.assert_allclose(working.pixdim.numpy(), [1.5, 1.5, 1.5])
    assert (np.diag(working.affine.numpy())[:3] > 0).all(), "working grid must be RAS"
    assert all(s % 16 == 0 for s in working.shape[1:])


def test_working_grid_spans_the_field_of_view():
    # 512 x 0.375 mm = 192 mm = 128 voxels of 1.5 mm: one 128^3 patch, not 129 padded to 144 (4 patches).
    geometry = VolumeGeometry(working_spacing=(1.5, 1.5, 1.5), divisor=16)
    working = geometry(as_volume(np.zeros((512, 512, 155), np.float32), spacing=(0.375, 0.375, 1.2387)))
    assert tuple(working.shape[1:]) == (128, 128, 128)


def test_geometry_inverse_restores_the_input_grid_after_resampling():
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in (41, 37, 21)], indexing="ij")
    smooth = np.exp(-sum(g**2 for g in grid) * 2).astype(np.float32)  # a smooth blob survives resampling
    geometry = VolumeGeometry(working_spacing=(1.5, 1.5, 1.5), divisor=16)
    working = geometry(as_volume(smooth, affine=LPS_AFFINE))
    restored = geometry.invert(working.as_tensor().clone(), working)[0].numpy()
    assert restored.shape == smooth.shape
    assert np.abs(restored - smooth).max() < 0.1
    assert np.unravel_index(restored.argmax(), restored.shape) == np.unravel_index(smooth.argmax(), smooth.shape)


@pytest.mark.parametrize(
    "array,message",
    [
        (np.zeros((4, 4)), "expected a 3D volume"),
        (np.zeros((2, 4, 4, 4)), "expected a 3D volume"),
        (np.zeros((4, 0, 4)), "zero-size dimension"),
        (np.full((4, 4, 4), np.nan), "NaN or infinite"),
        (np.where(np.arange(64).reshape(4, 4, 4) == 37, np.nan, 1.0), "NaN or infinite"),
        (np.where(np.arange(64).reshape(4, 4, 4) == 5, -np.inf, 1.0), "NaN or infinite"),
        (np.where(np.arange(64).reshape(4, 4, 4) == 63, np.inf, 1.0), "NaN or infinite"),
    ],
)
def test_as_volume_rejects_unusable_arrays(array, message):
    with pytest.raises(ValueError, match=message):
        as_volume(array, spacing=(1, 1, 1))


def test_as_volume_rejects_bad_spacing():
    with pytest.raises(ValueError, match="spacing must be three positive numbers"):
        as_volume(np.zeros((4, 4, 4)), spacing=(1, 0, 1))


def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 1.1, 2.0])
    affine[:3, 3] = [5.0, -7.0, 3.0]
    return affine


@pytest.mark.parametrize(
    "shape,affine,spacing",
    [
        ((41, 37, 21), LPS_AFFINE, (1.5, 1.5, 1.5)),  # flipped axes, upsampled back
        ((64, 48, 19), np.diag([0.375, 0.375, 1.24, 1.0]), (1.5, 1.5, 1.5)),  # MR-like: fine in-plane
        ((30, 33, 40), np.diag([-2.1, 1.3, 0.8, 1.0]), (1.0, 1.25, 1.5)),  # shrinks one axis, grows another
        ((40, 36, 20), _oblique_affine(), (1.5, 1.5, 1.5)),  # oblique: the working grid keeps its direction
    ],
)
def test_geometry_inverse_matches_monais_inverse(shape, affine, spacing, monkeypatch):
    # The separable inverse must give MONAI's trilinear values, not only a plausible image.
    import scripts.preprocessing as preprocessing

    separable = []
    resample = preprocessing.resample_axis_aligned
    monkeypatch.setattr(preprocessing, "resample_axis_aligned", lambda *args: separable.append(1) or resample(*args))
    rng = np.random.default_rng(0)
    volume = as_volume(rng.random(shape, dtype=np.float32), affine=affine)
    geometry = VolumeGeometry(working_spacing=spacing, divisor=16)
    working = geometry(volume)
    maps = torch.as_tensor(rng.random((3, *working.shape[1:]), dtype=np.float32))
    ours = geometry.invert(maps, working)
    assert separable == [1], "the separable inverse must be the one compared, not MONAI's own"
    traced = MetaTensor(maps, affine=working.affine, applied_operations=copy.deepcopy(working.applied_operations))
    monai_inverse = geometry._forward.inverse(traced).as_tensor()
    assert ours.shape == monai_inverse.shape == (3, *shape)
    torch.testing.assert_close(ours, monai_inverse, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["continuous", "whole numbers with ties", "mostly background"])
def test_mr_window_of_a_large_volume_equals_numpys_percentiles(kind):
    # Above 1M voxels only the top of the histogram is partitioned; the window must not change.
    rng = np.random.default_rng(1)
    values = {
        "continuous": rng.gamma(2.0, 300.0, 3_000_000),
        "whole numbers with ties": rng.integers(0, 900, 3_000_000).astype(float),
        "mostly background": np.where(rng.random(3_000_000) < 0.9, 0.0, rng.normal(800, 200, 3_000_000)),
    }[kind].astype(np.float32)
    window = intensity_window(torch.as_tensor(values).view(150, 200, 100), "MR")
    low, high = np.percentile(values, MR_PERCENTILES)
    assert window.low == pytest.approx(float(low), rel=1e-6, abs=1e-6)
    assert window.high == pytest.approx(float(high), rel=1e-6)
