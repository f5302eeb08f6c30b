"""Make ``monai.deploy`` importable where the App SDK lives beside MONAI instead of inside it.

The MONAI Deploy App SDK installs itself into MONAI's own package folder (``monai/deploy``), and
``import monai`` imports every subpackage there (``monai/__init__.py``, ``load_submodules``); so in
an environment that holds both, every ``python -m monai.bundle`` command would import the App SDK
and Holoscan with it, and print Holoscan's stack-size warning, though the bundle uses neither.
``tools/setup.sh`` therefore installs the SDK into a folder of its own, ``<venv>/app-sdk``, and
only the app and the operators (this package's ``__init__``) put it on MONAI's path, with the
standard library's mechanism for a package spread over several folders (``pkgutil.extend_path``).
Where the SDK is installed the usual way (a MAP, whose packager installs it), nothing changes.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import sys
from pathlib import Path

__all__ = ["APP_SDK_FOLDER", "use_app_sdk"]

#: Where ``tools/setup.sh`` installs the App SDK (``pip install --target``); override with
#: ``DIFFUGTS_APP_SDK``.
APP_SDK_FOLDER = Path(os.environ.get("DIFFUGTS_APP_SDK", Path(sys.prefix) / "app-sdk"))


def use_app_sdk(folder: Path = APP_SDK_FOLDER) -> None:
    """Put the App SDK's ``monai/deploy`` on MONAI's package path, unless it is there already.

    Raises:
        ModuleNotFoundError: no App SDK in MONAI's folder nor in ``folder`` (run ``make setup``).
    """
    import monai

    if importlib.util.find_spec("monai.deploy") is not None:
        return
    if (folder / "monai" / "deploy").is_dir():
        if str(folder) not in sys.path:
            sys.path.append(str(folder))  # after site-packages: MONAI itself still comes from there
        monai.__path__ = pkgutil.extend_path(monai.__path__, monai.__name__)
    if importlib.util.find_spec("monai.deploy") is None:
        raise ModuleNotFoundError(f"the MONAI Deploy App SDK is not installed (looked in MONAI's folder and in {folder}); run `make setup`")
