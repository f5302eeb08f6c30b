"""Seconds per diffusion training step, encoding image patches every step against cached latents.

    .venv/bin/python benchmarks/diffusion_step.py [--profile mini] [--batch 4] [--patch 64] [--steps 10]

Both paths run the stage's own :class:`scripts.training.DiffusionIteration` (rectified flow,
L1 on the velocity, AdamW) on the profile's networks (random weights: the time does not depend on
them); the first step of each is a warm-up and not counted. The cached path is what
``configs/train_diffusion.json`` trains with (``scripts.latent_cache``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundle"))

from scripts.foundation import build_diffusion_unet, build_scheduler, build_vae, get_profile  # noqa: E402
from scripts.latent_cache import latent_patch_size  # noqa: E402
from scripts.training import DiffusionIteration  # noqa: E402


def seconds_per_step(iteration: DiffusionIteration, unet: torch.nn.Module, batch: dict, steps: int) -> float:
    engine = SimpleNamespace(state=SimpleNamespace(device=torch.device("cpu")), network=unet, optimizer=torch.optim.AdamW(unet.parameters(), lr=1e-4))
    iteration(engine, batch)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        iteration(engine, batch)
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=64, help="image patch side in voxels (the latent crop is a quarter)")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    profile = get_profile(args.profile)
    vae = build_vae(profile, "cpu")
    unet = build_diffusion_unet(profile, "cpu", trainable=True)
    common = {"spacing": torch.full((args.batch, 3), 2.0), "class_label": torch.ones(args.batch, dtype=torch.long)}
    image = torch.rand(args.batch, 1, *[args.patch] * 3)
    latent = torch.randn(args.batch, 4, *latent_patch_size([args.patch] * 3, profile))
    encoded = seconds_per_step(DiffusionIteration(vae, build_scheduler("rflow"), 1.0), unet, {**common, "image": image}, args.steps)
    cached = seconds_per_step(DiffusionIteration(None, build_scheduler("rflow"), 1.0), unet, {**common, "latent": latent}, args.steps)
    print(f"profile {args.profile}, batch {args.batch} x {args.patch}^3 image patches ({latent.shape[2]}^3 latents), {torch.get_num_threads()} threads")
    print(f"  encoding every step: {encoded:.3f} s/step")
    print(f"  cached latents:      {cached:.3f} s/step ({encoded / cached:.1f}x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
