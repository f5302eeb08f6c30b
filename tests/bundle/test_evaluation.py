"""Evaluation: per-case scores, the per-category summary of metrics.json and its markdown."""

import numpy as np
import pytest

from scripts.evaluation import case_scores, metrics_markdown, summarize


def _cube(offset=0):
    mask = np.zeros((10, 10, 10), bool)
    mask[2 + offset : 6 + offset, 2:6, 2:6] = True
    return mask


def test_case_scores_of_an_exact_a_shifted_and_an_empty_prediction():
    exact = case_scores(_cube(), _cube(), (2.0, 2.0, 2.0), 2.0)
    assert exact["dsc"] == pytest.approx(1.0) and exact["nsd"] == pytest.approx(1.0) and exact["false_positive_ml"] == 0.0
    assert exact["foreground_free"] is False
    shifted = case_scores(_cube(1), _cube(), (2.0, 2.0, 2.0), 2.0)
    assert shifted["dsc"] == pytest.approx(0.75) and shifted["false_positive_ml"] == pytest.approx(16 * 8 / 1000)
    empty = case_scores(np.zeros((10, 10, 10), bool), _cube(), (2.0, 2.0, 2.0), 2.0)
    assert empty["dsc"] == 0.0 and empty["foreground_free"] is True


def test_the_summary_groups_by_category_and_the_markdown_has_a_row_per_category_and_method():
    rows = [
        {"category": "kidney tumor", "full": {"dsc": 0.8, "nsd": 0.9, "false_positive_ml": 0.0, "foreground_free": False}},
        {"category": "kidney tumor", "full": {"dsc": 0.6, "nsd": 0.7, "false_positive_ml": 1.0, "foreground_free": True}},
        {"category": "colon tumor", "full": {"dsc": 0.5, "nsd": 0.5, "false_positive_ml": 2.0, "foreground_free": False}},
    ]
    summary = summarize(rows, ["full"])
    assert list(summary) == ["colon tumor", "kidney tumor"] and summary["kidney tumor"]["n"] == 2
    kidney = summary["kidney tumor"]["full"]
    assert kidney["dsc"]["mean"] == pytest.approx(0.7) and kidney["dsc"]["std"] == pytest.approx(0.1)
    assert kidney["foreground_free_rate"] == 0.5
    table = metrics_markdown(summary, {"full": "DiffuGTS"}, 2.0).splitlines()
    assert table[0].startswith("| category | method | n | DSC | NSD (2 mm)") and len(table) == 4
    assert table[3] == "| kidney tumor | DiffuGTS | 2 | 0.700 ± 0.100 | 0.800 ± 0.100 | 0.500 ± 0.500 | 50% |"
