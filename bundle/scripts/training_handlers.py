"""Ignite handlers that make a training stage resumable, measured and stoppable at its gate.

A stage trained on two CPU cores runs for hours, across sittings that end whatever is running.
So every stage (``configs/train.json``) trains in short epochs and, after each one, MONAI's
``CheckpointSaver`` writes network, optimizer and trainer state; :class:`ResumeFromLatest`
loads the newest such checkpoint when the stage starts again, through MONAI's
``CheckpointLoader``, so the run continues at the next epoch. Loss and validation curves are
written every epoch and survive a restart (:class:`LossHistory`, :class:`ValidationHistory`).
A stage ends at its gate (:class:`StopAtGate`), at its iteration count, or when its wall-clock
budget for this sitting is spent (:class:`TimeBudget`), whichever comes first.

MONAI's own handlers cover saving and loading; what they lack is finding the newest checkpoint
at start (``CheckpointLoader`` needs a path known when the config is written), curves that
append across restarts, and a stop on a per-category gate.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from .atomic import atomic_write
from .checkpoints import atomic_save

if TYPE_CHECKING:
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi

__all__ = [
    "latest_checkpoint",
    "ResumeFromLatest",
    "LossHistory",
    "ValidationHistory",
    "ReconstructionHistory",
    "InpaintingHistory",
    "StopAtGate",
    "TimeBudget",
]

logger = logging.getLogger(__name__)

_EPOCH = re.compile(r"_epoch=(\d+)\.pt$")


def latest_checkpoint(directory: str | Path, prefix: str) -> Path | None:
    """The newest ``<prefix>_checkpoint_epoch=N.pt`` (MONAI ``CheckpointSaver`` names) in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.glob(f"{prefix}_checkpoint_epoch=*.pt") if (m := _EPOCH.search(p.name))]
    return max(found)[1] if found else None


class ResumeFromLatest:
    """Load the newest checkpoint of a stage, if there is one, when the trainer starts.

    Args:
        directory: where ``CheckpointSaver`` writes the stage's checkpoints.
        prefix: the saver's ``file_prefix`` (the stage name).
        load_dict: objects to restore, as for ``CheckpointLoader`` (network, optimizer, trainer).
        enabled: False starts from scratch even when a checkpoint exists.
    """

    def __init__(self, directory: str | Path, prefix: str, load_dict: Mapping[str, Any], enabled: bool = True) -> None:
        self.directory, self.prefix, self.load_dict, self.enabled = Path(directory), prefix, dict(load_dict), bool(enabled)
        self.loaded: Path | None = None

    def attach(self, engine: Any) -> None:
        from monai.handlers import CheckpointLoader

        path = latest_checkpoint(self.directory, self.prefix) if self.enabled else None
        if path is None:
            logger.info("%s: no checkpoint in %s, starting from scratch", self.prefix, self.directory)
            return
        logger.info("%s: resuming from %s", self.prefix, path)
        self.loaded = path
        # Checkpoints of earlier sittings that a newer one supersedes (the saver prunes only its own).
        for old in self.directory.glob(f"{self.prefix}_checkpoint_epoch=*.pt"):
            if old != path:
                old.unlink()
        CheckpointLoader(load_path=str(path), load_dict=self.load_dict, map_location="cpu").attach(engine)  # type: ignore[arg-type]  # MONAI hints a dict; torch.load takes "cpu"
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self._drop_superseded)

    def _drop_superseded(self, engine: Any) -> None:
        """Remove the loaded checkpoint once a newer one is on disk (never before: a run cut off
        before its first new checkpoint must still find it)."""
        newest = latest_checkpoint(self.directory, self.prefix)
        if self.loaded is not None and newest is not None and newest != self.loaded and self.loaded.exists():
            self.loaded.unlink()


