"""Do the frozen VAE's features tell tumor voxels from the rest of the body? Probes, per category.

    .venv/bin/python -m benchmarks.feature_probe --corpus .cache/corpus_v2 --vae MODELS/autoencoder.pt

The AOVA map is, per voxel, a softmax over text keys of a linear projection of adapted encoder
features: close to a linear read-out of what the encoder gives. This benchmark asks how much a
read-out can get from those features before any head is trained. Voxels are sampled from the seen
categories' training cases (every tumor voxel up to ``--tumor-voxels`` per case, and
``--other-voxels`` body voxels above about -100 HU), the probes fitted there and measured on the
validation split's tumor cases (seen categories; no liver, no MR):

* ``intensity``: the CT number alone, linear;
* ``levels``: every encoder tap upsampled to full resolution, linear (logistic regression);
* ``levels, nonlinear``: the same features, gradient-boosted trees (a per-voxel nonlinear head);
* ``levels + context``: the features plus their means over 5^3 and 11^3 voxels, linear (what a
  head with a wider receptive field could add).

AUC and average precision (AP) of tumor against every sampled body voxel; the sampled tumor share
is printed, since AP depends on it. Results: ``feature_probe.{md,json}`` in ``--output``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bundle"))

from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi  # noqa: E402
from monai.data import load_decathlon_datalist  # noqa: E402
from monai.transforms import Compose, LoadImaged  # noqa: E402

from scripts.features import encode_with_features  # noqa: E402
from scripts.foundation import PROFILES  # noqa: E402
from scripts.training import PrepareVolumed, load_frozen_vae  # noqa: E402

#: The CT working window maps -1000..1000 HU to 0..1: 0.45 is about -100 HU (fat and above).
BODY_LEVEL = 0.45
CONTEXT_SIZES = (5, 11)


def sample_voxels(entries: list[dict[str, Any]], vae: AutoencoderKlMaisi, tumor_voxels: int, other_voxels: int, seed: int) -> dict[str, np.ndarray]:
    """Features, intensity, context means, tumor flag and category of sampled voxels."""
    rng = np.random.default_rng(seed)
    load = Compose([LoadImaged(["image", "label"], image_only=True), PrepareVolumed(["image", "label"], PROFILES["mini"])])
    parts: dict[str, list[np.ndarray]] = {"levels": [], "intensity": [], "context": [], "tumor": [], "category": []}
    for entry in entries:
        item = load({"image": entry["image"], "label": entry["label"], "modality": "CT"})
        image = torch.as_tensor(item["image"]).as_subclass(torch.Tensor)[None].float()
        tumor = torch.as_tensor(item["label"]).as_subclass(torch.Tensor)[0] > 0.5
        with torch.no_grad():
            levels = encode_with_features(vae, image).levels
            size = image.shape[2:]
            features = torch.cat([F.interpolate(level, size=size, mode="trilinear") if level.shape[2:] != size else level for level in levels], 1)
            context = torch.cat([F.avg_pool3d(features, k, stride=1, padding=k // 2) for k in CONTEXT_SIZES], 1)
        body = image[0, 0] > BODY_LEVEL
        inside, outside = torch.nonzero(tumor), torch.nonzero(body & ~tumor)
        if len(inside) == 0:
            continue
        inside = inside[rng.choice(len(inside), min(tumor_voxels, len(inside)), replace=False)]
        outside = outside[rng.choice(len(outside), min(other_voxels, len(outside)), replace=False)]
        index = torch.cat([inside, outside])
        for key, volume in (("levels", features), ("context", context), ("intensity", image)):
            parts[key].append(volume[0][:, index[:, 0], index[:, 1], index[:, 2]].T.numpy())
        parts["tumor"].append(np.r_[np.ones(len(inside)), np.zeros(len(outside))])
        parts["category"].append(np.array([entry["category"]] * len(index)))
    return {key: np.concatenate(value) for key, value in parts.items()}


def _probe(kind: str, train: np.ndarray, test: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    mean, sd = train.mean(0), train.std(0) + 1e-6
    if kind == "linear":
        model: Any = LogisticRegression(max_iter=2000, class_weight="balanced")
    else:
        model = HistGradientBoostingClassifier(max_iter=200, class_weight="balanced", random_state=seed)
    model.fit((train - mean) / sd, labels)
    return model.predict_proba((test - mean) / sd)[:, 1]


def run_probes(train: dict[str, np.ndarray], test: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    variants = {
        "intensity": ("linear", ["intensity"]),
        "levels": ("linear", ["levels"]),
        "levels, nonlinear": ("trees", ["levels"]),
        "levels + context": ("linear", ["levels", "context"]),
    }
    results: dict[str, Any] = {"tumor_share": round(float(test["tumor"].mean()), 4), "probes": {}}
    for name, (kind, keys) in variants.items():
        scores = _probe(kind, np.concatenate([train[k] for k in keys], 1), np.concatenate([test[k] for k in keys], 1), train["tumor"], seed)
        per_category = {}
        for category in sorted(set(test["category"])):
            pick = test["category"] == category
            per_category[category] = {
                "auc": round(float(roc_auc_score(test["tumor"][pick], scores[pick])), 3),
                "ap": round(float(average_precision_score(test["tumor"][pick], scores[pick])), 3),
            }
        results["probes"][name] = {
            "auc": round(float(roc_auc_score(test["tumor"], scores)), 3),
            "ap": round(float(average_precision_score(test["tumor"], scores)), 3),
            "per_category": per_category,
        }
    return results


def markdown(results: dict[str, Any]) -> str:
    categories = sorted(next(iter(results["probes"].values()))["per_category"])
    lines = [
        f"Feature probes ({results['command']}); tumor share of the sampled test voxels {results['tumor_share']:.3f}.",
        "",
        "| probe | AUC | AP | " + " | ".join(f"{c} AUC / AP" for c in categories) + " |",
        "|---|---|---|" + "---|" * len(categories),
    ]
    for name, probe in results["probes"].items():
        cells = " | ".join(f"{probe['per_category'][c]['auc']:.3f} / {probe['per_category'][c]['ap']:.3f}" for c in categories)
        lines.append(f"| {name} | {probe['auc']:.3f} | {probe['ap']:.3f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder written by python -m corpus")
    parser.add_argument("--vae", type=Path, required=True, help="the frozen VAE's weights (autoencoder.pt)")
    parser.add_argument("--train-cases", type=int, default=30, help="training tumor cases to sample, every other one (default 30)")
    parser.add_argument("--tumor-voxels", type=int, default=400, help="tumor voxels per case at most (default 400)")
    parser.add_argument("--other-voxels", type=int, default=2000, help="other body voxels per case (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    datalists = args.corpus / "datalists"
    seen = ("kidney tumor", "colon tumor", "pancreas tumor", "lung tumor", "hepatic vessel tumor")

    def tumor_cases(name: str, key: str) -> list[dict[str, Any]]:
        entries = load_decathlon_datalist(str(datalists / f"{name}.json"), True, key)
        return [e for e in entries if e.get("label") and e["category"] in seen]

    vae = load_frozen_vae(PROFILES["mini"], args.vae, "cpu")
    start = time.perf_counter()
    train = sample_voxels(tumor_cases("seen_train", "training")[::2][: args.train_cases], vae, args.tumor_voxels, args.other_voxels, args.seed)
    test = sample_voxels(tumor_cases("validation", "validation"), vae, args.tumor_voxels, args.other_voxels, args.seed + 1)
    print(f"[feature_probe] {len(train['tumor'])} training and {len(test['tumor'])} validation voxels in {time.perf_counter() - start:.0f} s", flush=True)
    results = {"command": f"python -m benchmarks.feature_probe --corpus {args.corpus} --vae {args.vae}", **run_probes(train, test, args.seed)}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "feature_probe.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output / "feature_probe.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
