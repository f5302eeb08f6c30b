"""Write a file under a temporary name in its folder, then rename: readers never see a partial file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(temporary_path)`` and rename the result to ``path``.

    The temporary name keeps the final suffixes (``.nii.gz``, ``.json``) because writers such as
    nibabel choose the format from them. Permissions follow the umask, as ``open`` would give.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix="".join(path.suffixes))
    os.close(handle)
    try:
        write(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
