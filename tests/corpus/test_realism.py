import numpy as np
import pytest

from corpus.realism import add_correlated_noise, add_rician_noise, apply_bias_field, partial_volume_blur, smooth_noise


def test_smooth_noise_has_unit_sd_and_is_spatially_correlated():
    field = smooth_noise((48, 48, 48), 6.0, np.random.default_rng(0))
    assert field.dtype == np.float32
    assert field.std() == pytest.approx(1.0, rel=1e-3)
    neighbours = np.corrcoef(field[:-1].ravel(), field[1:].ravel())[0, 1]
    assert neighbours > 0.9


def test_smooth_noise_rejects_scales_below_one_voxel():
    with pytest.raises(ValueError, match="scale_voxels"):
        smooth_noise((16, 16, 16), 0.5, np.random.default_rng(0))


@pytest.mark.parametrize("sd", [10.0, 20.0])
def test_correlated_noise_has_the_requested_sd_and_grain(sd):
    image = np.full((48, 48, 48), 50.0, dtype=np.float32)
    noisy = add_correlated_noise(image, sd, np.random.default_rng(1))
    assert (noisy - image).std() == pytest.approx(sd, rel=1e-3)
    residual = noisy - image
    assert np.corrcoef(residual[:-1].ravel(), residual[1:].ravel())[0, 1] > 0.2  # CT-like grain


def test_rician_noise_is_positive_and_biased_in_the_background():
    image = np.zeros((32, 32, 32), dtype=np.float32)
    image[16:] = 100.0
    noisy = add_rician_noise(image, 5.0, np.random.default_rng(2))
    assert noisy.min() >= 0.0
    assert noisy[:16].mean() == pytest.approx(5.0 * np.sqrt(np.pi / 2), rel=0.05)  # Rayleigh mean
    assert noisy[16:].std() == pytest.approx(5.0, rel=0.1)


def test_bias_field_is_a_smooth_multiplicative_field():
    image = np.full((64, 64, 64), 100.0, dtype=np.float32)
    biased = apply_bias_field(image, np.random.default_rng(3))
    ratio = biased / image
    assert 1.1 < np.percentile(ratio, 95) / np.percentile(ratio, 5) < 2.5
    assert np.abs(np.diff(ratio, axis=0)).max() < 0.05  # no jumps between neighbours


def test_partial_volume_blur_keeps_the_mean_and_softens_edges():
    image = np.zeros((32, 32, 32), dtype=np.float32)
    image[:, :, 16:] = 100.0
    blurred = partial_volume_blur(image, 0.7)
    assert blurred.mean() == pytest.approx(image.mean(), rel=1e-3)
    assert 5.0 < blurred[10, 10, 15] < 50.0
