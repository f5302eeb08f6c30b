"""The MAP description (app.yaml) and layout: checked with the packager's own readers, and the
application run from a staged copy of the MAP's folders the way the container runs it."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from app_helpers import ROOT, dciodvfy_errors

import operators

SEG = "diffugts_seg.dcm"


def test_app_yaml_is_read_by_the_packager():
    from holoscan_cli.packager.config_reader import ApplicationConfiguration

    config = ApplicationConfiguration()
    config.read(ROOT / "app.yaml")
    assert "DiffuGTS" in config.title()
    assert config._application_object["version"] == operators.__version__
    assert config._resource_object["cpu"] >= 1 and "memory" in config._resource_object


def test_app_yaml_pins_equal_requirements():
    from holoscan_cli.packager.config_reader import ApplicationConfiguration

    config = ApplicationConfiguration()
    config.read(ROOT / "app.yaml")
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    packages = config.pip_packages()
    assert packages
    for requirement in packages:
        name, version = requirement.split("==")
        assert pins.get(name) == version, f"{requirement} differs from requirements.txt"


def test_app_folder_is_a_python_module_application():
    from holoscan_cli.packager.parameters import PackageBuildParameters

    parameters = PackageBuildParameters()
    parameters.application = ROOT / "app"
    assert parameters.application_type.name == "PythonModule"


def _write_random_weights(folder: Path) -> None:
    """The three weights files, of random networks, in the official formats (a missing one is refused)."""
    from scripts.foundation import PROFILES, build_diffusion_unet, build_vae
    from scripts.heads import heads_for_profile

    folder.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(build_vae(PROFILES["mini"]).state_dict(), folder / "autoencoder.pt")
    torch.save({"unet_state_dict": build_diffusion_unet(PROFILES["mini"]).state_dict(), "scale_factor": 1.0}, folder / "diffusion_unet.pt")
    torch.save(heads_for_profile(PROFILES["mini"]).state_dict(), folder / "diffugts_heads.pt")


@pytest.mark.slow
def test_staged_map_runs_with_the_holoscan_environment(phantom_ct, fast_config_file, tmp_path):
    from holoscan_cli.packager.models import Models

    stage = tmp_path / "opt-holoscan"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "app", stage / "app", ignore=ignore)
    shutil.copytree(ROOT / "operators", stage / "lib" / "operators", ignore=ignore)
    shutil.copytree(ROOT / "bundle" / "scripts", stage / "lib" / "scripts", ignore=ignore)
    shutil.copytree(ROOT / "bundle" / "configs", stage / "lib" / "configs", ignore=ignore)  # the knobs' defaults
    _write_random_weights(tmp_path / "weights" / "mini")
    models = Models().build(tmp_path / "weights")
    assert list(models) == ["mini"]
    for name, path in models.items():  # what `monai-deploy package --models` copies
        shutil.copytree(path, stage / "models" / name)

    environ = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": str(stage / "lib"),
        "HOLOSCAN_INPUT_PATH": str(phantom_ct.folder),
        "HOLOSCAN_OUTPUT_PATH": str(tmp_path / "output"),
        "HOLOSCAN_MODEL_PATH": str(stage / "models"),
        "DIFFUGTS_APP_CONFIG": str(fast_config_file),
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run([sys.executable, str(stage / "app")], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"SEG: {tmp_path / 'output' / SEG}" in result.stdout
    assert dciodvfy_errors(tmp_path / "output" / SEG) == []
    record = json.loads((tmp_path / "output" / "diffugts_provenance.json").read_text())
    assert record["weights_source"] == "models path" and record["profile"] == "mini"
    assert record["weights"]["vae"].startswith("autoencoder.pt sha256:")
    assert record["weights"]["heads"].startswith("diffugts_heads.pt sha256:")
