"""An output file appears whole or not at all: it is written under a temporary name and renamed.

(The set of one run's outputs is committed together by ``scripts.output_staging``.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from scripts.errors import UserError

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    A reader (a PACS bridge polling the folder, a user) never sees a half-written file, and a
    failure leaves nothing behind. A file-system failure (disk full, folder removed meanwhile)
    becomes a ``UserError`` naming the file.

    Example:
        >>> with atomic_path(tmp / "report.json") as partial:   # doctest: +SKIP
        ...     partial.write_text("{}")
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield partial
        os.replace(partial, path)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        # NotADirectoryError too: when the parent is a file the partial never existed.
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            partial.unlink()
