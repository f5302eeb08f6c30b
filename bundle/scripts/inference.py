"""The bundle's inference, wired as MONAI wires a bundle (``configs/inference.json``).

``dataset`` (:class:`~.cases.CaseDataset`: the cases, each volume read when reached) ->
``evaluator`` (:class:`DiffuGTSEvaluator`, a MONAI ``Evaluator``) running ``inferer``
(:class:`DiffuGTSInferer`: the DiffuGTS pipeline on one volume, around the ``network``, the
trainable heads) on each case -> ``handlers``: :class:`CaseOutputWriter` writes each case's NIfTI
outputs and report, :class:`EvaluationWriter` (``evaluate.json``) each case's DSC, NSD and
false-positive volume and the run's ``metrics.json`` / ``metrics.md``.

What a run guarantees. A user mistake (missing or damaged file, a volume that is not 3D or too
large for the memory budget, unknown modality, empty prompt, unreadable weights, unwritable output
folder, a full disk) ends the run with one ``error: ...`` line naming the problem and the file,
and exit status 1. Every output is written into a staging folder and all of a run's outputs are
moved into the output folder when the run has succeeded (:mod:`.output_staging`); a run that
fails, or is stopped by SIGTERM, SIGINT or SIGHUP, leaves nothing, so an output folder holds the
outputs of finished runs only. Inputs are only read: an output that would replace an input file
is refused. A volume that runs but whose result is doubtful (a slice, intensities that contradict
the modality: :func:`~.preprocessing.plausibility_warnings`) is warned about in the log and in the
case report's ``warnings``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np
import psutil
import torch
from ignite.engine import Events
from monai.data import DataLoader
from monai.engines import Evaluator
from monai.engines.utils import IterationEvents
from monai.inferers import Inferer
from nibabel.spatialimages import SpatialImage
from tqdm.auto import tqdm

from .atomic import atomic_write
from .cases import Case, CaseDataset, check_header, slug
from .checkpoints import file_sha256
from .errors import UserError, exit_on_user_error
from .evaluation import case_scores, metrics_markdown, summarize
from .foundation import FoundationProfile
from .heads import DiffuGTSHeads
from .lesion_measurements import measure_lesions
from .metrics import DEFAULT_NSD_TOLERANCE_MM
from .output_staging import StagedOutputs, stage_outputs, stop_on_signals
from .pipeline import OPTIONAL_MAPS, DiffuGTSPipeline, OutputMap, PipelineOutput, build_pipeline
from .versions import package_versions

__all__ = [
    "DiffuGTSInferer",
    "DiffuGTSEvaluator",
    "CaseOutputWriter",
    "EvaluationWriter",
    "case_loader",
    "segment_cases",
    "OUTPUT_SUFFIXES",
    "SAVABLE_MAPS",
    "parse_save_maps",
    "pipeline_maps",
]

logger = logging.getLogger(__name__)

#: Files written per case and prompt: ``<name>[_<prompt>]<suffix>``.
OUTPUT_SUFFIXES = {
    OutputMap.MASK: "_seg.nii.gz",
    OutputMap.PROBABILITY: "_prob.nii.gz",
    OutputMap.AOVA_MAP: "_aova.nii.gz",
    OutputMap.PSEUDO_HEALTHY: "_pseudo_healthy.nii.gz",
}
#: Maps written besides the mask when asked for (``save_maps``): each is as large as the input.
SAVABLE_MAPS = (OutputMap.PROBABILITY, OutputMap.AOVA_MAP, OutputMap.PSEUDO_HEALTHY)
#: Maps in [0, 1] are stored as uint8 with the NIfTI scale slope (nibabel chooses it, every reader
#: applies it): a quarter of float32's bytes to compress, which was most of the write time on 512^2
#: volumes. The mask is computed from the float probability before it is stored.
_SCALED_UINT8 = (OutputMap.PROBABILITY, OutputMap.AOVA_MAP)
#: Output files compressed at the same time (at most one per core).
_WRITE_THREADS = min(4, os.cpu_count() or 1)
#: The evaluation's methods: the final mask and the AOVA map alone (the paper's ablation).
METHOD_LABELS = {"full": "DiffuGTS", "aova_only": "AOVA map alone"}


def _stored(key: OutputMap | str, array: np.ndarray) -> tuple[np.ndarray, Any]:
    """The array to write and the on-disk type nibabel should scale it into (None: as it is)."""
    key = OutputMap(key)
    if key is OutputMap.MASK:
        return np.asarray(array, dtype=np.uint8), None
    if key in _SCALED_UINT8:
        return np.asarray(array, dtype=np.float32), np.uint8
    # The pseudo-healthy image: int16 exactly when the scan's units are whole numbers (CT in HU,
    # most MR), so kept voxels stay bit-identical to the scan; float32 otherwise.
    if np.array_equal(array, np.round(array)) and array.min() >= -32768 and array.max() <= 32767:
        return array.astype(np.int16), None
    return array.astype(np.float32), None


def parse_save_maps(value: str | Sequence[str] | None) -> tuple[OutputMap, ...]:
    """The maps to write: a list of :data:`SAVABLE_MAPS`, or text: ``all``, ``none`` or names
    separated by commas (as the command line gives it). ``UserError`` names the valid values."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip().strip("[]").replace("'", "").replace('"', "")
        if text.lower() in ("all", "true"):
            return SAVABLE_MAPS
        items = [] if text.lower() in ("", "none", "false") else [item.strip() for item in text.split(",")]
    else:
        items = [str(item).strip() for item in value]
    unknown = [item for item in items if item not in SAVABLE_MAPS]
    if unknown:
        raise UserError(f"save_maps: unknown map(s) {', '.join(unknown)}: expected 'all', 'none' or some of {', '.join(SAVABLE_MAPS)}")
    return tuple(name for name in SAVABLE_MAPS if name in items)


