"""Fetch the real volumes the tests use, so that the tests themselves need no network.

    python -m tools.fetch_test_data

``make test`` runs this after the set-up and before the tests, which then run inside
``unshare --net`` (no network). Already cached volumes are only verified (SHA-256). A volume that
cannot be fetched here is reported and skipped: the tests that need it are then skipped too,
saying why.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bundle") not in sys.path:
    sys.path.append(str(ROOT / "bundle"))

from corpus.real_anatomy import FetchError, RealSource, fetch  # noqa: E402


def main() -> int:
    missing = []
    for source in RealSource:
        try:
            fetch(source)
        except FetchError as error:
            missing.append(source.value)
            print(f"fetch_test_data: cannot fetch {source.value} here ({error}); its tests will be skipped", file=sys.stderr)
    print(f"fetch_test_data: {len(RealSource) - len(missing)} of {len(RealSource)} real volumes ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
