"""Cached small phantoms and real volumes shared by the corpus tests (imported by name)."""

from __future__ import annotations

from functools import lru_cache

from corpus import RealSource, generate_case, load_real_volume, parse_category

#: Small grids that keep the phantoms' field of view (256 mm CT, 192 mm MR) at a fraction of the cost.
SMALL = {"CT": {"size": (64, 64, 64), "spacing": (4.0, 4.0, 4.0)}, "MR": {"size": (64, 64, 64), "spacing": (3.0, 3.0, 3.0)}}
MEDIUM = {"CT": {"size": (96, 96, 96), "spacing": (8.0 / 3.0,) * 3}, "MR": {"size": (96, 96, 96), "spacing": (2.0, 2.0, 2.0)}}


@lru_cache(maxsize=64)
def small_case(category: str, seed: int):
    return generate_case(category, seed, **SMALL[parse_category(category).modality.value])


@lru_cache(maxsize=64)
def medium_case(category: str, seed: int):
    return generate_case(category, seed, **MEDIUM[parse_category(category).modality.value])


@lru_cache(maxsize=8)
def real_volume_cached(source: RealSource):
    return load_real_volume(source)
