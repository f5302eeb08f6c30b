"""The App SDK is found beside MONAI (tools/setup.sh's folder) and only where the app asks for it."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from operators.app_sdk import APP_SDK_FOLDER, use_app_sdk

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_setup_keeps_the_app_sdk_out_of_monais_folder_and_use_app_sdk_brings_it_back():
    if not (APP_SDK_FOLDER / "monai" / "deploy").is_dir():
        pytest.skip(f"the App SDK is installed another way here (not in {APP_SDK_FOLDER})")
    result = _run("""
        import importlib.util, importlib.metadata, sys, monai
        sys.path.append("bundle")  # the operators import the bundle's scripts, as app/__main__.py arranges
        print("BEFORE", importlib.util.find_spec("monai.deploy") is not None)
        from operators.app_sdk import use_app_sdk
        use_app_sdk()
        import monai.deploy
        print("AFTER", monai.deploy.__file__, importlib.metadata.version("monai-deploy-app-sdk"))
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "BEFORE False" in result.stdout
    assert f"AFTER {APP_SDK_FOLDER / 'monai' / 'deploy' / '__init__.py'} 4.0.0" in result.stdout


def test_without_any_app_sdk_the_error_says_to_run_setup(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ModuleNotFoundError, match="make setup"):
        use_app_sdk(tmp_path)
