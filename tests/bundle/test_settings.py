"""User settings reach the bundle's code as plain text; unknown settings are refused (scripts.settings)."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser, run

from scripts.settings import INFERENCE_SETTINGS

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
CONFIGS = BUNDLE / "configs"
FAST = {"num_steps": 1, "progress": False}


def _image(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "case.nii.gz"
    nib.save(nib.Nifti1Image(rng.normal(40, 20, (32, 32, 20)).astype(np.float32), np.diag([1.5, 1.5, 2.5, 1])), path)
    return path


def _run(**override):
    run(
        config_file=str(CONFIGS / "inference.json"),
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        bundle_root=str(BUNDLE),
        **override,
    )


def test_every_setting_has_a_plain_default_in_every_user_config():
    # A default that is an expression would be handed to the code as its text: derived values
    # live in items of their own (output_folder, *_weights_file).
    for name in ("inference.json", "evaluate.json", "maisi.json"):
        config = ConfigParser.load_config_file(CONFIGS / name)
        for key in INFERENCE_SETTINGS.keys() & config.keys():
            value = config[key]
            assert not (isinstance(value, str) and value.startswith(("$", "@", "%"))), f"{name}: {key} = {value!r}"
    assert INFERENCE_SETTINGS.keys() <= ConfigParser.load_config_file(CONFIGS / "inference.json").keys()


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        "$__import__('pathlib').Path({marker!r}).touch() or 'liver tumor'",
        "@bundle_root",
        "$@bundle_root",
    ],
)
def test_a_prompt_is_text_never_code_nor_a_reference(tmp_path, text):
    marker = tmp_path / "executed"
    prompt = text.format(marker=str(marker))
    image, out = _image(tmp_path), tmp_path / "out"
    _run(input_image=str(image), prompt=prompt, output_dir=str(out), **FAST)
    assert not marker.exists(), "the prompt was evaluated"
    report = json.loads((out / "case_report.json").read_text())
    assert report["prompts"][0]["prompt"] == prompt


@pytest.mark.slow
def test_a_numeric_setting_given_as_code_is_refused_as_a_value_not_run(tmp_path):
    marker = tmp_path / "executed"
    with pytest.raises(SystemExit) as stop:
        _run(
            input_image=str(_image(tmp_path)),
            prompt="liver tumor",
            output_dir=str(tmp_path / "out"),
            threshold=f"$__import__('pathlib').Path({str(marker)!r}).touch() or 0.5",
            **FAST,
        )
    assert str(stop.value.code).startswith("error: threshold must be a number in (0, 1)")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_misspelt_setting_is_refused_with_the_nearest_name(tmp_path):
    # No image is read: the settings are checked first, when the config is initialised.
    with pytest.raises(SystemExit) as stop:
        _run(input_image=str(tmp_path / "absent.nii.gz"), prompt="liver tumor", treshold=0.3, **FAST)
    assert stop.value.code == "error: unknown setting 'treshold'; did you mean 'threshold'?"


def test_an_unknown_profile_is_one_line_naming_the_valid_ones(tmp_path):
    # Resolved once, by the configs' foundation_profile item: not MONAI's instantiation traceback.
    with pytest.raises(SystemExit) as stop:
        _run(input_image=str(_image(tmp_path)), prompt="liver tumor", output_dir=str(tmp_path / "out"), profile="mnii", **FAST)
    assert stop.value.code == "error: unknown profile 'mnii': expected one of maisi, mini"
    assert not (tmp_path / "out").exists()


def test_the_command_line_prints_one_line_for_a_misspelt_setting(tmp_path):
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(CONFIGS / "inference.json"),
        "--bundle_root",
        str(BUNDLE),
        "--input_image",
        str(tmp_path / "a.nii.gz"),
        "--prompt",
        "liver tumor",
        "--strenght",
        "0.5",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: unknown setting 'strenght'; did you mean 'strength'?"


@pytest.mark.slow
def test_true_and_false_given_as_text_are_booleans(tmp_path):
    # The command line hands "--evaluate false" over as the text "false", which is truthy.
    out = tmp_path / "out"
    _run(input_image=str(_image(tmp_path)), prompt="liver tumor", output_dir=str(out), evaluate="false", progress="False", num_steps=1)
    assert sorted(p.name for p in out.iterdir()) == ["case_report.json", "case_seg.nii.gz"]  # no evaluation asked


def test_a_boolean_setting_that_is_neither_is_refused(tmp_path):
    with pytest.raises(SystemExit) as stop:
        _run(input_image=str(tmp_path / "a.nii.gz"), prompt="liver tumor", progress="sometimes")
    assert stop.value.code == "error: progress must be true or false, got 'sometimes'"
