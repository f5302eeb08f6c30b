"""Reconstruction PSNR of a profile's VAE on held-out healthy volumes, per modality.

    .venv/bin/python benchmarks/vae_psnr.py --datalist CORPUS/datalists/test_healthy.json

Volumes go through the pipeline's own preprocessing (intensity in [0, 1], working grid); PSNR is
computed in that [0, 1] range (peak 1) over the working-grid volume (128^3 phantoms have no padding).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import cast

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundle"))

from monai.data import load_decathlon_datalist  # noqa: E402
from monai.inferers import SlidingWindowInferer  # noqa: E402
from monai.transforms import LoadImage  # noqa: E402

from scripts.checkpoints import load_vae_weights
from scripts.foundation import build_vae, get_profile  # noqa: E402
from scripts.training import PrepareVolumed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datalist", required=True, type=Path)
    parser.add_argument("--key", default="test")
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--weights", type=Path, default=Path("bundle/models/mini/autoencoder.pt"))
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    vae = build_vae(profile)
    load_vae_weights(vae, args.weights)
    prepare = PrepareVolumed(keys=["image"], profile=profile)
    inferer = SlidingWindowInferer(roi_size=(64, 64, 64), sw_batch_size=1, overlap=0.25, mode="gaussian")
    loader = LoadImage(image_only=True)
    scores: dict[str, list[float]] = defaultdict(list)
    for entry in load_decathlon_datalist(str(args.datalist), True, args.key):
        item = prepare({"image": loader(entry["image"]), "modality": entry["modality"]})
        image = item["image"].as_tensor()[None]
        with torch.no_grad():
            # The network returns a tensor, so the inferer does too.
            reconstruction = cast(torch.Tensor, inferer(image, lambda x: vae.decode_stage_2_outputs(vae.encode_stage_2_inputs(x)))).clamp(0, 1)
        mse = float(((reconstruction - image) ** 2).mean())
        psnr = 10 * np.log10(1.0 / max(mse, 1e-12))
        scores[entry["modality"]].append(psnr)
        print(f"{Path(entry['image']).name:40s} {entry['modality']}  PSNR {psnr:6.2f} dB")
    print("\n| modality | volumes | PSNR mean (dB) | min | max |\n|---|---|---|---|---|")
    for modality, values in sorted(scores.items()):
        print(f"| {modality} | {len(values)} | {np.mean(values):.2f} | {np.min(values):.2f} | {np.max(values):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
