import pytest

from corpus import HEALTHY_CATEGORIES, SEEN_CATEGORIES, UNSEEN_CATEGORIES, Category, load_vocabulary, parse_category
from scripts.preprocessing import Modality


def test_tumor_categories_are_the_vocabulary_findings():
    tumors = {c.value for c in Category if not c.is_healthy}
    assert tumors == set(load_vocabulary()["findings"])


def test_category_modality_follows_the_vocabulary():
    findings = load_vocabulary()["findings"]
    for category in Category:
        if not category.is_healthy:
            assert findings[category.value]["modalities"] == [category.modality.value]
    assert Category.HEALTHY_MR.modality is Modality.MR and Category.HEALTHY_CT.modality is Modality.CT


def test_every_category_is_in_exactly_one_protocol_group():
    groups = [set(SEEN_CATEGORIES), set(UNSEEN_CATEGORIES), set(HEALTHY_CATEGORIES)]
    assert sum(len(g) for g in groups) == len(Category)
    assert set().union(*groups) == set(Category)
    assert Category.LIVER_TUMOR in UNSEEN_CATEGORIES and Category.BRAIN_TUMOR in UNSEEN_CATEGORIES


@pytest.mark.parametrize("text", ["liver tumor", "LIVER_TUMOR", " Liver Tumor ", Category.LIVER_TUMOR])
def test_parse_category_accepts_values_and_names(text):
    assert parse_category(text) is Category.LIVER_TUMOR


def test_parse_category_rejects_unknown_names():
    with pytest.raises(ValueError, match="category must be one of"):
        parse_category("stomach tumor")


def test_slug_is_a_file_name():
    assert Category.HEPATIC_VESSEL_TUMOR.slug == "hepatic_vessel_tumor"
    assert Category.HEALTHY_CT.slug == "healthy_ct"
