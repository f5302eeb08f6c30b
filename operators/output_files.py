"""Output files appear whole or not at all: each is written under a temporary name and renamed."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    A reader (a PACS bridge polling the folder, a user) never sees a half-written file, and a
    failure leaves nothing behind.

    Example:
        >>> with atomic_path(tmp / "report.json") as partial:   # doctest: +SKIP
        ...     partial.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