def pipeline_maps(save_maps: str | Sequence[str] | None, evaluate: bool = False) -> tuple[OutputMap, ...]:
    """The maps the pipeline brings back to the input grid: those written, and the AOVA map when
    evaluating (the "AOVA map alone" row). Unknown names are left for :class:`CaseOutputWriter` to report."""
    try:
        names = set(parse_save_maps(save_maps))
    except UserError:
        names = set()
    return tuple(name for name in OPTIONAL_MAPS if name in names or (evaluate and name is OutputMap.AOVA_MAP))


def _output_stem(case: Case, prompt: str) -> str:
    return case.name if len(case.prompts) == 1 else f"{case.name}_{slug(prompt)}"


def _nifti_writer(array: np.ndarray, dtype: Any = None, *, affine: np.ndarray) -> Callable[[str], None]:
    image = nib.Nifti1Image(array, affine)
    if dtype is not None:
        image.set_data_dtype(dtype)  # floats are scaled into it with scl_slope / scl_inter
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return lambda temporary: nib.save(image, temporary)


def _json_writer(payload: Any) -> Callable[[str], None]:
    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")

    return write


class DiffuGTSInferer(Inferer):
    """The DiffuGTS pipeline on one volume: ``inferer(volume, network, modality=..., prompts=...)``
    returns the :class:`~.pipeline.PipelineOutput` (one result per prompt, on the volume's grid).

    ``network`` is the trainable part (the bundle's ``network_def``, :class:`~.heads.DiffuGTSHeads`);
    the frozen networks and the text encoder are built around it on first use, inside the run, so
    that unreadable weights end in the run's one-line error too.

    Args:
        profile: the foundation profile (the configs' ``foundation_profile``).
        options: keyword arguments of :func:`~.pipeline.build_pipeline` (``weights_dir``,
            ``vae_weights``, ``diffusion_weights``, ``heads_weights``, ``config``, ``device``);
            ``heads`` is the ``network`` each call passes.
    """

    def __init__(self, profile: FoundationProfile, **options: Any) -> None:
        if "heads" in options:
            raise TypeError("the heads are the network the inferer is called with, not an option")
        self.profile, self.options = profile, options
        self._pipeline: DiffuGTSPipeline | None = None

    @classmethod
    def of(cls, pipeline: DiffuGTSPipeline) -> DiffuGTSInferer:
        """An inferer around a pipeline already built (benchmarks reuse one across volumes)."""
        inferer = cls(pipeline.profile)
        inferer._pipeline = pipeline
        return inferer

    def pipeline(self, network: DiffuGTSHeads | None) -> DiffuGTSPipeline:
        if self._pipeline is None:
            self._pipeline = build_pipeline(self.profile, heads=network, **self.options)
        return self._pipeline

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> PipelineOutput:
        return self.pipeline(network).segment(inputs, *args, **kwargs)


