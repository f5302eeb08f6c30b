"""The weights a run uses: the models path or the embedded default, a missing file refused."""

import pytest

from operators.weights import EMBEDDED_MODELS, resolve_weights
from scripts.pipeline import WEIGHT_FILES


def test_without_models_path_the_embedded_default_is_used(tmp_path):
    for path in (None, tmp_path / "models"):
        choice = resolve_weights(path, explicit=False)
        assert (choice.profile.name, choice.source) == ("mini", "embedded default")
        assert choice.folder in (EMBEDDED_MODELS, None)


def _weights_folder(folder, names=None):
    folder.mkdir(parents=True)
    for name in WEIGHT_FILES.values() if names is None else names:
        (folder / name).write_bytes(b"")
    return folder


def test_map_layout_with_one_model_folder_is_found(tmp_path):
    _weights_folder(tmp_path / "maisi")
    choice = resolve_weights(tmp_path, explicit=True)
    assert (choice.profile.name, choice.folder, choice.source) == ("maisi", tmp_path / "maisi", "models path")
    assert resolve_weights(tmp_path / "maisi", explicit=True, profile="mini").profile.name == "mini"


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


def test_a_weights_file_missing_from_the_folder_is_refused_naming_it(tmp_path):
    # The networks would run on random weights: a confident whole-field "tumor", exit status 0.
    folder = _weights_folder(tmp_path / "M" / "mini", ["autoencoder.pt", "diffusion_unet.pt"])
    with pytest.raises(ValueError, match=f"weights file\\(s\\) {folder / 'diffugts_heads.pt'} missing \\(models path\\).*allow_random_weights"):
        resolve_weights(tmp_path / "M", explicit=True)
    choice = resolve_weights(tmp_path / "M", explicit=True, allow_random=True)  # the research switch
    assert (choice.folder, choice.profile.name) == (folder, "mini")


def test_missing_embedded_weights_are_refused_too(tmp_path, monkeypatch):
    from operators import weights

    monkeypatch.setattr(weights, "EMBEDDED_MODELS", tmp_path / "absent" / "mini")
    with pytest.raises(ValueError, match="autoencoder.pt, .*diffusion_unet.pt, .*diffugts_heads.pt missing \\(embedded default\\)"):
        resolve_weights(None, explicit=False)
    assert resolve_weights(None, explicit=False, allow_random=True).folder is None
