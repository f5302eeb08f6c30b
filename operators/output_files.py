"""Output files appear whole or not at all: each is written under a temporary name and renamed.

The output folder is checked before any work starts, so an unwritable folder is a one-line error
at once rather than a crash after the model has run.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from scripts.errors import UserError

__all__ = ["atomic_path", "prepare_output_folder"]


def prepare_output_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed; ``UserError`` naming it when it cannot be created or written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the output folder {folder}: {error.strerror or error}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"the output folder {folder} is not writable")
    return folder


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
        partial.unlink(missing_ok=True)
