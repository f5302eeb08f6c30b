"""The memory soak's code path, small: a few cases through one bundle process.

``benchmarks/memory_soak.py`` runs 20 cases of 64^3 and holds the resident memory within 10% of
the first case; here four cases of 32^3 (two phantoms, each twice) go through the same batch
run, with a loose bound, and identical inputs must give identical masks and probabilities.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_soak.py"


def _soak_module():
    spec = importlib.util.spec_from_file_location("memory_soak", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_small_batch_keeps_its_memory_and_repeats_its_results(tmp_path):
    soak = _soak_module()
    datalist, sources = soak.write_cases(tmp_path / "inputs", cases=4, size=32, distinct=2)
    assert sorted(sources.values()) == [0, 0, 1, 1]  # each input twice: the identity check compares something

    result = soak.run_batch(datalist, tmp_path / "outputs", num_steps=1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    summary = soak.summarize(tmp_path / "outputs", sources)
    assert summary.names == ["case01", "case02", "case03", "case04"]
    assert all(resident > 100 for resident in summary.resident_mb)  # a real process's RSS, in MB
    assert summary.max_growth < 0.5
    assert summary.mismatched == []
