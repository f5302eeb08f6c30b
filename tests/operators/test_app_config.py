import json

import pytest

from operators.app_config import ENV_APP_CONFIG, ENV_PROMPTS, ENV_SERIES_RULES, AppConfig
from scripts import Modality

SHIPPED = {"prompts": {"CT": ["liver tumor"], "MR": ["brain tumor"]}, "pipeline": {"seed": 0}}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(SHIPPED))
    return path


def test_prompts_come_from_the_file(config_file):
    config = AppConfig.load(config_file, environ={})
    assert config.prompts_for("CT") == ("liver tumor",)
    assert config.prompts_for("mri") == ("brain tumor",)


def test_environment_replaces_prompts_of_the_modalities_it_names(config_file):
    environ = {ENV_PROMPTS: '{"CT": ["kidney tumor", "pancreas tumor"]}'}
    config = AppConfig.load(config_file, environ=environ)
    assert config.prompts_for(Modality.CT) == ("kidney tumor", "pancreas tumor")
    assert config.prompts_for(Modality.MR) == ("brain tumor",)


def test_environment_names_another_config_file(config_file, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"prompts": {"MR": ["glioma"]}, "pipeline": {"num_steps": 2, "working_spacing": [3, 3, 3]}}))
    config = AppConfig.load(config_file, environ={ENV_APP_CONFIG: str(other)})
    assert config.prompts_for("MR") == ("glioma",)
    pipeline = config.pipeline_config()
    assert pipeline.num_steps == 2 and pipeline.working_spacing == (3, 3, 3) and pipeline.progress is False
    with pytest.raises(ValueError, match="no prompts are configured for CT"):
        config.prompts_for("CT")


def test_series_rules_path_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "rules.json").write_text("{}")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**SHIPPED, "series_rules": "rules.json"}))
    assert AppConfig.load(path, environ={}).series_rules == (tmp_path / "rules.json").resolve()


def test_series_rules_from_the_environment_must_exist(config_file, tmp_path):
    with pytest.raises(ValueError, match="series rules file .*missing.json does not exist"):
        AppConfig.load(config_file, environ={ENV_SERIES_RULES: str(tmp_path / "missing.json")})


@pytest.mark.parametrize(
    "environ, message",
    [
        ({ENV_PROMPTS: "CT=liver tumor"}, "DIFFUGTS_PROMPTS is not valid JSON"),
        ({ENV_PROMPTS: '["liver tumor"]'}, "must be a JSON object"),
        ({ENV_PROMPTS: '{"PET": ["liver tumor"]}'}, "unknown modality 'PET'"),
        ({ENV_PROMPTS: '{"CT": [""]}'}, "list of non-empty strings"),
        ({ENV_PROMPTS: '{"CT": ["liver tumor", "liver  tumor"]}'}, "repeat an entry"),
    ],
)
def test_bad_prompt_overrides_are_refused(config_file, environ, message):
    with pytest.raises(ValueError, match=message):
        AppConfig.load(config_file, environ=environ)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"prompt": {}}, "unknown configuration key"),
        ({"pipeline": {"steps": 3}}, "unknown pipeline knob"),
        ({"profile": "large"}, "profile must be"),
        ({"device": "tpu"}, "device must be"),
        ({"montage_slices": 0}, "montage_slices must be an integer from 1 to 64"),
        ({"allow_non_dicom_files": "yes"}, "allow_non_dicom_files must be true or false"),
        ({"prompts": {"CT": [f"finding {i}" for i in range(17)]}}, "at most 16 prompts"),
        ({"pipeline": {"working_spacing": 3}}, "working_spacing must be three voxel sizes in mm"),
        ({"pipeline": {"seed": -1}}, "seed must be an integer >= 0"),
        ({"pipeline": [1]}, "pipeline must be an object"),
        ({"device": "cuda:x"}, "device must be"),
        ({"device": "cuda:99"}, "device 'cuda:99' is not available on this machine"),
        ({"series_rules": 5}, "series_rules must be the path of a rules file"),
    ],
)
def test_bad_configuration_is_refused_naming_the_key(data, message):
    with pytest.raises(ValueError, match=message):
        AppConfig.from_mapping(data)


def test_unreadable_config_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        AppConfig.load(bad, environ={})
    with pytest.raises(ValueError, match="does not exist"):
        AppConfig.load(tmp_path / "absent.json", environ={})


def test_shipped_app_config_is_valid():
    from app.app import CONFIG_PATH

    config = AppConfig.load(CONFIG_PATH, environ={})
    assert config.prompts_for("CT") and config.prompts_for("MR")
    assert config.pipeline_config().progress is False


def test_pipeline_knob_defaults_are_the_bundles_inference_config():
    # One source: every knob the app takes has its default in the bundle's inference.json, and
    # the app runs with exactly those values unless its configuration overrides them.
    from dataclasses import fields

    from app.app import CONFIG_PATH
    from operators.app_config import BUNDLE_INFERENCE_CONFIG
    from scripts import PipelineConfig

    bundle = json.loads(BUNDLE_INFERENCE_CONFIG.read_text())
    knobs = {f.name for f in fields(PipelineConfig)} - {"progress", "maps"}
    config = AppConfig.load(CONFIG_PATH, environ={})
    assert config.pipeline == {name: bundle[name] for name in knobs}
    pipeline = config.pipeline_config()
    for name in knobs:  # and the bundle's values are what PipelineConfig takes by default
        assert getattr(pipeline, name) == getattr(PipelineConfig(), name), name


def test_app_overrides_only_what_it_names_and_follows_the_bundle(tmp_path, monkeypatch):
    from operators import app_config

    bundle = json.loads(app_config.BUNDLE_INFERENCE_CONFIG.read_text())
    changed = tmp_path / "inference.json"
    changed.write_text(json.dumps({**bundle, "threshold": 0.3, "overlap": 0.5}))
    monkeypatch.setattr(app_config, "BUNDLE_INFERENCE_CONFIG", changed)
    config = AppConfig.from_mapping({"pipeline": {"overlap": 0.1}})
    assert config.pipeline["threshold"] == 0.3 and config.pipeline["overlap"] == 0.1


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda data: data.pop("strength"), "lacks the pipeline knob"),
        (lambda data: data.update(threshold="$0.5"), "must be plain values"),
    ],
)
def test_a_bundle_config_the_app_cannot_read_is_refused(tmp_path, edit, message):
    from operators import app_config

    data = json.loads(app_config.BUNDLE_INFERENCE_CONFIG.read_text())
    edit(data)
    path = tmp_path / "inference.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        app_config.bundle_knob_defaults(path)
    with pytest.raises(ValueError, match="does not exist"):
        app_config.bundle_knob_defaults(tmp_path / "absent.json")


def test_the_research_switch_is_a_boolean_off_by_default():
    assert AppConfig.from_mapping({}).allow_random_weights is False
    assert AppConfig.from_mapping({"allow_random_weights": True}).as_dict()["allow_random_weights"] is True
    with pytest.raises(ValueError, match="allow_random_weights must be true or false"):
        AppConfig.from_mapping({"allow_random_weights": "yes"})
