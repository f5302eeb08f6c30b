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
        ({"pipeline": {"seed": -1}}, "seed must be a number >= 0"),
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
