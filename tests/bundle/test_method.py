"""The patch step shared by inference and training (scripts.method)."""

import pytest
import torch

from scripts.foundation import PROFILES, modality_class_label, spacing_condition
from scripts.method import PatchSettings, pseudo_healthy_inputs, segment_patch
from scripts.pipeline import _INPAINTED_REGION, OutputMap, PipelineConfig, _patch_key, _PatchSegmenter, build_pipeline
from scripts.preprocessing import Modality
from scripts.training import RefinerIteration


@pytest.fixture(scope="module")
def pipeline(text_encoder):
    # A low coarse threshold so that the untrained AOVA map gives a region and inpainting runs.
    return build_pipeline(PROFILES["mini"], device="cpu", text_encoder=text_encoder, config=PipelineConfig(num_steps=2, coarse_threshold=0.3, seed=4))


def _patch():
    generator = torch.Generator().manual_seed(0)
    patch = 0.45 + 0.05 * torch.randn(1, 1, 32, 32, 32, generator=generator)
    patch[..., 10:20, 10:20, 10:20] -= 0.04
    return patch.clamp(0, 1)


def test_training_sees_what_inference_sees_for_the_same_patch(pipeline, text_encoder):
    patch = _patch()
    prompt = pipeline.prompt_builder.build("kidney tumor")
    embedding = text_encoder.embed_prompt(prompt)
    spacing = (2.0, 2.0, 2.0)
    # Inference: the sliding-window predictor on one patch.
    from scripts.pipeline import StageTimer

    predictor = _PatchSegmenter(pipeline, [embedding], Modality.CT, spacing, StageTimer())
    inferred = predictor(patch)
    assert inferred[_patch_key(_INPAINTED_REGION, 0)].any(), "the test needs a region to inpaint"
    # Training: the refiner's inputs, with the same networks, settings and diffusion seed.
    iteration = RefinerIteration(
        pipeline.vae,
        pipeline.unet,
        pipeline.scheduler,
        pipeline.scale_factor,
        text_encoder,
        num_steps=pipeline.config.num_steps,
        strength=pipeline.config.strength,
        coarse_threshold=pipeline.config.coarse_threshold,
        coarse_dilation=pipeline.config.coarse_dilation,
        seed=pipeline.config.seed,
        profile=pipeline.profile,
    )
    aova_map, pseudo_healthy, residuals = iteration.residual_inputs(
        pipeline.heads,
        patch,
        embedding.embeddings,
        embedding.abnormal,
        spacing_condition(spacing, 1, "cpu"),
        torch.tensor([modality_class_label(Modality.CT)]),
    )
    torch.testing.assert_close(aova_map.float(), inferred[_patch_key(OutputMap.AOVA_MAP, 0)])
    torch.testing.assert_close(pseudo_healthy.float(), inferred[_patch_key(OutputMap.PSEUDO_HEALTHY, 0)])
    # And the refiner on those inputs gives the pipeline's probability.
    with torch.no_grad():
        logits = pipeline.heads.refiner(patch, pseudo_healthy, aova_map, residuals)
    coarse = inferred[_patch_key(_INPAINTED_REGION, 0)]
    torch.testing.assert_close(torch.sigmoid(logits) * coarse, inferred[_patch_key(OutputMap.PROBABILITY, 0)])


def test_no_region_means_no_inpainting_and_zero_residuals(pipeline, text_encoder):
    patch = _patch()
    embedding = text_encoder.embed_prompt(pipeline.prompt_builder.build("lung tumor"))
    settings = PatchSettings(coarse_threshold=0.999999)
    features = pipeline.foundation.encode(patch)
    kwargs = dict(spacing=spacing_condition((2.0,) * 3, 1, "cpu"), class_labels=torch.tensor([1]), generator=torch.Generator().manual_seed(0))
    inputs = pseudo_healthy_inputs(pipeline.foundation, pipeline.heads, patch, features, embedding.embeddings, embedding.abnormal, settings, **kwargs)
    assert not inputs.region.any() and inputs.pseudo_healthy is patch and inputs.probability is None
    assert all(float(r.abs().max()) == 0.0 for r in inputs.residuals)
    full = segment_patch(pipeline.foundation, pipeline.heads, patch, features, embedding.embeddings, embedding.abnormal, settings, **kwargs)
    assert float(full.probability.max()) == 0.0  # confined to an empty coarse mask
