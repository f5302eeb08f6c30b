"""Package versions for reports: installed distributions by name, None for an absent one."""

import platform
from importlib import metadata

from scripts.versions import package_versions


def test_installed_packages_report_their_version_and_absent_ones_none():
    versions = package_versions(["monai", "no-such-distribution-xyz"])
    assert versions == {"python": platform.python_version(), "monai": metadata.version("monai"), "no-such-distribution-xyz": None}
