"""Draw the training curves of the embedded default from the bundle's loss logs.

    python -m tools.plot_training --logs bundle/logs --output bundle/docs/training_curves.png

Each stage's ``<stage>_loss.json`` (written by ``scripts.training.LossHistory``) becomes one panel:
the loss per iteration, its moving average, and the stage's wall time in the title.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STAGES = ("vae", "diffusion", "aova", "refiner")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, default=Path("bundle/logs"), help="folder with <stage>_loss.json files")
    parser.add_argument("--output", type=Path, default=Path("bundle/docs/training_curves.png"))
    parser.add_argument("--window", type=int, default=25, help="moving-average window in iterations (>= 1)")
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error("--window must be >= 1")
    logs = [(stage, args.logs / f"{stage}_loss.json") for stage in STAGES if (args.logs / f"{stage}_loss.json").is_file()]
    if not logs:
        parser.error(f"no <stage>_loss.json files in {args.logs}")
    figure, axes = plt.subplots(1, len(logs), figsize=(4 * len(logs), 3.2), squeeze=False)
    for axis, (stage, path) in zip(axes[0], logs):
        record = json.loads(path.read_text())
        loss = np.asarray(record["loss"], dtype=float)
        axis.plot(loss, color="0.75", linewidth=0.8, label="per iteration")
        if len(loss) >= args.window:
            smooth = np.convolve(loss, np.ones(args.window) / args.window, mode="valid")
            axis.plot(np.arange(args.window - 1, len(loss)), smooth, color="C0", label=f"mean of {args.window}")
        axis.set_title(f"{stage} ({record['seconds'] / 60:.1f} min)")
        axis.set_xlabel("iteration")
        axis.set_yscale("log")
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
