import numpy as np
import pydicom
import pytest
from operator_helpers import PROMPTS, load_selection

from operators import AppConfig
from operators.diffugts_operator import EMBEDDED_MODELS, resolve_weights
from operators.volume_geometry import series_affine, slices_to_xyz
from scripts import Modality
from scripts.pipeline import WEIGHT_FILES


def test_without_models_path_the_embedded_default_is_used(tmp_path):
    for path in (None, tmp_path / "models"):
        choice = resolve_weights(path, explicit=False)
        assert (choice.profile, choice.source) == ("mini", "embedded default")
        assert choice.folder in (EMBEDDED_MODELS, None)


def _weights_folder(folder, names=None):
    folder.mkdir(parents=True)
    for name in WEIGHT_FILES.values() if names is None else names:
        (folder / name).write_bytes(b"")
    return folder


def test_map_layout_with_one_model_folder_is_found(tmp_path):
    _weights_folder(tmp_path / "maisi")
    choice = resolve_weights(tmp_path, explicit=True)
    assert (choice.profile, choice.folder, choice.source) == ("maisi", tmp_path / "maisi", "models path")
    assert resolve_weights(tmp_path / "maisi", explicit=True, profile="mini").profile == "mini"


def test_empty_models_folder_falls_back_only_when_not_named_by_the_user(tmp_path):
    assert resolve_weights(tmp_path, explicit=False).source == "embedded default"
    with pytest.raises(ValueError, match="holds none of autoencoder.pt, diffusion_unet.pt, diffugts_heads.pt"):
        resolve_weights(tmp_path, explicit=True)


def test_bad_models_paths_are_refused(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file"):
        resolve_weights(tmp_path / "weights.pt", explicit=True)
    with pytest.raises(ValueError, match="does not exist"):
        resolve_weights(tmp_path / "absent", explicit=True)


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


def test_a_weights_file_missing_from_the_folder_is_refused_naming_it(tmp_path):
    # The networks would run on random weights: a confident whole-field "tumor", exit status 0.
    folder = _weights_folder(tmp_path / "M" / "mini", ["autoencoder.pt", "diffusion_unet.pt"])
    with pytest.raises(ValueError, match=f"weights file\\(s\\) {folder / 'diffugts_heads.pt'} missing \\(models path\\).*allow_random_weights"):
        resolve_weights(tmp_path / "M", explicit=True)
    choice = resolve_weights(tmp_path / "M", explicit=True, allow_random=True)  # the research switch
    assert (choice.folder, choice.profile) == (folder, "mini")


def test_missing_embedded_weights_are_refused_too(tmp_path, monkeypatch):
    from operators import diffugts_operator

    monkeypatch.setattr(diffugts_operator, "EMBEDDED_MODELS", tmp_path / "absent" / "mini")
    with pytest.raises(ValueError, match="autoencoder.pt, .*diffusion_unet.pt, .*diffugts_heads.pt missing \\(embedded default\\)"):
        resolve_weights(None, explicit=False)
    assert resolve_weights(None, explicit=False, allow_random=True).folder is None


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
