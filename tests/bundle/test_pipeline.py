import numpy as np
import pytest
import torch

from scripts.errors import UserError
from scripts.foundation import PROFILES
from scripts.pipeline import PipelineConfig, build_pipeline

LPS_AFFINE = np.array([[-1.6, 0, 0, 120.0], [0, -1.6, 0, 90.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def pipeline(text_encoder):
    # coarse_threshold low so the untrained AOVA map produces a region and inpainting really runs.
    config = PipelineConfig(num_steps=2, progress=False, coarse_threshold=0.3)
    return build_pipeline(PROFILES["mini"], device="cpu", text_encoder=text_encoder, config=config)


def _ct_volume(shape=(40, 44, 24)):
    rng = np.random.default_rng(0)
    volume = rng.normal(-900, 30, shape).astype(np.float32)  # air-like background
    organ = tuple(slice(s // 5, s - s // 5) for s in shape)
    volume[organ] = rng.normal(60, 15, volume[organ].shape)  # soft-tissue "liver"
    lesion = tuple(slice(s // 2 - s // 8, s // 2 + s // 8) for s in shape)
    volume[lesion] = 20.0  # hypodense "lesion"
    return volume


def _mr_volume(shape=(36, 40, 28)):
    rng = np.random.default_rng(1)
    volume = np.abs(rng.normal(0, 20, shape)).astype(np.float32)
    volume[6:30, 6:34, 4:24] += 600 + rng.normal(0, 30, (24, 28, 20)).astype(np.float32)
    return volume


def _check_outputs(output, image, affine):
    assert output.affine.shape == (4, 4)
    np.testing.assert_allclose(output.affine, affine)
    for result in output.results:
        for array in (result.mask, result.probability, result.aova_map, result.pseudo_healthy):
            assert array.shape == image.shape
        assert result.mask.dtype == np.uint8 and set(np.unique(result.mask)) <= {0, 1}
        assert 0 <= result.probability.min() and result.probability.max() <= 1
        assert 0 <= result.aova_map.min() and result.aova_map.max() <= 1
        assert np.isfinite(result.pseudo_healthy).all()
        assert result.tumor_volume_ml == pytest.approx(result.mask.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000)


@pytest.mark.slow
def test_ct_end_to_end_on_an_lps_grid(pipeline):
    image = _ct_volume()
    output = pipeline.segment(image, affine=LPS_AFFINE, modality="CT", prompts=["liver tumor", "kidney tumor"])
    assert [r.prompt.finding for r in output.results] == ["liver tumor", "kidney tumor"]
    _check_outputs(output, image, LPS_AFFINE)
    assert {"preprocessing", "features", "aova", "inpainting", "residual", "postprocessing"} <= set(output.stage_seconds)


@pytest.mark.slow
def test_pseudo_healthy_keeps_the_scan_outside_the_coarse_mask(pipeline, monkeypatch):
    from scripts.aova import AOVAOutput

    def box_map(features, keys, abnormal):  # an AOVA map that is high in one box only
        aova = torch.zeros_like(features[0][:, :1])
        aova[..., 20:36, 20:36, 8:24] = 0.9
        return AOVAOutput(aova, [aova])

    monkeypatch.setattr(pipeline.heads.aova, "forward", box_map)
    image = _ct_volume((48, 48, 32))
    result = pipeline.segment(image, spacing=(1.0, 1.0, 1.0), modality="CT", prompts="liver tumor").results[0]
    changed = np.abs(result.pseudo_healthy - image) > 1e-3
    assert changed.any(), "the region must be inpainted"
    # 48 mm at 2 mm is 24 voxels, padded by 4 to 32; working voxel j is centred at -0.5 + 2j mm
    # (the grid starts at the field of view's edge). The box starts at working voxel 16 (z: 8), the
    # 2-voxel dilation moves that to 14 (z: 6), i.e. 27.5 mm (z: 11.5 mm); linear interpolation
    # reaches one working voxel further, past 25.5 mm (z: 9.5 mm).
    outside = np.ones(image.shape, dtype=bool)
    outside[26:, 26:, 10:] = False
    assert not changed[outside].any()
    assert result.pseudo_healthy[~changed].min() < -800, "kept voxels stay in HU"


@pytest.mark.slow
@pytest.mark.parametrize("confine", [True, False])
def test_final_probability_stays_inside_the_coarse_mask(pipeline, monkeypatch, confine):
    from dataclasses import replace

    from scripts.aova import AOVAOutput

    def box_map(features, keys, abnormal):  # coarse mask: one box
        aova = torch.zeros_like(features[0][:, :1])
        aova[..., 20:36, 20:36, 8:24] = 0.9
        return AOVAOutput(aova, [aova])

    monkeypatch.setattr(pipeline.heads.aova, "forward", box_map)
    monkeypatch.setattr(pipeline.heads.refiner, "forward", lambda image, *rest: torch.full_like(image, 5.0))
    monkeypatch.setattr(pipeline, "config", replace(pipeline.config, confine_to_coarse_mask=confine))
    image = _ct_volume((48, 48, 32))
    result = pipeline.segment(image, spacing=(1.0, 1.0, 1.0), modality="CT", prompts="liver tumor").results[0]
    outside = np.ones(image.shape, dtype=bool)
    outside[27:, 27:, 11:] = False  # the dilated box on the input grid, as in the test above
    assert result.mask.any()
    assert result.mask[outside].any() != confine


@pytest.mark.slow
def test_mr_end_to_end_with_spacing_only(pipeline):
    image = _mr_volume()
    output = pipeline.segment(image, spacing=(1.2, 1.2, 2.0), modality="MR", prompts="glioma")
    _check_outputs(output, image, np.diag([1.2, 1.2, 2.0, 1.0]))
    assert output.results[0].prompt.organ == "brain"


@pytest.mark.slow
def test_same_input_twice_gives_the_same_outputs(pipeline):
    image = _ct_volume((32, 32, 16))
    first = pipeline.segment(image, spacing=(2, 2, 2), modality="CT", prompts="liver tumor").results[0]
    again = pipeline.segment(image, spacing=(2, 2, 2), modality="CT", prompts="liver tumor").results[0]
    np.testing.assert_array_equal(first.mask, again.mask)
    np.testing.assert_array_equal(first.probability, again.probability)
    np.testing.assert_array_equal(first.pseudo_healthy, again.pseudo_healthy)


@pytest.mark.slow
def test_maps_left_out_are_not_computed_and_do_not_change_the_mask(pipeline, monkeypatch):
    from dataclasses import replace

    image = _ct_volume((32, 32, 16))
    every = pipeline.segment(image, spacing=(2, 2, 2), modality="CT", prompts="liver tumor").results[0]
    monkeypatch.setattr(pipeline, "config", replace(pipeline.config, maps=()))
    few = pipeline.segment(image, spacing=(2, 2, 2), modality="CT", prompts="liver tumor").results[0]
    assert every.aova_map is not None and every.pseudo_healthy is not None
    assert few.aova_map is None and few.pseudo_healthy is None
    np.testing.assert_array_equal(few.mask, every.mask)
    np.testing.assert_array_equal(few.probability, every.probability)


def test_large_volume_is_processed_in_patches(pipeline, monkeypatch):
    from dataclasses import replace

    calls = []
    from scripts import pipeline as module

    monkeypatch.setattr(pipeline, "config", replace(pipeline.config, patch_size=(64, 64, 64)))
    original = module._PatchSegmenter.__call__
    monkeypatch.setattr(module._PatchSegmenter, "__call__", lambda self, patch: calls.append(patch.shape) or original(self, patch))
    image = np.full((80, 40, 40), -900.0, dtype=np.float32)  # 2 mm grid -> 80 x 40 x 40 voxels: > one 64^3 patch
    output = pipeline.segment(image, spacing=(2, 2, 2), modality="CT", prompts="liver tumor")
    assert len(calls) >= 2 and all(max(s[2:]) <= 64 for s in calls)
    assert output.results[0].mask.shape == image.shape


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"modality": "PET"}, "unknown modality"),
        ({"prompts": []}, "at least one prompt"),
        ({"prompts": "  "}, "prompt is empty"),
        ({"spacing": None}, "spacing or the affine"),
    ],
)
def test_bad_arguments_raise_one_clear_error(pipeline, kwargs, message):
    arguments = {"modality": "CT", "prompts": "liver tumor", "spacing": (1, 1, 1), **kwargs}
    with pytest.raises(ValueError, match=message):
        pipeline.segment(np.zeros((16, 16, 16), dtype=np.float32), **arguments)


@pytest.mark.parametrize(
    "config,message",
    [
        (PipelineConfig(num_steps=0), "num_steps"),
        (PipelineConfig(strength=0), "strength"),
        (PipelineConfig(patch_size=(60, 64, 64)), "multiples of 16"),
        (PipelineConfig(overlap=1.0), "overlap"),
        (PipelineConfig(maps=("aova_map", "residual")), "maps must be a subset"),
    ],
)
def test_bad_knobs_name_the_knob_and_its_range(config, message):
    from scripts.foundation import get_profile

    with pytest.raises(ValueError, match=message):
        config.validated(get_profile("mini"))


def test_validation_turns_text_settings_into_their_vocabularies():
    from scripts.foundation import PROFILES, SchedulerKind
    from scripts.pipeline import OutputMap

    config = PipelineConfig(scheduler="ddpm", maps=["pseudo_healthy"]).validated(PROFILES["mini"])
    assert config.scheduler is SchedulerKind.DDPM
    assert config.maps == (OutputMap.PSEUDO_HEALTHY,) and isinstance(config.maps[0], OutputMap)
    with pytest.raises(UserError, match=r"maps must be a subset of \['aova_map', 'pseudo_healthy'\], got"):
        PipelineConfig(maps=("aova_map", "residual")).validated(PROFILES["mini"])
