"""The bundle does not use Holoscan: neither its scripts nor a bundle command may import it.

Where Holoscan comes from: ``import monai`` imports every subpackage of the ``monai`` folder
(``monai/__init__.py``, ``load_submodules``), and the MONAI Deploy App SDK installs itself there as
``monai.deploy``, whose ``__init__`` imports ``holoscan.conditions``. Installed that way, any
``python -m monai.bundle`` starts Holoscan and prints its stack-size RuntimeWarning before a line
of the bundle's code runs. So ``tools/setup.sh`` installs the SDK into a folder of its own, which
only the app and the operators put on MONAI's path (``operators/app_sdk.py``). The bundle's own
code imports neither; the Model Zoo's environments have no App SDK.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
#: MONAI as installed without the App SDK: ``import monai`` then skips ``monai.deploy``.
WITHOUT_APP_SDK = "import sys; sys.modules['monai.deploy'] = None\n"
#: Prints, at exit, the Holoscan and App SDK modules the process imported.
REPORT_AT_EXIT = textwrap.dedent("""\
    import atexit, sys
    atexit.register(lambda: print("IMPORTED", sorted(n for n, m in sys.modules.items() if m is not None
                                                     and (n.split(".")[0] == "holoscan" or n.startswith("monai.deploy")))))
""")
BUNDLE_COMMAND = ["verify_metadata", "--meta_file", "configs/metadata.json", "--filepath", "docs/meta_schema_20240725.json"]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=BUNDLE, capture_output=True, text=True, timeout=300)


def _imported(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return [line for line in result.stdout.splitlines() if line.startswith("IMPORTED")][-1]


def test_importing_every_module_of_the_bundle_scripts_imports_no_holoscan():
    code = (
        WITHOUT_APP_SDK
        + REPORT_AT_EXIT
        + textwrap.dedent("""\
        import importlib, pkgutil, scripts
        for module in pkgutil.walk_packages(scripts.__path__, "scripts."):
            importlib.import_module(module.name)
    """)
    )
    assert _imported(_python(code)) == "IMPORTED []"


def _bundle_command(prefix: str) -> subprocess.CompletedProcess:
    code = prefix + REPORT_AT_EXIT + f"import runpy; sys.argv = ['monai.bundle', *{BUNDLE_COMMAND!r}]\n"
    return _python(code + "runpy.run_module('monai.bundle', run_name='__main__', alter_sys=True)")


@pytest.mark.slow
def test_a_bundle_command_imports_no_holoscan_where_monai_has_no_app_sdk():
    result = _bundle_command(WITHOUT_APP_SDK)
    assert _imported(result) == "IMPORTED []" and "holoscan" not in result.stderr


@pytest.mark.slow
def test_a_bundle_command_in_the_project_environment_imports_no_holoscan():
    # tools/setup.sh keeps the App SDK out of MONAI's folder (operators/app_sdk.py).
    result = _bundle_command("")
    assert _imported(result) == "IMPORTED []" and "holoscan" not in result.stderr
