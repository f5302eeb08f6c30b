"""The paper-shaped benchmark: zero-shot, ablation, misleading-prompt and performance tables.

    .venv/bin/python -m benchmarks.paper_tables --corpus .cache/corpus_train --output benchmarks/results
    .venv/bin/python -m benchmarks.paper_tables --limit 2 --only zero_shot,misleading   # a quick look

Runs on the corpus's unseen test splits only. Every DSC / NSD / false-positive figure comes from
the bundle's evaluation command (``benchmarks.bundle_eval``) or, for the supervised UNet baseline,
from the same metric functions (``benchmarks.baseline_unet``). Writes one markdown file and PNG
per stage into ``--output``, the raw payloads as JSON, and ``README.md``: the provenance (machine,
date, commit, versions, weights) and every stage's section, each stamped when it was produced.
Large outputs (NIfTI, weights) stay under ``--work`` and ``.cache/baseline``.

Stages (``--only``):
  zero_shot    DSC / NSD on liver tumors (CT) and gliomas (MR): DiffuGTS, AOVA map alone, the
               supervised UNet (trained first through the bundle if its weights are missing),
               and the paper's published rows.
  ablations    each feature level alone against the aggregation; latent inpainting vs direct.
  misleading   false-positive mL and foreground-free rate for absent findings and wrong prompts.
  steps        DSC and time against the number of diffusion steps, on a few liver cases.
  performance  per-stage time, forward-pass share and peak memory, mini profile, 128^3 CT and
               512x512x155 MR, a fresh process each.
  gpu          the maisi profile (random weights) at 256^3 and 512x512x155 where CUDA is present.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import baseline_unet, plots, tables
from .bundle_eval import ROOT, EvalRun, evaluate
from .performance import measure, resized_volume
from .summary import STAGES, now, parse_stages, provenance, stamp, write_section, write_summary
from .tables import GLIOMA, LIVER, TUMOR_CATEGORIES, MethodResult
from .zero_shot import build_datalist

LEVEL_NAMES = {0: "encoder block 2, full resolution", 1: "encoder block 5, 1/2 resolution", 2: "encoder block 8, 1/4 resolution"}
DIFFUGTS = "DiffuGTS (this corpus, mini weights)"
AOVA_ONLY = "AOVA map alone (no LSI, no residual learning)"
BASELINE = "supervised 3D UNet (seen categories, no prompt)"


class PaperTables:
    """Runs the stages; evaluations shared by several stages are run once per invocation."""

    def __init__(self, args: argparse.Namespace, info: dict[str, Any]) -> None:
        self.args = args
        self.info = info
        self.out: Path = args.output
        self.work: Path = args.work
        self._main: EvalRun | None = None
        self._baseline: dict[str, Any] | None = None
        self.baseline_training: dict[str, Any] | None = None
        self.baseline_error = ""
        self.baseline_seen: dict[str, Any] | None = None

    # -- shared runs -------------------------------------------------------------------------
    def datalist(self) -> dict[str, Any]:
        return build_datalist(self.args.corpus, self.args.limit)

    def seen_validation_datalist(self) -> dict[str, Any]:
        """Tumor cases of the seen categories' validation split (at most ``--limit`` per category)."""
        folder = self.args.corpus / "datalists"
        entries = json.loads((folder / "validation.json").read_text())["validation"]
        per_category: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            if entry.get("label") and not entry["category"].startswith("healthy"):
                resolved = {**entry, **{k: str((folder / entry[k]).resolve()) for k in ("image", "label")}}
                per_category.setdefault(entry["category"], []).append(resolved)
        return {"name": "seen validation", "test": [e for rows in per_category.values() for e in rows[: self.args.limit]]}

    def tumor_datalist(self) -> dict[str, Any]:
        full = self.datalist()
        return {**full, "test": [e for e in full["test"] if e["category"] in TUMOR_CATEGORIES]}

    def run(self, name: str, datalist: dict[str, Any], overrides: Sequence[str] = ()) -> EvalRun:
        result = evaluate(name, datalist, self.work, overrides, reuse=self.args.reuse, keep_images=self.args.keep_images, weights=self.info["weights"])
        self._write_json(f"runs/{name}_metrics.json", result.metrics)
        return result

    def main_run(self) -> EvalRun:
        """The bundle's defaults on the whole zero-shot datalist (tumors, healthy, misleading)."""
        if self._main is None:
            self._main = self.run("zero_shot", self.datalist())
        return self._main

    def baseline(self) -> dict[str, Any]:
        """The supervised UNet's metrics on the same datalist; trained first if needed."""
        if self._baseline is None:
            weights = baseline_unet.DEFAULT_WEIGHTS
            if self.args.retrain_baseline or not weights.is_file():
                seen = self.args.corpus / "datalists" / "seen_train.json"
                self.baseline_training = baseline_unet.train(seen.resolve(), self.args.baseline_iterations)
            else:
                summary = weights.parent / "training.json"
                self.baseline_training = json.loads(summary.read_text()) if summary.is_file() else baseline_unet.training_summary(weights.parent)
            print(f"[baseline] evaluating {weights}", flush=True)
            self._baseline = baseline_unet.evaluate(self.datalist(), weights, self.work / "baseline" / "metrics.json")
            self._write_json("runs/baseline_metrics.json", self._baseline)
            # In-distribution check: a baseline that fails on seen categories says nothing about zero-shot.
            self.baseline_seen = baseline_unet.evaluate(self.seen_validation_datalist(), weights, self.work / "baseline" / "seen_metrics.json")
            self._write_json("runs/baseline_seen_validation_metrics.json", self.baseline_seen)
            self._write_json("runs/baseline_training.json", self.baseline_training)
        return self._baseline

    def baseline_or_none(self) -> dict[str, Any] | None:
        """The baseline's metrics, or None (its rows then read "not run") if training or evaluation failed."""
        try:
            return self.baseline()
        except Exception as error:  # the DiffuGTS rows must survive a broken baseline
            traceback.print_exc()
            self.baseline_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            return None

    def _write_json(self, name: str, payload: Any) -> None:
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2))

    def _seconds(self, run: EvalRun) -> str:
        return f"{run.seconds_per_case():.1f} s per case (read, segment, write; {len(run.reports)} cases, {run.seconds / 60:.1f} min)"

    def _method_results(self) -> list[MethodResult]:
        """The three methods every quality table compares, from the main run and the baseline."""
        main = self.main_run()
        return [
            MethodResult(DIFFUGTS, main.metrics, "full"),
            MethodResult(AOVA_ONLY, main.metrics, "aova_only"),
            MethodResult(BASELINE, self.baseline_or_none(), baseline_unet.METHOD),
        ]

    # -- stages ------------------------------------------------------------------------------
    def zero_shot(self) -> str:
        main, results = self.main_run(), self._method_results()
        plots.tumor_bars(results, self.out / "zero_shot.png", "Zero-shot: unseen liver tumors (CT) and gliomas (MR)", ("DiffuGTS", "ZePT", "Malenia"))
        training = self.baseline_training or {}
        parts = [tables.zero_shot_table(results)]
        if self.baseline_error:
            parts.append(f"\n**The supervised baseline failed:** `{self.baseline_error}`.\n")
        parts.append(
            "\nDiffuGTS: the bundle's evaluation command at its defaults (one 128^3 patch per phantom volume, "
            f"{self._num_steps(main)} diffusion steps, NSD at 2 mm); {self._seconds(main)}.\n"
        )
        parts.append(
            "\nSupervised UNet: `bundle/configs/train_baseline.json` over `train.json` (MONAI UNet, DiceCE, 64^3 "
            f"pos/neg patches of `seen_train.json`), {training.get('iterations', '?')} iterations in "
            f"{training.get('train_seconds', float('nan')) / 60:.1f} min, loss {training.get('loss_first', float('nan')):.3f} -> "
            f"{training.get('loss_last', float('nan')):.3f} (first -> last 50); evaluated by `benchmarks/baseline_unet.py` "
            "on the same cases, working grid and metric functions, threshold 0.5." + (f" Training: {training['note']}." if training.get("note") else "") + "\n"
        )
        if self.baseline_seen:
            parts.append(
                "\nThe supervised UNet on the seen categories' validation cases (in-distribution check):\n\n"
                + tables.category_table(MethodResult(BASELINE, self.baseline_seen, baseline_unet.METHOD))
            )
        parts.append("\n![zero-shot](zero_shot.png)\n")
        return "".join(parts)

    def ablations(self) -> str:
        tumors = self.tumor_datalist()
        levels = [
            MethodResult(f"level {i} only ({LEVEL_NAMES[i]})", self.run(f"levels_{i}", tumors, ["--network_def#levels", f"[{i}]"]).metrics) for i in range(3)
        ]
        direct = self.run("direct", tumors, ["--inpainting", "direct"])
        aggregation = MethodResult("all levels, mean (the method)", self.main_run().metrics)
        plots.tumor_bars(
            [*levels, aggregation], self.out / "ablation_levels.png", "Feature levels: one level vs the aggregation", ("single feature level, best", "DiffuGTS")
        )
        latent = MethodResult("latent space inpainting (the method)", self.main_run().metrics)
        generated = MethodResult("direct generation (whole latent regenerated)", direct.metrics)
        plots.tumor_bars(
            [latent, generated],
            self.out / "ablation_inpainting.png",
            "Latent space inpainting vs direct generation",
            ("DiffuGTS", "without LSI (direct generation)"),
        )
        return (
            "### Feature levels\n\n"
            + tables.levels_table(levels, aggregation)
            + "\n![levels](ablation_levels.png)\n\n### Latent space inpainting against direct generation\n\n"
            + tables.inpainting_table(latent, generated)
            + f"\nDirect generation: `--inpainting direct`; {self._seconds(direct)}.\n\n![inpainting](ablation_inpainting.png)\n"
        )

    def misleading(self) -> str:
        results = self._method_results()
        plots.misleading_bars(results, self.out / "misleading.png")
        return (
            tables.misleading_table(results) + "\nThe reference is empty in every row, so all foreground is false positive. Absent disease: healthy "
            "scans with the prompt of their body part. Wrong organ: 'lung tumor' on liver-tumor CTs. Wrong organ and "
            "modality: 'kidney tumor' on glioma MRs. The supervised UNet reads no prompt: its rows show what it "
            "segments regardless (on tumor scans, the real tumor counts as false positive here).\n"
            "\n![misleading](misleading.png)\n"
        )

    def steps(self) -> str:
        liver = [e for e in self.tumor_datalist()["test"] if e["category"] == LIVER][: self.args.steps_cases]
        datalist = {"name": "diffusion steps", "test": liver}
        points = []
        for steps in self.args.steps:
            run = self.run(f"steps_{steps}", datalist, ["--num_steps", str(steps)])
            row = run.metrics["per_category"][LIVER]
            points.append(
                {
                    "steps": steps,
                    "n": row["n"],
                    "dsc": row["full"]["dsc"],
                    "nsd": row["full"]["nsd"],
                    "seconds_per_case": run.seconds_per_case(),
                    "inpainting_seconds_per_case": run.seconds_per_case(stage="inpainting"),
                }
            )
        self._write_json("steps.json", points)
        plots.steps_plot(points, self.out / "steps.png")
        return tables.steps_table(points) + "\nLiver tumor cases (CT), prompt 'liver tumor'.\n\n![steps](steps.png)\n"

    def _volumes(self) -> dict[str, Path]:
        liver = self.tumor_datalist()["test"][0]["image"]
        glioma = next(e["image"] for e in self.tumor_datalist()["test"] if e["category"] == GLIOMA)
        volumes = self.work / "volumes"
        return {
            "ct128": Path(liver),
            "mr512": resized_volume(Path(glioma), (512, 512, 155), volumes / "mr_512x512x155.nii"),
            "ct256": volumes / "ct_256.nii",  # made only where a GPU measures it
            "liver": Path(liver),
        }

    def performance(self) -> str:
        volumes = self._volumes()
        sizes = [
            ("ct128", "128^3 CT, 'liver tumor'", "CT", "liver tumor"),
            ("mr512", "512x512x155 MR, 'brain tumor'", "MR", "brain tumor"),
        ]
        # The bundle's default writes the mask; one more row per volume writes every map as well.
        runs = [(mode, "none") for mode in self.args.perf_inpainting] + [(self.args.perf_inpainting[0], "all")]
        measurements = [
            measure(
                volumes[size],
                modality=modality,
                prompt=prompt,
                label=label,
                size=size,
                work_dir=self.work / "performance",
                inpainting=mode,
                save_maps=maps,
                reuse_weights=self.info["weights"] if self.args.reuse else None,
            )
            for size, label, modality, prompt in sizes
            for mode, maps in runs
        ]
        self._write_json("performance.json", measurements)
        plots.stage_bars(measurements, self.out / "performance.png")
        targets = tables.performance_targets(measurements)
        print("\n".join(targets), flush=True)
        first = measurements[0]
        return (
            tables.performance_table(measurements)
            + "\n"
            + tables.stage_table(measurements)
            + "\nTargets (printed, not asserted):\n\n"
            + "".join(f"* {line}\n" for line in targets)
            + f"\nBundle defaults of the mini profile ({'x'.join(map(str, first['patch_size']))} patches, overlap 0.25, "
            f"{first['num_steps']} diffusion steps), {first['torch_threads']} torch threads, {first['device']}. `latent`: the "
            "method (only patches whose coarse mask is not empty are inpainted, so the time depends on the weights); "
            "`direct`: every patch is inpainted, the upper bound. End to end: read the file, segment, write the NIfTI "
            "outputs (model loading excluded): the mask (the bundle's default), or with `--save_maps all` the "
            "probability, AOVA and pseudo-healthy maps too. Outside forward passes: the share of `segment s`, the "
            "pipeline call, not spent in the networks (reading and writing files are not in it). "
            "Peak RSS: the whole process (interpreter, torch, networks, text "
            "encoder), a fresh process per row. Forward passes: hooks on the VAE encoder blocks and decoder, the "
            "diffusion UNet and the two heads (`benchmarks/forward_timer.py`); the rest is preprocessing, resampling, "
            "sliding-window stitching and post-processing. The 512x512x155 MR is a corpus glioma phantom resampled "
            f"to that size ({', '.join(f'{s:.3f}' for s in measurements[-1]['spacing_mm'])} mm). On a shared machine compare "
            "`segment CPU s` rather than wall time.\n\n![stages](performance.png)\n"
        )

    def gpu(self) -> str:
        sizes = [("ct256", "256^3 CT, 'liver tumor'", "CT", "liver tumor"), ("mr512", "512x512x155 MR, 'brain tumor'", "MR", "brain tumor")]
        if not torch.cuda.is_available():
            measurements = [{"label": label, "status": "not measured (no GPU)"} for _, label, _, _ in sizes]
        else:
            volumes = self._volumes()
            resized_volume(volumes["liver"], (256, 256, 256), volumes["ct256"])
            measurements = [
                measure(
                    volumes[size],
                    modality=modality,
                    prompt=prompt,
                    label=label,
                    size=size,
                    work_dir=self.work / "gpu",
                    profile="maisi",
                    inpainting=mode,
                    device="cuda",
                )
                for size, label, modality, prompt in sizes
                for mode in self.args.perf_inpainting
            ]
        self._write_json("gpu.json", measurements)
        return tables.gpu_table(measurements) + (
            "\nThe maisi profile with randomly initialised networks (the official weights cannot be fetched here; "
            "time and memory do not depend on the values), 128^3 patches, 30 steps, the input's spacing, CUDA "
            "autocast.\n"
        )

    @staticmethod
    def _num_steps(run: EvalRun) -> str:
        return str(run.reports[0]["config"].get("num_steps", "?")) if run.reports else "?"


