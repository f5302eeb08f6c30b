"""How well the AOVA map alone localises tumors on full volumes, threshold by threshold.

    .venv/bin/python benchmarks/aova_localisation.py --datalist CORPUS/datalists/validation.json --key validation

For each threshold: the mean DSC of ``map > threshold`` over the tumor cases (each with its own
prompt) and the mean foreground fraction on the healthy cases (prompt: the first seen finding,
which is absent). This is how the `mini` profile's coarse threshold is chosen, on the validation
split (seen categories only); run it on a test split only to report, never to choose.
Volumes go through the training preprocessing (``PrepareVolumed``): one 128^3 grid per phantom.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bundle"))

from monai.data import load_decathlon_datalist  # noqa: E402
from monai.transforms import Compose, LoadImaged  # noqa: E402

from scripts.features import encode_with_features  # noqa: E402
from scripts.foundation import PROFILES  # noqa: E402
from scripts.heads import heads_for_profile, load_heads_weights  # noqa: E402
from scripts.metrics import dice_score  # noqa: E402
from scripts.text import PromptBuilder, SentenceEncoder  # noqa: E402
from scripts.training import TRAINING_PROMPTS, PrepareVolumed, load_frozen_vae  # noqa: E402

THRESHOLDS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datalist", type=Path, required=True)
    parser.add_argument("--key", default="validation", help="the datalist's list: validation, test, training")
    parser.add_argument("--models", type=Path, default=ROOT / "bundle" / "models" / "mini")
    parser.add_argument("--limit", type=int, default=None, help="at most this many cases (>= 1)")
    parser.add_argument("--heads", type=Path, default=None, help="heads weights (default: MODELS/diffugts_heads.pt)")
    parser.add_argument(
        "--adapter-dilations", type=int, nargs="*", default=(), help="the heads' adapter dilations, as trained (--network_def#adapter_dilations)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    vae = load_frozen_vae(PROFILES["mini"], args.models / "autoencoder.pt", "cpu")
    heads = heads_for_profile(PROFILES["mini"], text_dim=384, adapter_dilations=tuple(args.adapter_dilations))
    load_heads_weights(heads, args.heads or args.models / "diffugts_heads.pt")
    heads.eval()
    encoder, builder = SentenceEncoder(), PromptBuilder()
    load = Compose([LoadImaged(["image", "label"], image_only=True, allow_missing_keys=True), PrepareVolumed(["image", "label"], PROFILES["mini"])])
    cases = load_decathlon_datalist(str(args.datalist), True, args.key)[: args.limit]

    tumor_dice: dict[str, list[list[float]]] = defaultdict(list)
    healthy_fraction: list[list[float]] = []
    for case in cases:
        item = load(case)
        prompt = case.get("prompt") or TRAINING_PROMPTS[0]
        embedding = encoder.embed_prompt(builder.build(prompt))
        with torch.no_grad():
            levels = encode_with_features(vae, item["image"].as_tensor()[None]).levels
            aova = heads.aova(levels, embedding.embeddings, embedding.abnormal).aova_map[0, 0].numpy()
        label = item["label"].as_tensor()[0].numpy() > 0.5
        if case.get("prompt") and label.any():
            tumor_dice[case.get("category", prompt)].append([dice_score(aova > t, label) for t in THRESHOLDS])
        else:
            healthy_fraction.append([float((aova > t).mean()) for t in THRESHOLDS])

    print(f"{len(cases)} cases of {args.datalist} [{args.key}], weights {args.models}")
    categories = sorted(tumor_dice)
    print("| threshold | mean DSC | " + " | ".join(categories) + " | healthy foreground fraction |")
    print("|---" * (len(categories) + 3) + "|")
    for index, threshold in enumerate(THRESHOLDS):
        per = [np.mean([d[index] for d in tumor_dice[c]]) for c in categories]
        mean = np.mean([d[index] for c in categories for d in tumor_dice[c]]) if categories else float("nan")
        healthy = np.mean([f[index] for f in healthy_fraction]) if healthy_fraction else float("nan")
        print(f"| {threshold} | {mean:.3f} | " + " | ".join(f"{v:.3f}" for v in per) + f" | {healthy:.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
