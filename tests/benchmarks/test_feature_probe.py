import numpy as np

from benchmarks.feature_probe import markdown, run_probes


def _voxels(rng, n=600):
    tumor = (rng.uniform(size=n) < 0.2).astype(float)
    levels = rng.normal(size=(n, 4))
    levels[:, 0] += 3.0 * tumor  # one feature channel carries the tumor, the intensity does not
    return {
        "levels": levels,
        "context": rng.normal(size=(n, 8)),
        "intensity": rng.normal(size=(n, 1)),
        "tumor": tumor,
        "category": np.where(np.arange(n) % 2 == 0, "kidney tumor", "lung tumor"),
    }


def test_probes_find_the_channel_that_carries_the_tumor_and_not_the_one_that_does_not():
    rng = np.random.default_rng(0)
    results = run_probes(_voxels(rng), _voxels(rng))
    probes = results["probes"]
    assert probes["levels"]["auc"] > 0.9 and probes["levels + context"]["auc"] > 0.9 and probes["levels, nonlinear"]["auc"] > 0.85
    assert 0.35 < probes["intensity"]["auc"] < 0.65
    assert set(probes["levels"]["per_category"]) == {"kidney tumor", "lung tumor"}
    table = markdown({"command": "python -m benchmarks.feature_probe", **results})
    assert table.count("\n| ") == 5  # header and four probes
