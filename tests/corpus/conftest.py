"""Fixtures of the corpus tests: real volumes (skipped only when unfetchable), a tiny corpus."""

from __future__ import annotations

import pytest
from corpus_cases import real_volume_cached

from corpus import FetchError, RealSource


@pytest.fixture
def real_volume():
    """Load a real volume from the cache, fetching it first; skip only if the fetch is impossible."""

    def load(source: RealSource):
        try:
            return real_volume_cached(RealSource(source))
        except FetchError as error:
            pytest.skip(f"cannot fetch {RealSource(source).value} here: {error}")

    return load


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A corpus written by the command line: one case per category at 32^3, real volumes if fetchable."""
    from corpus.__main__ import main

    folder = tmp_path_factory.mktemp("corpus")
    arguments = ["--output", str(folder), "--cases-per-category", "1", "--size", "32", "--ct-spacing", "8", "--mr-spacing", "6", "--quiet"]
    try:
        for source in RealSource:
            real_volume_cached(source)
    except FetchError:
        arguments.append("--no-real")
    assert main(arguments) == 0
    return folder
