import numpy as np
import pydicom
import pytest
from operator_helpers import PROMPTS, load_selection

from operators import AppConfig
from operators.volume_geometry import series_affine, slices_to_xyz
from scripts import Modality


def test_run_holds_one_result_per_prompt_on_the_source_slices(segmentation_run, phantom_ct):
    run = segmentation_run
    assert run.modality is Modality.CT
    assert [r.prompt.prompt for r in run.results] == list(PROMPTS)
    assert run.volume.shape == (len(phantom_ct.files), 40, 40)
    assert len(run.source_datasets) == run.volume.shape[0]
    np.testing.assert_allclose(run.affine, series_affine(run.source_datasets), rtol=1e-6)
    for index, result in enumerate(run.results):
        assert result.mask.shape == slices_to_xyz(run.volume).shape
        np.testing.assert_array_equal(run.mask_slices(index), result.mask.transpose(2, 1, 0))
        assert run.aova_slices(index).shape == run.volume.shape
    assert set(run.weights) == {"vae", "diffusion", "heads"}
    assert run.pipeline_config["num_steps"] == 1 and run.seconds > 0


def test_source_slices_are_in_volume_order(segmentation_run):
    positions = [np.dot(np.cross(*np.reshape(ds.ImageOrientationPatient, (2, 3))), ds.ImagePositionPatient) for ds in segmentation_run.source_datasets]
    assert np.all(np.diff(positions) > 0)
    first = pydicom.dcmread(segmentation_run.source_datasets[0].filename)
    np.testing.assert_array_equal(segmentation_run.volume[0], first.pixel_array.astype(np.float32))


def test_operator_output_is_the_pipeline_output(fragment, phantom_ct, diffugts_operator, segmentation_run):
    selection, image = load_selection(fragment, phantom_ct.folder)
    volume = image.asnumpy().astype(np.float32)
    direct = diffugts_operator.pipeline.segment(slices_to_xyz(volume), affine=segmentation_run.affine, modality="CT", prompts=list(PROMPTS))
    for expected, result in zip(direct.results, segmentation_run.results):
        np.testing.assert_array_equal(expected.mask, result.mask)
        np.testing.assert_array_equal(expected.aova_map, result.aova_map)


def test_modality_without_prompts_is_a_clear_error(fragment, phantom_ct, diffugts_operator, monkeypatch):
    selection, image = load_selection(fragment, phantom_ct.folder)
    monkeypatch.setattr(diffugts_operator, "config", AppConfig.from_mapping({"prompts": {"MR": ["brain tumor"]}}))
    with pytest.raises(ValueError, match="no prompts are configured for CT"):
        diffugts_operator.segment(image.asnumpy(), selection)


def test_volume_that_does_not_fit_the_slices_is_refused(fragment, phantom_ct, diffugts_operator):
    selection, image = load_selection(fragment, phantom_ct.folder)
    with pytest.raises(ValueError, match="cannot place the masks"):
        diffugts_operator.segment(image.asnumpy()[1:], selection)


def test_untrained_networks_are_named(segmentation_run):
    import dataclasses

    assert segmentation_run.untrained == []
    run = dataclasses.replace(segmentation_run, weights={**segmentation_run.weights, "heads": "random-init(seed=0)"})
    assert run.untrained == ["heads"]


def test_an_mr_series_of_ct_numbers_is_segmented_with_a_warning(fragment, phantom_ct, diffugts_operator, caplog):
    # The bundle's plausibility checks (scripts.preprocessing), named with the series.
    selection, image = load_selection(fragment, phantom_ct.folder)
    series = selection[0].selected_series[0].series
    series.Modality = "MR"  # what a wrong Modality in the files gives the selector and the model step
    try:
        run = diffugts_operator.segment(image.asnumpy(), selection)
    finally:
        series.Modality = "CT"
    assert run.modality is Modality.MR and len(run.warnings) == 1
    assert run.warnings[0].startswith(f"series {series.SeriesInstanceUID} (MR): the intensities look like CT in Hounsfield units")
    assert run.warnings[0] in caplog.text
    assert diffugts_operator.segment(image.asnumpy(), selection).warnings == []  # the same values as CT


def test_the_model_step_logs_its_progress_over_the_patches(fragment, phantom_ct, diffugts_operator, caplog, monkeypatch):
    import functools
    import logging

    from operators import diffugts_operator as module
    from operators.stages import patch_progress

    monkeypatch.setattr(module, "patch_progress", functools.partial(patch_progress, every_s=0))  # at once, not after 10 s
    caplog.set_level(logging.INFO)
    selection, image = load_selection(fragment, phantom_ct.folder)
    diffugts_operator.segment(image.asnumpy(), selection)
    assert "patches: 1/1 (100%)" in caplog.text and "segmentation: done in" in caplog.text
