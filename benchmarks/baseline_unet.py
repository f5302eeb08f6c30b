"""The supervised baseline: a plain MONAI 3D UNet trained on the seen categories, tumor vs background.

Training is the bundle's (``configs/train.json`` + ``configs/train_baseline.json``): DiceCE with
batch Dice and a positive weight of 10 in its BCE term, AdamW at 1e-3 with a warm-up and a cosine
decay, batches of four 48^3 patches taken at random inside 84^3 crops of which one in two is
centred on a tumor voxel, lesions also drawn on the fly into the healthy CTs
(``RandLesionSynthesisd``), the input re-windowed to -200..300 HU inside the network
(``scripts.training.HounsfieldWindow``), and since the gate's fifth recipe a second task: the same
UNet names each voxel's organ (``scripts.organ_auxiliary``; only the tumor channel is evaluated).
Since the sixth recipe the cosine reaches zero at 8000 iterations, about what the gate's 2 CPU
hours hold on one thread, so the run ends annealed instead of at three quarters of its rate.
The model card lists the recipes. What each choice fixed, measured on this corpus:

* crops centred on the tumor (MONAI's ``RandCropByPosNegLabeld`` alone) taught the UNet to mark
  the centre of any patch: whole-volume Dice 0.000 after 4000 iterations, its foreground at the
  sliding windows' centres, none in the tumors;
* in the pipeline's [-1000, 1000] HU window with plain DiceCE, the loss sat at 1.0 for 2800
  iterations (0.985 at the end): a 50 HU lesion is 2.5% of that range, and with about 1% tumor
  voxels the BCE term's pull towards them is a hundredth of the loss;
* with the soft-tissue window and a positive weight of 20 on 2 x 64^3 patches at 1e-3, the loss
  fell from 1.16 to 1.12 in 1400 iterations (tumor probability 0.06-0.18 against 0.03 around
  it): smaller patches in larger batches put more tumors and a larger tumor share in each step.

This module runs that command and evaluates the result on the same cases and with the same metric
functions (``scripts.metrics``) as the bundle's evaluation, writing a ``metrics.json`` of the same
format (method key ``baseline_unet``). The UNet takes no prompt: on a misleading prompt it predicts
what it would for the right one.

    .venv/bin/python -m benchmarks.baseline_unet --datalist LIST.json --output OUT/metrics.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np
import torch
from nibabel.spatialimages import SpatialImage

from .bundle_eval import ROOT, _offline_env, bundle_run_command

sys.path.insert(0, str(ROOT / "bundle"))

from monai.bundle import ConfigParser  # noqa: E402
from monai.inferers import SlidingWindowInferer  # noqa: E402
from monai.transforms import LoadImage  # noqa: E402

from scripts.evaluation import (
    case_scores,  # noqa: E402
    summarize,  # noqa: E402
)
from scripts.foundation import get_profile  # noqa: E402
from scripts.metrics import dice_score  # noqa: E402
from scripts.preprocessing import Modality, VolumeGeometry, as_volume, intensity_window, normalize_intensity  # noqa: E402

__all__ = [
    "METHOD",
    "DEFAULT_WEIGHTS",
    "SETTINGS",
    "MirrorEnsemble",
    "train",
    "build_network",
    "decision_threshold",
    "choose_threshold",
    "best_threshold",
    "evaluate",
]

METHOD = "baseline_unet"
CONFIGS = [ROOT / "bundle/configs/train.json", ROOT / "bundle/configs/train_baseline.json"]
DEFAULT_DIR = ROOT / ".cache" / "baseline"
DEFAULT_WEIGHTS = DEFAULT_DIR / "baseline_unet.pt"
PATCH = (48, 48, 48)  # the training patch (train_baseline.json); also the sliding window


def train(datalist: Path, iterations: int, baseline_dir: Path = DEFAULT_DIR) -> dict[str, Any]:
    """Train through the bundle; returns the command, wall time and loss summary."""
    command = bundle_run_command(CONFIGS, "--datalist", str(datalist), "--iterations", str(iterations), "--baseline_dir", str(baseline_dir))
    baseline_dir.mkdir(parents=True, exist_ok=True)
    print(f"[baseline] training {iterations} iterations: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    with open(baseline_dir / "train.log", "w", encoding="utf-8") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_offline_env(), check=True)
    summary = training_summary(baseline_dir, command)
    summary["wall_seconds"] = time.perf_counter() - start
    (baseline_dir / "training.json").write_text(json.dumps(summary, indent=2))
    return summary


def training_summary(baseline_dir: Path, command: list[str] | None = None) -> dict[str, Any]:
    """Iterations, training seconds and mean loss of the first and last 50 iterations."""
    history = json.loads((baseline_dir / "baseline_loss.json").read_text())
    losses = history["loss"]
    window = min(50, len(losses))
    return {
        "iterations": len(losses),
        "train_seconds": history["seconds"],
        "seconds_per_iteration": history["seconds"] / max(1, len(losses)),
        "loss_first": float(np.mean(losses[:window])),
        "loss_last": float(np.mean(losses[-window:])),
        "command": command,
    }


def _training_configs() -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(c) for c in CONFIGS])
    parser["bundle_root"] = str(ROOT / "bundle")
    return parser


def build_network(weights: Path, device: torch.device) -> torch.nn.Module:
    """The ``network_def`` of the training configs, with the trained weights."""
    network = _training_configs().get_parsed_content("network_def")
    network.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    return network.to(device).eval()


def decision_threshold() -> float:
    """The training configs' ``threshold``: the cut their validation passes use to keep the best
    weights (a benchmark may choose its own on the validation split: :func:`choose_threshold`)."""
    return float(_training_configs().get_parsed_content("threshold"))


class MirrorEnsemble(torch.nn.Module):
    """Test-time mirroring, as nnU-Net infers: the mean of the network's logits on a window and on
    its flips (each flipped back). Written here because MONAI's ``TestTimeAugmentation`` draws
    random transforms to estimate uncertainty, not a fixed ensemble. The default flips are the
    views training showed (``train.json``: flips along the first axis, quarter turns in the first
    two, so also the flip of the second axis and of both); the head-foot axis was never flipped."""

    def __init__(self, network: torch.nn.Module, flips: tuple[tuple[int, ...], ...] = ((2,), (3,), (2, 3))) -> None:
        super().__init__()
        self.network, self.flips = network, flips

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        logits = self.network(window)
        for dims in self.flips:
            logits = logits + torch.flip(self.network(torch.flip(window, dims)), dims)
        return logits / (1 + len(self.flips))


#: Inference settings compared on the validation split (:func:`choose_threshold`): the plain
#: sliding window, and the same with test-time mirroring (four passes per window).
SETTINGS = {"plain": {"mirror": False}, "mirrored": {"mirror": True}}


@torch.no_grad()
def _probability(network: torch.nn.Module, volume, modality: Modality, profile, device, mirror: bool = False) -> np.ndarray:
    """Tumor probability on the input grid, through the pipeline's own preprocessing and its inverse."""
    geometry = VolumeGeometry(working_spacing=profile.working_spacing.get(modality), divisor=profile.divisor)
    working = geometry(normalize_intensity(volume, intensity_window(volume, modality)))
    inferer = SlidingWindowInferer(roi_size=PATCH, sw_batch_size=1, overlap=0.25, mode="gaussian")
    predictor = MirrorEnsemble(network) if mirror else network
    probability = torch.sigmoid(cast(torch.Tensor, inferer(working.as_tensor()[None].to(device), predictor)))[0].cpu()
    return geometry.invert(probability, working)[0].numpy()


