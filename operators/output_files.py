"""An output file appears whole or not at all (``scripts.atomic``), and a file-system failure is
one error line naming the file.

(The set of one run's outputs is committed together by ``scripts.output_staging``.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from scripts import atomic
from scripts.errors import UserError

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``scripts.atomic.atomic_path`` in a folder created if missing; a file-system failure (disk
    full, folder removed meanwhile, a file where the folder should be) becomes a ``UserError``.

    Example:
        >>> with atomic_path(tmp / "report.json") as partial:   # doctest: +SKIP
        ...     partial.write_text("{}")
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as partial:
            yield partial
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
