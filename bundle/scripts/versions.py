"""Installed versions of the packages that shape a result, for reports and provenance records."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata

__all__ = ["package_versions"]


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Python's version and each distribution's in ``names`` (None where it is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
