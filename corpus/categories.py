"""Case categories of the corpus and the zero-shot protocol that groups them.

The tumor categories are the finding names of ``data/attributes.json``; two more name the healthy
volumes. The protocol mirrors the paper's ablation (method.md section 7, benchmark.md): the five
CT tumor types of KiTS23 and MSD train; liver tumors (unseen tumor) and MR gliomas (unseen tumor
and unseen modality) are only ever tested.
"""

from __future__ import annotations

from enum import Enum

from scripts.preprocessing import Modality

__all__ = ["Category", "SEEN_CATEGORIES", "UNSEEN_CATEGORIES", "HEALTHY_CATEGORIES", "parse_category"]


class Category(str, Enum):
    """What a corpus case shows. The value is the prompt a user would type for it."""

    LIVER_TUMOR = "liver tumor"
    KIDNEY_TUMOR = "kidney tumor"
    PANCREAS_TUMOR = "pancreas tumor"
    COLON_TUMOR = "colon tumor"
    LUNG_TUMOR = "lung tumor"
    HEPATIC_VESSEL_TUMOR = "hepatic vessel tumor"
    BRAIN_TUMOR = "brain tumor"
    HEALTHY_CT = "healthy CT"
    HEALTHY_MR = "healthy MR"

    @property
    def modality(self) -> Modality:
        """CT for the torso categories, MR for the brain ones."""
        return Modality.MR if self in (Category.BRAIN_TUMOR, Category.HEALTHY_MR) else Modality.CT

    @property
    def is_healthy(self) -> bool:
        """True for the categories without a tumor."""
        return self in HEALTHY_CATEGORIES

    @property
    def slug(self) -> str:
        """File-name form: ``"hepatic vessel tumor"`` -> ``"hepatic_vessel_tumor"``."""
        return self.value.lower().replace(" ", "_")


#: Trained on (with HEALTHY_CT as normal samples).
SEEN_CATEGORIES: tuple[Category, ...] = (
    Category.KIDNEY_TUMOR,
    Category.COLON_TUMOR,
    Category.PANCREAS_TUMOR,
    Category.LUNG_TUMOR,
    Category.HEPATIC_VESSEL_TUMOR,
)
#: Never in any training data or training prompt.
UNSEEN_CATEGORIES: tuple[Category, ...] = (Category.LIVER_TUMOR, Category.BRAIN_TUMOR)
HEALTHY_CATEGORIES: tuple[Category, ...] = (Category.HEALTHY_CT, Category.HEALTHY_MR)


def parse_category(value: str | Category) -> Category:
    """The :class:`Category` named by ``value`` (its value or enum name, any case).

    Raises:
        ValueError: naming the valid categories when ``value`` is none of them.
    """
    if isinstance(value, Category):
        return value
    key = str(value).strip()
    for category in Category:
        if key.lower() in (category.value.lower(), category.name.lower()):
            return category
    raise ValueError(f"category must be one of {[c.value for c in Category]}, got {value!r}")