class DiffuGTSEvaluator(Evaluator):
    """Runs :class:`DiffuGTSInferer` on every case of a data loader of :class:`~.cases.CaseDataset`
    items (batch size 1, no collation: see :func:`case_loader`), its handlers writing the outputs.

    Before the first case: refuses outputs that would replace an input, stages the output folder,
    builds the pipeline and checks every case's header. After the last: commits the outputs (the
    reports after their images, the metrics last). Any failure discards them all.

    Args:
        val_data_loader: the cases (:func:`case_loader`).
        network: the trainable heads (``network_def``).
        inferer: a :class:`DiffuGTSInferer`.
        output_dir: where the outputs appear; created if missing.
        val_handlers: :class:`CaseOutputWriter`, :class:`EvaluationWriter`, or any MONAI handler.
    """

    def __init__(
        self,
        val_data_loader: DataLoader,
        network: DiffuGTSHeads | None,
        inferer: DiffuGTSInferer,
        output_dir: str | os.PathLike,
        val_handlers: Sequence[Any] = (),
    ) -> None:
        # epoch_length: the cases are counted when the run starts (counting them checks them, and
        # MONAI's property checks build this object from a config that names no input).
        super().__init__(device=None, val_data_loader=val_data_loader, epoch_length=1, val_handlers=list(val_handlers), decollate=False)  # type: ignore[arg-type]
        self.network, self.inferer, self.output_dir = network, inferer, Path(output_dir)
        self.output_handlers = list(val_handlers)
        self.staged: StagedOutputs | None = None
        self.reports: list[dict[str, Any]] = []
        self.commit_last: list[str] = []

    @property
    def cases(self) -> list[Case]:
        return list(cast(CaseDataset, self.data_loader.dataset).cases)  # type: ignore[union-attr]

    @property
    def pipeline(self) -> DiffuGTSPipeline:
        return self.inferer.pipeline(self.network)

    def run(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Segment every case; the reports of the cases, once all outputs are in the output folder."""
        self.staged, self.reports, self.commit_last = None, [], []
        try:
            with stop_on_signals():
                self._prepare()
                with tqdm(total=len(self.cases), desc="cases", disable=len(self.cases) < 2) as bar:

                    def advance(engine: Any) -> None:
                        bar.update()

                    self.add_event_handler(Events.ITERATION_COMPLETED, advance)
                    try:
                        super().run()
                    finally:
                        self.remove_event_handler(advance, Events.ITERATION_COMPLETED)
                self._staging().commit(order=[f"{r['case']}_report.json" for r in self.reports] + self.commit_last)
                logger.info("wrote outputs of %d case(s) to %s", len(self.reports), self.output_dir)
                return self.reports
        except UserError as error:  # user mistakes: one line, no traceback
            self._discard()
            logger.error("%s", error)
            raise SystemExit(f"error: {error}") from None
        except OSError as error:  # a full disk, a folder removed meanwhile: the run's, not a bug
            self._discard()
            message = f"cannot write the outputs in {self.output_dir}: {error.strerror or error}"
            logger.error("%s", message)
            raise SystemExit(f"error: {message}") from None
        except BaseException:
            self._discard()
            raise

    def _prepare(self) -> None:
        cases = self.cases
        self.state.epoch_length = len(cases)
        inputs = {path.resolve() for case in cases for path in (case.image, case.label) if path is not None}
        for handler in self.output_handlers:
            for path in getattr(handler, "planned_outputs", lambda *_: [])(cases, self.output_dir):
                if path.resolve() in inputs:
                    raise UserError(f"the output {path} would replace the input file of that name: choose another --output_dir")
        self.staged = stage_outputs(self.output_dir)
        pipeline = self.pipeline
        self.state.device = pipeline.device
        for case in cases:  # before any voxel is read: a bad case late in a datalist fails fast
            check_header(pipeline, case)

    def _iteration(self, engine: Any, batchdata: dict[str, Any]) -> dict[str, Any]:
        case: Case = batchdata["case"]
        start = time.perf_counter()
        for warning in batchdata["warnings"]:
            logger.warning("%s: %s", case.image, warning)
        try:
            output = self.inferer(batchdata["image"], self.network, modality=case.modality, prompts=list(case.prompts))
        except UserError as error:
            raise UserError(f"{case.image}: {error}") from None
        engine.state.output = {"case": case, "image": batchdata["image"], "output": output, "warnings": batchdata["warnings"], "start": start}
        engine.fire_event(IterationEvents.MODEL_COMPLETED)  # the evaluation scores the case here
        return engine.state.output

    def _staging(self) -> StagedOutputs:
        """The staging folder of the run in progress (created before anything is written)."""
        assert self.staged is not None, "no run in progress"
        return self.staged

    def write(self, name: str, write: Callable[[str], object]) -> None:
        """Write the output ``name`` atomically into the staging folder."""
        atomic_write(self._staging().path(name), write)

    def _discard(self) -> None:
        # A failed or stopped run leaves nothing: no one mistakes half a datalist for a result.
        if self.staged is not None:
            self.staged.discard()
            self.staged = None


def case_loader(dataset: CaseDataset) -> DataLoader:
    """The cases one at a time, as they are: volumes of different sizes and their ``Case`` records
    do not collate into a batch."""
    return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=0, collate_fn=lambda items: items[0])


class CaseOutputWriter:
    """Handler: each case's mask (and the maps of ``save_maps``) as NIfTI, and its report JSON.

    Files per case and prompt: ``<name>[_<prompt>]<suffix>`` (:data:`OUTPUT_SUFFIXES`), and
    ``<name>_report.json`` (input and its sha256, weights, settings, stage times, lesions,
    warnings, and the metrics when evaluated).

    Args:
        save_maps: maps written besides the mask (see :func:`parse_save_maps`); the pipeline must
            bring them back (``PipelineConfig.maps``, see :func:`pipeline_maps`).
        bundle_version: written into every report.
    """

    def __init__(self, save_maps: str | Sequence[str] | None = (), bundle_version: str = "") -> None:
        with exit_on_user_error(logger):
            self.saved: tuple[OutputMap, ...] = (OutputMap.MASK, *parse_save_maps(save_maps))
        self.bundle_version = bundle_version

    def attach(self, engine: DiffuGTSEvaluator) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def planned_outputs(self, cases: Sequence[Case], output_dir: Path) -> list[Path]:
        names = [f"{_output_stem(case, prompt)}{OUTPUT_SUFFIXES[key]}" for case in cases for prompt in case.prompts for key in self.saved]
        return [output_dir / name for name in names + [f"{case.name}_report.json" for case in cases]]

    def __call__(self, engine: DiffuGTSEvaluator) -> None:
        state = engine.state.output
        case, output, pipeline = state["case"], state["output"], engine.pipeline
        report = self._write_images(engine, case, output, np.asarray(state["image"]))
        report["stage_seconds"]["total"] = time.perf_counter() - state["start"]
        report["warnings"] = state["warnings"]
        if "metrics" in state:
            report["metrics"] = state["metrics"]
        report.update(profile=pipeline.profile.name, weights=pipeline.weights, device=str(pipeline.device))
        report["config"] = {k: (v.value if hasattr(v, "value") else v) for k, v in vars(pipeline.config).items()}
        # Measured once the case's arrays are let go: what stays resident is what the next case inherits.
        state.pop("image"), state.pop("output")
        engine.state.batch = None
        report["resident_memory_mb"] = psutil.Process().memory_info().rss / 2**20
        engine.write(f"{case.name}_report.json", _json_writer(report))
        engine.reports.append(report)
        logger.info(
            "%s: %s in %.1f s",
            case.name,
            ", ".join(f"'{p['prompt']}' {p['tumor_volume_ml']:.2f} mL" for p in report["prompts"]),
            report["stage_seconds"]["total"],
        )

    def _write_images(self, engine: DiffuGTSEvaluator, case: Case, output: PipelineOutput, image: np.ndarray) -> dict[str, Any]:
        prompts, writes = [], []
        for prompt, result in zip(case.prompts, output.results):
            stem = _output_stem(case, prompt)
            files = {}
            for key in self.saved:
                array = getattr(result, key)
                if array is None:
                    raise UserError(f"the pipeline did not compute the {key} map: add it to its config's maps")
                name = f"{stem}{OUTPUT_SUFFIXES[key]}"
                writes.append((name, _nifti_writer(*_stored(key, array), affine=output.affine)))
                files[key] = name
            lesions = measure_lesions(
                result.mask, output.affine, image, aova_map=result.aova_map, probability=result.probability, host_organ=result.prompt.organ
            )
            prompts.append(
                {
                    "prompt": result.prompt.prompt,
                    "finding": result.prompt.finding,
                    "organ": result.prompt.organ,
                    "tumor_volume_ml": result.tumor_volume_ml,
                    "lesions": [lesion.to_json() for lesion in lesions],
                    "files": files,
                }
            )
        _write_concurrently(engine, writes)
        return {
            "case": case.name,
            "input": str(case.image),
            "input_sha256": file_sha256(case.image),
            "modality": case.modality.value,
            "bundle_version": self.bundle_version,
            "versions": package_versions(("monai", "torch", "numpy", "nibabel")),
            "stage_seconds": dict(output.stage_seconds),
            "prompts": prompts,
            "intended_use": "research only; not for clinical decisions",
        }


def _write_concurrently(engine: DiffuGTSEvaluator, writes: Sequence[tuple[str, Callable[[str], object]]]) -> None:
    # gzip compression releases the GIL, so the maps of a large volume compress side by side
    # (benchmarks.hot_paths times both ways). A failure is raised after all writes ended; the
    # staging folder, with whatever was written, goes with the rest of the run.
    with ThreadPoolExecutor(max_workers=max(1, min(len(writes), _WRITE_THREADS))) as pool:
        futures = [pool.submit(engine.write, name, write) for name, write in writes]
    errors = [error for error in (future.exception() for future in futures) if error is not None]
    if errors:
        raise errors[0]


class EvaluationWriter:
    """Handler: DSC, NSD and false-positive volume of each case (into its report), of the final
    mask and of the AOVA map alone, and the run's ``metrics.json`` and ``metrics.md``.

    "AOVA alone" is the ablation of the paper's tables: the AOVA map above the coarse-mask
    threshold, without inpainting and residual learning, from the same pass.

    Args:
        nsd_tolerance_mm: NSD tolerance, > 0.
        enabled: False makes it a no-op (``inference.json`` without ``evaluate.json``).
    """

    def __init__(self, nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM, enabled: bool = True) -> None:
        with exit_on_user_error(logger):
            if not float(nsd_tolerance_mm) > 0:
                raise UserError(f"nsd_tolerance_mm must be > 0, got {nsd_tolerance_mm}")
        self.nsd_tolerance_mm, self.enabled = float(nsd_tolerance_mm), bool(enabled)

    def attach(self, engine: DiffuGTSEvaluator) -> None:
        if self.enabled:
            engine.add_event_handler(IterationEvents.MODEL_COMPLETED, self.score_case)
            engine.add_event_handler(Events.COMPLETED, self.write_metrics)

    def planned_outputs(self, cases: Sequence[Case], output_dir: Path) -> list[Path]:
        return [output_dir / "metrics.json", output_dir / "metrics.md"] if self.enabled else []

    def score_case(self, engine: DiffuGTSEvaluator) -> None:
        state = engine.state.output
        case, output, pipeline = state["case"], state["output"], engine.pipeline
        result = output.results[0]
        if result.aova_map is None:
            raise UserError("evaluation needs the AOVA map: the pipeline's maps must include 'aova_map'")
        reference = np.zeros(result.mask.shape, bool) if case.expect_empty else np.asarray(cast(SpatialImage, nib.load(str(case.label))).dataobj) > 0
        if reference.shape != result.mask.shape:
            raise UserError(f"label {case.label} has shape {reference.shape}, image has {result.mask.shape}")
        spacing = tuple(float(s) for s in np.linalg.norm(output.affine[:3, :3], axis=0))
        scores = {
            method: case_scores(prediction, reference, spacing, self.nsd_tolerance_mm)
            for method, prediction in (("full", result.mask), ("aova_only", result.aova_map > pipeline.config.coarse_threshold))
        }
        state["metrics"] = {
            "category": case.category or result.prompt.finding or result.prompt.prompt,
            "prompt": result.prompt.prompt,
            "reference_ml": float(reference.sum()) * float(np.prod(spacing)) / 1000.0,
            **scores,
        }

    def write_metrics(self, engine: DiffuGTSEvaluator) -> None:
        per_case = [{"case": r["case"], **r["metrics"]} for r in engine.reports]
        summary = summarize(per_case, list(METHOD_LABELS))
        payload = {"nsd_tolerance_mm": self.nsd_tolerance_mm, "per_category": summary, "per_case": per_case}
        engine.write("metrics.json", _json_writer(payload))
        text = metrics_markdown(summary, METHOD_LABELS, self.nsd_tolerance_mm)
        engine.write("metrics.md", lambda t: Path(t).write_text(text, encoding="utf-8"))
        engine.commit_last += ["metrics.json", "metrics.md"]
        logger.info("evaluation:\n%s", text)


def segment_cases(
    inferer: DiffuGTSInferer,
    cases: Sequence[Case],
    output_dir: str | os.PathLike,
    *,
    save_maps: str | Sequence[str] | None = (),
    evaluate: bool = False,
    nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
    bundle_version: str = "",
) -> list[dict[str, Any]]:
    """What ``inference.json`` wires, in one call: the reports of ``cases`` once their outputs are written."""
    handlers = [EvaluationWriter(nsd_tolerance_mm, enabled=evaluate), CaseOutputWriter(save_maps, bundle_version)]
    evaluator = DiffuGTSEvaluator(case_loader(CaseDataset(cases=cases)), None, inferer, output_dir, handlers)
    return evaluator.run()
