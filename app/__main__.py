"""Entry point: ``python app -i DICOM_DIR -o OUT [-m MODELS]``.

In a checkout the ``operators`` package and the bundle's ``scripts`` package sit beside this
folder; in a MAP they are on ``PYTHONPATH`` (``monai-deploy package --add``, see docs/app.md).
"""

import os
import sys
import warnings
from pathlib import Path

_checkout = Path(__file__).resolve().parent.parent
for _path in (_checkout, _checkout / "bundle"):
    if _path.is_dir() and str(_path) not in sys.path:
        sys.path.append(str(_path))

# Holoscan's C++ log repeats every Python exception with its stack; the app reports user mistakes
# in one line itself. HOLOSCAN_LOG_LEVEL=INFO brings the scheduler's log back.
os.environ.setdefault("HOLOSCAN_LOG_LEVEL", "CRITICAL")
# Only Python operators run here, on one scheduler thread: the default stack size suffices.
warnings.filterwarnings("ignore", message="Current stack size", category=RuntimeWarning)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from app import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
