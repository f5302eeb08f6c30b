import json
import re
from pathlib import Path

import pytest
from monai.data import load_decathlon_datalist

from corpus import DATALISTS, Category, RealSource, Split, case_seed, check_protocol
from corpus.datalists import CATEGORY_STRIDE, DatalistSpec, split_of_seed


def test_the_shipped_datalists_follow_the_zero_shot_protocol():
    check_protocol()
    training = [spec for spec in DATALISTS if spec.is_training]
    assert {spec.name for spec in training} == {"foundation_train", "seen_train"}
    for spec in training:
        categories = set(spec.categories) | {c for _, c in spec.hosted}
        assert Category.LIVER_TUMOR not in categories and Category.BRAIN_TUMOR not in categories


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (DatalistSpec("bad", "training", Split.TRAIN, (Category.LIVER_TUMOR,)), "unseen"),
        (DatalistSpec("bad", "training", Split.TRAIN, (), hosted=((RealSource.COLIN27_T1, Category.BRAIN_TUMOR),)), "unseen"),
        (DatalistSpec("bad", "training", Split.TRAIN, (Category.HEALTHY_MR,), real_healthy=(RealSource.COLIN27_T1,)), "test-only"),
        (DatalistSpec("bad", "training", Split.TEST, (Category.HEALTHY_CT,)), "train split"),
    ],
)
def test_check_protocol_rejects_unseen_data_in_training(spec, match):
    with pytest.raises(ValueError, match=match):
        check_protocol([spec])


def test_split_seed_ranges_are_disjoint_and_invertible():
    streams = [*Category, *RealSource]
    seeds = {split: {case_seed(split, s, i, 7) for s in streams for i in (0, 1, CATEGORY_STRIDE - 1)} for split in Split}
    assert not seeds[Split.TRAIN] & seeds[Split.TEST]
    assert not seeds[Split.TRAIN] & seeds[Split.VALIDATION]
    assert not seeds[Split.VALIDATION] & seeds[Split.TEST]
    for split, values in seeds.items():
        assert all(split_of_seed(v, 7) is split for v in values)
    assert len(set().union(*seeds.values())) == 3 * len(streams) * 3  # no two streams share a seed


def test_case_seed_rejects_indices_beyond_the_stride():
    with pytest.raises(ValueError, match="index"):
        case_seed(Split.TRAIN, Category.HEALTHY_CT, CATEGORY_STRIDE)
    with pytest.raises(ValueError, match="in no split"):
        split_of_seed(5)


def _entries(corpus, name, key):
    return load_decathlon_datalist(str(corpus / "datalists" / f"{name}.json"), data_list_key=key)


def test_written_datalists_load_with_monai_and_point_at_existing_files(tiny_corpus):
    for spec in DATALISTS:
        entries = _entries(tiny_corpus, spec.name, spec.key)
        assert entries, spec.name
        for entry in entries:
            for key in ("image", "label", "organs", "parts", "metadata"):
                assert entry[key].startswith(str(tiny_corpus)) and (tiny_corpus / entry[key]).is_file(), (spec.name, key)
            # The prompt is a finding name, never turned into a path by the loader.
            assert entry.get("prompt", entry["category"]) == entry["category"] or "healthy" in entry["category"], entry


def test_no_liver_tumor_and_no_mr_tumor_in_any_written_training_list(tiny_corpus):
    for name in ("foundation_train", "seen_train"):
        for entry in _entries(tiny_corpus, name, "training"):
            metadata = json.loads((tiny_corpus / entry["metadata"]).read_text())
            assert metadata["category"] != "liver tumor" and "liver" not in entry.get("prompt", "")
            if metadata["modality"] == "MR":
                assert metadata["tumor_volume_ml"] == 0.0 and metadata["category"] == "healthy MR"
            assert metadata["source"] != "colin27-t1"


def test_written_test_seeds_never_appear_in_training(tiny_corpus):
    def seeds(name, key):
        return {(e["source"], e["seed"]) for e in _entries(tiny_corpus, name, key)}

    training = seeds("foundation_train", "training") | seeds("seen_train", "training")
    held_out = seeds("validation", "validation") | seeds("test_unseen_liver", "test") | seeds("test_unseen_mr_glioma", "test") | seeds("test_healthy", "test")
    phantom_training = {s for src, s in training if src == "phantom"}
    phantom_held_out = {s for src, s in held_out if src == "phantom"}
    assert phantom_training and phantom_held_out and not phantom_training & phantom_held_out
    assert all(split_of_seed(s) is Split.TRAIN for s in phantom_training)


def test_unseen_test_lists_hold_only_their_category(tiny_corpus):
    assert {e["category"] for e in _entries(tiny_corpus, "test_unseen_liver", "test")} == {"liver tumor"}
    glioma = _entries(tiny_corpus, "test_unseen_mr_glioma", "test")
    assert {e["category"] for e in glioma} == {"brain tumor"} and {e["modality"] for e in glioma} == {"MR"}


# benchmark.md: no prompt naming a liver or hepatic tumor, lesion, mass or metastasis may appear in
# any training or validation data ("hepatic vessel tumor", a seen MSD category, names vessels).
_LIVER_FINDING = re.compile(r"\b(liver|hepatic)\s+(tumou?rs?|lesions?|mass(es)?|metasta\w*|cancer|carcinoma)\b", re.IGNORECASE)


def test_no_liver_tumor_prompt_and_no_mr_volume_in_the_heads_lists(tiny_corpus):
    for name, key in (("seen_train", "training"), ("validation", "validation"), ("test_seen", "test")):
        entries = _entries(tiny_corpus, name, key)
        assert entries, name
        for entry in entries:
            metadata = json.loads((tiny_corpus / entry["metadata"]).read_text())
            assert not _LIVER_FINDING.search(entry.get("prompt", "")) and not _LIVER_FINDING.search(metadata["description"]), entry
            assert metadata["category"] != "liver tumor" and metadata["modality"] == "CT", (name, metadata["case_id"])


def test_the_liver_finding_pattern_matches_what_it_must():
    assert _LIVER_FINDING.search("liver tumor") and _LIVER_FINDING.search("Hepatic metastases") and _LIVER_FINDING.search("liver lesion")
    assert not _LIVER_FINDING.search("hepatic vessel tumor") and not _LIVER_FINDING.search("kidney tumor")


def test_training_configs_never_draw_or_prompt_an_unseen_finding():
    from scripts.training import TRAINING_PROMPTS

    root = Path(__file__).resolve().parents[2] / "bundle" / "configs"
    for path in root.glob("train*.json"):
        config = json.loads(path.read_text())
        for finding in config.get("seen_findings", []):
            assert not _LIVER_FINDING.search(finding) and "brain" not in finding and "glioma" not in finding, (path.name, finding)
    assert not any(_LIVER_FINDING.search(p) or "brain" in p for p in TRAINING_PROMPTS)