class LossHistory:
    """Records ``engine.state.output['loss']`` per iteration; writes the curve after every epoch.

    On a resumed run the curve already written is read back and cut to the iteration the trainer
    resumed from, so that the file always matches the weights of the latest checkpoint. That is
    done at the first iteration, after every ``STARTED`` handler (the checkpoint loader's among
    them) has run, whatever order they were attached in.
    """

    def __init__(self, path: str | Path, stage: str) -> None:
        self.path = Path(path)
        self.stage = stage
        self.losses: list[float] = []
        self.seconds_before = 0.0
        self.start = 0.0
        self.restored = False

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _started(self, engine: Any) -> None:
        self.start = time.perf_counter()
        self.restored = False

    def _restore(self, resumed_at: int) -> None:
        self.restored = True
        if resumed_at and self.path.exists():
            previous = json.loads(self.path.read_text())
            self.losses = list(previous.get("loss", []))[:resumed_at]
            self.seconds_before = float(previous.get("seconds", 0.0))

    def _record(self, engine: Any) -> None:
        if not self.restored:
            self._restore(int(engine.state.iteration) - 1)
        output = engine.state.output
        # A decollating MONAI trainer repeats the batch's loss in every item.
        self.losses.append(float((output[0] if isinstance(output, list) else output)["loss"]))

    def _write(self, engine: Any) -> None:
        payload = {"stage": self.stage, "loss": self.losses, "seconds": self.seconds_before + time.perf_counter() - self.start}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda temporary: Path(temporary).write_text(json.dumps(payload)))


def _dice(prediction: torch.Tensor, label: torch.Tensor) -> float:
    """Dice of two binary volumes; 1 when both are empty (nothing to find, nothing found)."""
    p, g = prediction.bool(), label.bool()
    total = int(p.sum()) + int(g.sum())
    return 1.0 if total == 0 else 2.0 * int((p & g).sum()) / total


class _ValidationCurve:
    """What both validation histories share: the JSON curve (read back on a resumed run) and
    the weights kept when a pass improves on every earlier one."""

    def __init__(self, path: str | Path, network: torch.nn.Module, best_path: str | Path | None, epoch_length: int) -> None:
        self.path, self.network, self.epoch_length = Path(path), network, int(epoch_length)
        self.best_path = Path(best_path) if best_path else None
        self.records: list[dict[str, Any]] = json.loads(self.path.read_text()).get("validation", []) if self.path.exists() else []
        self.started = time.perf_counter()

    def _iteration(self, engine: Any) -> int:
        """The trainer iteration of this pass; records of it or later (a resumed run validating
        again) are dropped, the newer replaces them."""
        iteration = int(engine.state.epoch) * self.epoch_length
        self.records = [r for r in self.records if r["iteration"] < iteration]
        return iteration

    def _flush(self, improved: bool) -> None:
        if improved and self.best_path is not None:
            module = cast(torch.nn.Module, self.network.module) if hasattr(self.network, "module") else self.network  # DDP wraps it in .module
            atomic_save({k: v.detach().cpu() for k, v in module.state_dict().items()}, self.best_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"validation": self.records}
        atomic_write(self.path, lambda temporary: Path(temporary).write_text(json.dumps(payload, indent=1)))


