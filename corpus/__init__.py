"""The corpus the benchmark and training use: phantoms, real healthy anatomy, zero-shot splits.

Modules, one job each: ``categories`` (what a case shows, the protocol groups), ``labels`` (organ
label ids), ``geometry`` (grids, RAS affines), ``shapes`` (implicit shapes), ``anatomy_ct`` /
``anatomy_mr`` (procedural torso and head), ``lesions`` (tumors from the attribute vocabulary),
``realism`` (blur, noise, texture, bias field), ``phantom`` (one case from a seed),
``real_anatomy`` (fetch, verify, load real volumes), ``quality`` (contrast and noise),
``datalists`` (splits, seeds, decathlon JSON), ``writer`` (NIfTI and JSON files), ``montage``
(PNG for people), ``build`` (the whole corpus; ``python -m corpus``).

The corpus is a development tool: it lives beside ``benchmarks/``, outside the shipped bundle,
and uses the bundle's ``scripts`` package (modalities, organ labels, lesion synthesis, atomic
writes), which it puts on the path when run from the repository.

Specification: shared/docs/benchmark.md.
"""

import sys as _sys
from pathlib import Path as _Path

_BUNDLE = str(_Path(__file__).resolve().parents[1] / "bundle")
if _BUNDLE not in _sys.path:
    _sys.path.insert(0, _BUNDLE)

# The bundle must be importable first (scripts.lesion_synthesis is shared with training).
from .build import CorpusConfig, build_corpus  # noqa: E402
from .categories import HEALTHY_CATEGORIES, SEEN_CATEGORIES, UNSEEN_CATEGORIES, Category, parse_category  # noqa: E402
from .datalists import DATALISTS, Split, case_seed, check_protocol  # noqa: E402
from .labels import HOST_LABELS, OrganLabel, TumorPart  # noqa: E402
from .lesions import LesionRecord, draw_attributes, load_vocabulary  # noqa: E402
from .phantom import PhantomCase, generate_case, generate_hosted_case, real_healthy_case  # noqa: E402
from .real_anatomy import ChecksumError, FetchError, RealSource, RealVolume, fetch, load_real_volume  # noqa: E402

__all__ = [
    "Category",
    "parse_category",
    "SEEN_CATEGORIES",
    "UNSEEN_CATEGORIES",
    "HEALTHY_CATEGORIES",
    "OrganLabel",
    "TumorPart",
    "HOST_LABELS",
    "PhantomCase",
    "generate_case",
    "generate_hosted_case",
    "real_healthy_case",
    "LesionRecord",
    "draw_attributes",
    "load_vocabulary",
    "RealSource",
    "RealVolume",
    "fetch",
    "load_real_volume",
    "FetchError",
    "ChecksumError",
    "DATALISTS",
    "Split",
    "case_seed",
    "check_protocol",
    "CorpusConfig",
    "build_corpus",
]