def _int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("give positive integers separated by commas, e.g. 1,2,5,10")
    return values


def _stage_list(text: str) -> list[str]:
    try:
        return parse_stages(text)
    except ValueError as error:  # argparse shows an ArgumentTypeError's own message
        raise argparse.ArgumentTypeError(str(error)) from None


def _mode_list(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes or any(m not in ("latent", "direct") for m in modes):
        raise argparse.ArgumentTypeError("inpainting modes are 'latent' and 'direct'")
    return modes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT / ".cache" / "corpus_train")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results", help="tables, plots, JSON, README.md")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "paper_tables", help="bundle runs and large files")
    parser.add_argument("--only", type=_stage_list, default=list(STAGES), help=f"comma-separated stages: {','.join(STAGES)}")
    parser.add_argument("--limit", type=int, default=None, help="at most this many cases per split (>= 1)")
    parser.add_argument("--steps", type=_int_list, default=[1, 2, 5, 10], help="diffusion steps of the steps stage")
    parser.add_argument("--steps-cases", type=int, default=4, help="liver cases of the steps stage")
    parser.add_argument("--perf-inpainting", type=_mode_list, default=["latent", "direct"], help="inpainting modes timed")
    parser.add_argument("--baseline-iterations", type=int, default=6000, help="iterations if the baseline is trained")
    parser.add_argument("--retrain-baseline", action="store_true", help="train the UNet baseline even if its weights exist")
    parser.add_argument("--reuse", action="store_true", help="reuse finished bundle runs and timings with the same inputs, command and weights")
    parser.add_argument("--keep-images", action="store_true", help="keep the NIfTI outputs of the bundle runs under --work")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if args.steps_cases < 1 or args.baseline_iterations < 1:
        parser.error("--steps-cases and --baseline-iterations must be >= 1")
    if not (args.corpus / "datalists").is_dir():
        parser.error(f"no corpus at {args.corpus}: generate it with python -m corpus")
    args.corpus, args.output, args.work = args.corpus.resolve(), args.output.resolve(), args.work.resolve()
    if args.limit is not None:
        args.steps_cases = min(args.steps_cases, args.limit)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    info = provenance()
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", "benchmarks.paper_tables", *(sys.argv[1:] if argv is None else argv)])
    (args.output / "provenance.json").write_text(json.dumps({**info, "command": command}, indent=2))
    benchmark = PaperTables(args, info)
    failures = []
    for stage in [s for s in STAGES if s in args.only]:
        print(f"== {stage}", flush=True)
        stage_run: Callable[[], str] = getattr(benchmark, stage)
        stamp_line = stamp({**info, "date": now(), "load_average": list(os.getloadavg())}, args.limit)
        try:
            body = stage_run()
        except Exception as error:  # keep going: one stage's failure must not lose the others' hours
            traceback.print_exc()
            failures.append(stage)
            body = f"**Failed:** `{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}` (see the console log).\n"
        section = write_section(args.output, stage, stamp_line, body)
        print(section.read_text(), flush=True)
        write_summary(args.output, info, command)  # after every stage: an interrupted run keeps what it made
    print(f"wrote {args.output / 'README.md'}" + (f"; failed stages: {', '.join(failures)}" if failures else ""), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
