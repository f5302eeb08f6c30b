"""Fixtures of the operator tests: a small phantom CT series written as DICOM, the SDK's DICOM
operators run by hand (no graph), and one fast DiffuGTS run shared by the writer tests."""

from __future__ import annotations

import os
import warnings
from types import SimpleNamespace

import pytest

os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "CRITICAL")
warnings.filterwarnings("ignore", message="Current stack size", category=RuntimeWarning)

from operators.app_sdk import use_app_sdk  # noqa: E402

use_app_sdk()  # the App SDK lives beside MONAI in a checkout (operators.app_sdk)

from monai.deploy.core import Fragment  # noqa: E402
from operator_helpers import PROMPTS, load_selection  # noqa: E402

from corpus.phantom import generate_case  # noqa: E402
from operators import AppConfig, DiffuGTSOperator, resolve_weights  # noqa: E402
from tools.demo import write_ct_series  # noqa: E402


@pytest.fixture(scope="session")
def fragment():
    return Fragment()


@pytest.fixture(scope="session")
def phantom_ct(tmp_path_factory):
    """A 40x40x24 phantom CT with a liver tumor, as a DICOM series (2 mm voxels)."""
    case = generate_case("liver tumor", 3, size=(40, 40, 24))
    folder = tmp_path_factory.mktemp("phantom_ct")
    files = write_ct_series(case.image, case.affine, folder, seed=3)
    return SimpleNamespace(case=case, folder=folder, files=files)


@pytest.fixture(scope="session")
def fast_config():
    return AppConfig.from_mapping({"prompts": {"CT": list(PROMPTS), "MR": ["brain tumor"]}, "pipeline": {"num_steps": 1}})


@pytest.fixture(scope="session")
def diffugts_operator(fragment, fast_config):
    return DiffuGTSOperator(fragment, config=fast_config, weights=resolve_weights(None, explicit=False), name="test_diffugts")


@pytest.fixture(scope="session")
def segmentation_run(fragment, phantom_ct, diffugts_operator):
    selection, image = load_selection(fragment, phantom_ct.folder)
    return diffugts_operator.segment(image.asnumpy(), selection)