class ValidationHistory(_ValidationCurve):
    """Per-category Dice of each validation pass, appended to a JSON curve; keeps the best weights.

    Attach to the evaluator (``SupervisedEvaluator`` with sigmoid + threshold post-processing and
    decollated outputs holding ``pred``, ``label`` and ``category``). After each pass the record
    ``{iteration, seconds, per_category, mean, min}`` is appended; when ``mean`` improves, the
    network's weights are saved to ``best_path``.

    Args:
        path: the curve's JSON file (read back on a resumed run).
        network: the network being validated (its weights go to ``best_path``).
        best_path: where the best weights are written; None to skip.
        epoch_length: trainer iterations per epoch (the evaluator knows only the epoch).
    """

    def __init__(self, path: str | Path, network: torch.nn.Module, best_path: str | Path | None, epoch_length: int) -> None:
        super().__init__(path, network, best_path, epoch_length)
        self.scores: dict[str, list[float]] = {}

    @property
    def best(self) -> float:
        return max((r["mean"] for r in self.records), default=-1.0)

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Any) -> None:
        self.scores = {}

    def _record(self, engine: Any) -> None:
        # The evaluator's output holds image, label and prediction; the category is in the batch.
        batch = engine.state.batch
        items = batch if isinstance(batch, list) else [batch]
        for output, item in zip(engine.state.output, items):
            category = item.get("category", "all")
            category = category[0] if isinstance(category, (list, tuple)) else category
            self.scores.setdefault(str(category), []).append(_dice(output["pred"] > 0.5, output["label"] > 0.5))

    def _write(self, engine: Any) -> None:
        per_category = {c: float(np.mean(v)) for c, v in sorted(self.scores.items())}
        if not per_category:
            return
        iteration = self._iteration(engine)
        mean = float(np.mean(list(per_category.values())))
        improved = mean > self.best
        record = {
            "iteration": iteration,
            "seconds": round(time.perf_counter() - self.started, 1),
            "per_category": per_category,
            "mean": mean,
            "min": float(min(per_category.values())),
            "best": improved,
        }
        self.records.append(record)
        engine.state.metrics["val_mean_dice"] = mean
        logger.info("validation at iteration %d: mean Dice %.3f, %s", iteration, mean, ", ".join(f"{c} {v:.3f}" for c, v in per_category.items()))
        self._flush(improved)


#: Soft-tissue organs whose reconstruction error in HU the VAE's gate bounds (organ label ids:
#: muscle, liver, kidney, pancreas, spleen; see ``scripts.organ_labels``).
SOFT_TISSUE_LABELS = (2, 5, 7, 8, 9)
#: HU per unit of the pipeline's CT normalisation ([-1000, 1000] HU -> [0, 1]).
HU_PER_UNIT = 2000.0


class ReconstructionHistory(_ValidationCurve):
    """The VAE's gate measures (method.md, the campaign's gates) per validation pass.

    Attach to an evaluator whose ``pred`` is the reconstruction and ``label`` the input (both in
    the pipeline's [0, 1] intensities, on the working grid) and whose batch carries ``modality``
    and, for CT, ``organs``. Per pass it appends ``{iteration, per_modality: {CT: {psnr_db,
    soft_tissue_mae_hu}, MR: {psnr_db}}, passed}`` to a JSON curve and keeps the best weights
    (highest CT PSNR).

    Args:
        path, network, best_path, epoch_length: as for :class:`ValidationHistory`.
        ct_psnr_db, ct_mae_hu, mr_psnr_db: the gate (CT PSNR >= 32 dB with a soft-tissue mean
            absolute error <= 15 HU, MR PSNR >= 28 dB by default).
    """

    def __init__(
        self,
        path: str | Path,
        network: torch.nn.Module,
        best_path: str | Path | None,
        epoch_length: int,
        ct_psnr_db: float = 32.0,
        ct_mae_hu: float = 15.0,
        mr_psnr_db: float = 28.0,
    ) -> None:
        super().__init__(path, network, best_path, epoch_length)
        self.gate = {"ct_psnr_db": float(ct_psnr_db), "ct_mae_hu": float(ct_mae_hu), "mr_psnr_db": float(mr_psnr_db)}
        self.values: dict[str, dict[str, list[float]]] = {}

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.values.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._record)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _record(self, engine: Any) -> None:
        batch = engine.state.batch
        items = batch if isinstance(batch, list) else [batch]
        for output, item in zip(engine.state.output, items):
            modality = item.get("modality", "CT")
            modality = str(modality[0] if isinstance(modality, (list, tuple)) else modality)
            reconstruction, image = output["pred"].float().clamp(0, 1), output["label"].float()
            mse = float(((reconstruction - image) ** 2).mean())
            values = self.values.setdefault(modality, {"psnr_db": [], "soft_tissue_mae_hu": []})
            values["psnr_db"].append(10.0 * float(np.log10(1.0 / max(mse, 1e-12))))
            organs = item.get("organs")
            if modality == "CT" and organs is not None:
                tissue = torch.isin(torch.as_tensor(organs).round().long(), torch.tensor(SOFT_TISSUE_LABELS)).reshape(reconstruction.shape)
                if tissue.any():
                    error = (reconstruction - image).abs()[tissue]
                    values["soft_tissue_mae_hu"].append(float(error.mean()) * HU_PER_UNIT)

    def _write(self, engine: Any) -> None:
        per_modality = {m: {k: float(np.mean(v)) for k, v in vals.items() if v} for m, vals in sorted(self.values.items())}
        if not per_modality:
            return
        iteration = self._iteration(engine)
        ct, mr = per_modality.get("CT", {}), per_modality.get("MR", {})
        passed = (
            ct.get("psnr_db", 0.0) >= self.gate["ct_psnr_db"]
            and ct.get("soft_tissue_mae_hu", np.inf) <= self.gate["ct_mae_hu"]
            and ("MR" not in per_modality or mr.get("psnr_db", 0.0) >= self.gate["mr_psnr_db"])
        )
        best = max((r["per_modality"].get("CT", {}).get("psnr_db", -1.0) for r in self.records), default=-1.0)
        improved = ct.get("psnr_db", -1.0) > best
        self.records.append(
            {
                "iteration": iteration,
                "seconds": round(time.perf_counter() - self.started, 1),
                "per_modality": per_modality,
                "gate": self.gate,
                "passed": bool(passed),
                "best": improved,
            }
        )
        logger.info(
            "reconstruction at iteration %d: %s%s",
            iteration,
            "; ".join(f"{m} " + ", ".join(f"{k} {v:.2f}" for k, v in vals.items()) for m, vals in per_modality.items()),
            " (gate met)" if passed else "",
        )
        self._flush(improved)


