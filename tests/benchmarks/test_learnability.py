"""The learnability benchmark: its gate verdict, and measurements reused only for the same weights and choices."""

from benchmarks.learnability import SEEN, _cached, _fingerprint, gate_verdict


def test_the_gate_needs_the_mean_and_every_seen_category():
    passing = dict(zip(SEEN, (0.7, 0.55, 0.6, 0.65, 0.52)))
    assert gate_verdict(passing)["passed"]
    assert not gate_verdict({**passing, SEEN[1]: 0.35, SEEN[0]: 0.9})["passed"]  # mean over 0.60, one under 0.40
    assert not gate_verdict(dict.fromkeys(SEEN, 0.59))["passed"]  # each over 0.40, mean under 0.60
    assert not gate_verdict({c: d for c, d in passing.items() if c != SEEN[2]})["passed"]  # a category missing


def test_a_measurement_is_reused_only_when_weights_and_choices_are_the_same(tmp_path):
    weights = tmp_path / "unet.pt"
    weights.write_bytes(b"first weights")
    output = tmp_path / "metrics.json"
    calls = []

    def measure():
        calls.append(1)
        return {"dsc": len(calls)}

    first = _cached(output, _fingerprint(weights, threshold=0.3), measure)
    again = _cached(output, _fingerprint(weights, threshold=0.3), measure)
    assert first["dsc"] == again["dsc"] == 1 and len(calls) == 1
    assert _cached(output, _fingerprint(weights, threshold=0.5), measure)["dsc"] == 2  # another cut
    weights.write_bytes(b"retrained weights")
    assert _cached(output, _fingerprint(weights, threshold=0.5), measure)["dsc"] == 3  # other weights