def _cases(datalist: dict[str, Any], key: str):
    """(entry, volume, reference mask) per case of ``datalist[key]``."""
    loader = LoadImage(image_only=True)
    for entry in datalist[key]:
        volume = as_volume(loader(entry["image"]))
        if entry.get("expect_empty") or not entry.get("label"):
            reference = np.zeros(tuple(volume.shape[-3:]), bool)
        else:
            reference = np.asarray(cast(SpatialImage, nib.load(entry["label"])).dataobj) > 0  # as the bundle reads labels
        yield entry, volume, reference


def choose_threshold(
    datalist: dict[str, Any],
    weights: Path,
    categories: tuple[str, ...],
    key: str = "validation",
    candidates: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    settings: dict[str, dict[str, Any]] = SETTINGS,
) -> dict[str, Any]:
    """The inference setting (:data:`SETTINGS`) and probability cut with the highest mean of
    per-category mean DSC on ``datalist[key]`` (the validation split: both are chosen there, never
    on a test split). Ties go to the first setting, the cheapest."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network, profile = build_network(weights, device), get_profile("mini")
    triples: dict[str, list] = {name: [] for name in settings}
    for entry, volume, reference in _cases(datalist, key):
        if entry["category"] not in categories:
            continue
        modality = Modality.parse(entry.get("modality", "CT"))
        for name, setting in settings.items():
            triples[name].append((entry["category"], _probability(network, volume, modality, profile, device, **setting), reference))
    results = {name: best_threshold(cases, candidates) for name, cases in triples.items()}
    best = max(settings, key=lambda name: results[name]["mean_dsc_by_threshold"][f"{results[name]['threshold']:g}"])
    return {
        **results[best],
        "setting": best,
        "inference": settings[best],
        "mean_dsc_by_setting": {name: r["mean_dsc_by_threshold"] for name, r in results.items()},
        "split": key,
    }


def best_threshold(cases, candidates: tuple[float, ...]) -> dict[str, Any]:
    """From ``(category, probability, reference)`` triples: the candidate cut with the highest mean
    of per-category mean DSC (ties go to the cut nearest 0.5), the mean at every candidate, and
    the number of cases."""
    scores: dict[float, dict[str, list[float]]] = {t: {} for t in candidates}
    count = 0
    for category, probability, reference in cases:
        count += 1
        for threshold in candidates:
            scores[threshold].setdefault(category, []).append(dice_score(probability > threshold, reference))
    means = {t: float(np.mean([np.mean(v) for v in per.values()])) if per else 0.0 for t, per in scores.items()}
    best = max(candidates, key=lambda t: (means[t], -abs(t - 0.5)))
    return {"threshold": best, "mean_dsc_by_threshold": {f"{t:g}": round(m, 4) for t, m in means.items()}, "cases": count}


def evaluate(
    datalist: dict[str, Any], weights: Path, output: Path, nsd_tolerance_mm: float = 2.0, threshold: float | None = None, mirror: bool = False
) -> dict[str, Any]:
    """DSC, NSD and false-positive mL per case and category; written to ``output`` and returned.
    ``threshold``: the probability cut, by default the training configs' (:func:`decision_threshold`);
    ``mirror``: test-time mirroring (:class:`MirrorEnsemble`)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = build_network(weights, device)
    threshold = decision_threshold() if threshold is None else float(threshold)
    profile = get_profile("mini")  # the same working grid as the embedded default
    predictions: dict[str, np.ndarray] = {}  # prompt-agnostic: one prediction per image
    per_case = []
    for entry, volume, reference in _cases(datalist, "test"):
        start = time.perf_counter()
        modality = Modality.parse(entry.get("modality", "CT"))
        if entry["image"] not in predictions:
            predictions[entry["image"]] = _probability(network, volume, modality, profile, device, mirror) > threshold
        prediction = predictions[entry["image"]]
        spacing = tuple(float(s) for s in np.linalg.norm(volume.affine.numpy()[:3, :3], axis=0))
        per_case.append(
            {
                "case": Path(entry["image"]).name,
                "category": entry["category"],
                "prompt": entry.get("prompt"),
                "seconds": time.perf_counter() - start,
                METHOD: case_scores(prediction, reference, spacing, nsd_tolerance_mm),
            }
        )
    payload = {
        "nsd_tolerance_mm": nsd_tolerance_mm,
        "weights": str(weights),
        "threshold": threshold,
        "mirror": mirror,
        "per_category": summarize(per_case, [METHOD]),
        "per_case": per_case,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2))
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datalist", type=Path, required=True, help="a decathlon datalist with a 'test' list")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--output", type=Path, required=True, help="metrics.json to write")
    args = parser.parse_args(argv)
    payload = evaluate(json.loads(args.datalist.read_text()), args.weights, args.output)
    for category, row in payload["per_category"].items():
        print(f"{category}: n {row['n']}, DSC {row[METHOD]['dsc']['mean']:.3f}, NSD {row[METHOD]['nsd']['mean']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