class InpaintingHistory(_ValidationCurve):
    """The diffusion stage's gate (:mod:`scripts.inpainting_gate`) every ``interval`` epochs.

    Each pass inpaints the true lesion of every validation item with the UNet being trained and
    appends ``{iteration, per_category: {contrast_drop, outside_ratio}, contrast_drop,
    outside_ratio, passed}`` (case means) to a JSON curve; the weights of the pass with the
    largest contrast drop among those within the outside-error bound are kept at ``best_path``.

    Args:
        path, network, best_path, epoch_length: as for :class:`ValidationHistory`.
        dataset: validation items on the working grid (``image``, ``label``, ``organs``,
            ``spacing``, ``class_label``, ``category``), seen categories only.
        vae: the frozen VAE; scheduler, scale_factor: as the stage trains with.
        interval: epochs between passes.
        num_steps, strength: the inpainting settings of inference.
    """

    def __init__(
        self,
        path: str | Path,
        network: torch.nn.Module,
        best_path: str | Path | None,
        epoch_length: int,
        dataset: Any,
        vae: AutoencoderKlMaisi,
        scheduler: Any,
        scale_factor: float,
        interval: int = 10,
        num_steps: int = 10,
        strength: float = 0.8,
    ) -> None:
        super().__init__(path, network, best_path, epoch_length)
        self.dataset, self.vae, self.scheduler, self.scale_factor = dataset, vae, scheduler, float(scale_factor)
        self.interval, self.num_steps, self.strength = int(interval), int(num_steps), float(strength)

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Any) -> None:
        from .inpainting_gate import OUTSIDE_ERROR_RATIO, gate_passed, inpainting_effect
        from .method import FrozenFoundation

        module = cast(torch.nn.Module, self.network.module) if hasattr(self.network, "module") else self.network  # DDP wraps it in .module
        device = next(module.parameters()).device
        foundation = FrozenFoundation(self.vae, module, self.scheduler, self.scale_factor)
        module.eval()
        effects: dict[str, list[Any]] = {}
        try:
            for index in range(len(self.dataset)):
                item = self.dataset[index]
                lesion = torch.as_tensor(item["label"])[0] > 0.5
                if not lesion.any():
                    continue
                effect = inpainting_effect(
                    foundation,
                    torch.as_tensor(item["image"]).as_subclass(torch.Tensor)[None].to(device),
                    lesion.to(device),
                    torch.as_tensor(item["organs"])[0].to(device),
                    spacing=torch.as_tensor(item["spacing"])[None].to(device) * 100.0,
                    class_labels=torch.as_tensor(item["class_label"]).reshape(1).to(device),
                    num_steps=self.num_steps,
                    strength=self.strength,
                    seed=index,
                )
                effects.setdefault(str(item.get("category", "all")), []).append(effect)
        finally:
            module.train()
        if not effects:
            return
        iteration = self._iteration(engine)
        per_category = {c: {k: float(np.mean([getattr(e, k) for e in v])) for k in ("contrast_drop", "outside_ratio")} for c, v in sorted(effects.items())}
        every = [e for v in effects.values() for e in v]
        summary = {k: float(np.mean([getattr(e, k) for e in every])) for k in ("contrast_drop", "outside_ratio")}
        passed = gate_passed(summary)
        eligible = [r["contrast_drop"] for r in self.records if r["outside_ratio"] <= OUTSIDE_ERROR_RATIO]
        improved = summary["outside_ratio"] <= OUTSIDE_ERROR_RATIO and summary["contrast_drop"] > max(eligible, default=-np.inf)
        self.records.append(
            {
                "iteration": iteration,
                "seconds": round(time.perf_counter() - self.started, 1),
                "cases": len(every),
                "per_category": per_category,
                **summary,
                "passed": bool(passed),
                "best": bool(improved),
            }
        )
        logger.info(
            "inpainting at iteration %d: contrast drop %.2f, outside error %.2fx the VAE's%s",
            iteration,
            summary["contrast_drop"],
            summary["outside_ratio"],
            " (gate met)" if passed else "",
        )
        self._flush(improved)


