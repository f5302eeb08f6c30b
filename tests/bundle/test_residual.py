import numpy as np
import pytest
import torch

from scripts.residual import ResidualRefiner, feature_residuals, pixel_residual, postprocess_mask


def test_residuals_vanish_when_the_pseudo_healthy_equals_the_scan():
    image = torch.rand(1, 1, 8, 8, 8)
    features = [torch.randn(1, 4, 8, 8, 8), torch.randn(1, 8, 4, 4, 4)]
    assert pixel_residual(image, image).abs().max() == 0
    residual = feature_residuals(features, features, (8, 8, 8))
    assert residual.shape == (1, 2, 8, 8, 8) and residual.abs().max() == 0


def test_feature_residual_is_large_where_features_differ():
    base = torch.zeros(1, 4, 8, 8, 8)
    changed = base.clone()
    changed[..., 2:4, 2:4, 2:4] = 1.0
    residual = feature_residuals([base], [changed], (8, 8, 8))[0, 0]
    assert residual[3, 3, 3] > 0.5 and residual[7, 7, 7] == 0


def test_refiner_maps_the_residual_stack_to_one_logit_channel():
    refiner = ResidualRefiner(num_feature_levels=3)
    x = torch.rand(1, 1, 16, 16, 16)
    logits = refiner(x, x, torch.rand_like(x), torch.rand(1, 3, 16, 16, 16))
    assert logits.shape == (1, 1, 16, 16, 16)


def test_postprocess_removes_components_below_the_minimum_volume():
    probability = np.zeros((20, 20, 20), dtype=np.float32)
    probability[1, 1, 1] = 0.9  # 8 mm^3 at 2 mm spacing
    probability[5:10, 5:10, 5:10] = 0.9  # 1 mL
    mask = postprocess_mask(probability, (2.0, 2.0, 2.0), min_volume_ml=0.5)
    assert mask.dtype == np.uint8 and mask.sum() == 125 and mask[1, 1, 1] == 0
    assert postprocess_mask(probability, (2.0, 2.0, 2.0)).sum() == 126


def test_postprocess_rejects_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        postprocess_mask(np.zeros((2, 2, 2)), (1, 1, 1), threshold=1.0)


def test_postprocess_components_match_removing_small_objects_on_the_whole_grid():
    # Components are labelled in the foreground's bounding box only: the result must not differ.
    from monai.transforms import RemoveSmallObjects

    rng = np.random.default_rng(3)
    probability = np.zeros((40, 36, 30), dtype=np.float32)
    probability[8:30, 6:28, 4:25] = rng.random((22, 22, 21))  # speckle: components of many sizes
    probability[0, 0, 0] = probability[39, 35, 29] = 0.9  # single voxels at opposite corners
    mask = postprocess_mask(probability, (1.0, 1.0, 1.0), threshold=0.6, min_volume_ml=0.004)
    expected = np.asarray(RemoveSmallObjects(min_size=4, connectivity=3)((probability > 0.6)[None]))[0]
    assert 0 < mask.sum() < (probability > 0.6).sum()
    np.testing.assert_array_equal(mask, expected.astype(np.uint8))
