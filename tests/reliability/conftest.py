"""Fixtures of the reliability tests: the phantom every bad input is made from, written once."""

from __future__ import annotations

import json
import os
import warnings

import pytest

os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "CRITICAL")
warnings.filterwarnings("ignore", message="Current stack size", category=RuntimeWarning)

from bad_inputs import Sources  # noqa: E402

from corpus.phantom import generate_case  # noqa: E402
from tools.demo import write_ct_series  # noqa: E402

#: One prompt, one diffusion step on a 3 mm grid: a second or two per application run.
FAST_APP_CONFIG = {
    "prompts": {"CT": ["liver tumor"], "MR": ["brain tumor"]},
    "pipeline": {"num_steps": 1, "working_spacing": [3.0, 3.0, 3.0]},
}


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> Sources:
    from operators.weights import EMBEDDED_MODELS

    root = tmp_path_factory.mktemp("sources")
    case = generate_case("liver tumor", 5, size=(32, 32, 24))
    write_ct_series(case.image, case.affine, root / "series", seed=5)
    config = root / "fast_config.json"
    config.write_text(json.dumps(FAST_APP_CONFIG))
    return Sources(image=case.image, affine=case.affine, series=root / "series", app_config=config, weights=EMBEDDED_MODELS)


@pytest.fixture
def clean_environment(monkeypatch):
    """No configuration from the developer's shell leaks into a run."""
    for name in ("DIFFUGTS_APP_CONFIG", "DIFFUGTS_PROMPTS", "DIFFUGTS_SERIES_RULES", "HOLOSCAN_INPUT_PATH", "HOLOSCAN_OUTPUT_PATH", "HOLOSCAN_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