class StopAtGate:
    """Stop the trainer once the latest validation record meets the stage's gate.

    Args:
        history: the stage's :class:`ValidationHistory` (per-category Dice, gated on ``mean`` and
            ``each``) or :class:`ReconstructionHistory` (whose records say whether they
            ``passed``; give ``mean=None``).
        mean: the gate on the mean over categories; None to use the records' ``passed``.
        each: the gate every category must reach (0 for none).
        patience: consecutive validations that must meet the gate (guards against one lucky pass).
    """

    def __init__(self, history: Any, mean: float | None, each: float = 0.0, patience: int = 1) -> None:
        self.history, self.each, self.patience = history, float(each), int(patience)
        self.mean = None if mean is None else float(mean)

    def _met(self, record: dict[str, Any]) -> bool:
        if self.mean is None:
            return bool(record.get("passed"))
        return record["mean"] >= self.mean and record["min"] >= self.each

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        recent: Sequence[dict[str, Any]] = self.history.records[-self.patience :]
        if len(recent) == self.patience and all(self._met(r) for r in recent):
            logger.info("gate met on %d validation(s) in a row: stopping at iteration %d", self.patience, engine.state.iteration)
            engine.terminate()


class TimeBudget:
    """Stop the trainer at the end of the first epoch after ``seconds`` of this sitting (0: never).

    The checkpoint of that epoch is written first (attach after the ``CheckpointSaver``), so the
    next sitting resumes where this one stopped.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.start = time.perf_counter()

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _started(self, engine: Any) -> None:
        self.start = time.perf_counter()

    def __call__(self, engine: Any) -> None:
        if self.seconds > 0 and time.perf_counter() - self.start >= self.seconds:
            logger.info("time budget of %.0f s spent: stopping at iteration %d", self.seconds, engine.state.iteration)
            engine.terminate()
