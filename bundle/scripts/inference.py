"""The bundle's runner: DiffuGTS on image files, NIfTI outputs, reports and evaluation.

``configs/inference.json`` declares a :class:`BundleRunner` as its ``evaluator``; ``evaluate.json``
switches evaluation on. A user mistake (missing or damaged file, a volume that is not 3D or too
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
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np
import psutil
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage
from nibabel.spatialimages import SpatialImage
from tqdm.auto import tqdm

from .atomic import atomic_write
from .checkpoints import file_sha256
from .errors import UserError
from .evaluation import case_scores, metrics_markdown, summarize
from .lesion_measurements import measure_lesions
from .metrics import DEFAULT_NSD_TOLERANCE_MM
from .output_staging import StagedOutputs, stage_outputs, stop_on_signals
from .pipeline import OPTIONAL_MAPS, DiffuGTSPipeline, OutputMap, PipelineOutput
from .preprocessing import Modality, plausibility_warnings
from .text import validate_prompt
from .versions import package_versions

__all__ = ["Case", "build_cases", "BundleRunner", "OUTPUT_SUFFIXES", "SAVABLE_MAPS", "parse_save_maps", "pipeline_maps"]

logger = logging.getLogger(__name__)

#: Files written per case and prompt: ``<name>[_<prompt>]<suffix>``.
OUTPUT_SUFFIXES = {
    OutputMap.MASK: "_seg.nii.gz",
    OutputMap.PROBABILITY: "_prob.nii.gz",
    OutputMap.AOVA_MAP: "_aova.nii.gz",
    OutputMap.PSEUDO_HEALTHY: "_pseudo_healthy.nii.gz",
}
_IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
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
    evaluating (the "AOVA map alone" row). Unknown names are left for the runner to report."""
    try:
        names = set(parse_save_maps(save_maps))
    except UserError:
        names = set()
    return tuple(name for name in OPTIONAL_MAPS if name in names or (evaluate and name is OutputMap.AOVA_MAP))


@dataclass(frozen=True)
class Case:
    """One volume to segment: its file, prompts, modality, and the reference mask if evaluated."""

    name: str
    image: Path
    prompts: tuple[str, ...]
    modality: Modality
    label: Path | None = None
    category: str | None = None
    expect_empty: bool = False


def _case_name(path: Path) -> str:
    name = path.name
    for extension in _IMAGE_EXTENSIONS:
        if name.lower().endswith(extension):
            return name[: -len(extension)]
    return path.stem


def _prompt_list(prompt: str | Sequence[str] | None) -> tuple[str, ...]:
    if prompt is None or prompt == "":  # not given (the config default); blank text is an error
        return ()
    items = [prompt] if isinstance(prompt, str) else list(prompt)
    return tuple(validate_prompt(p) for p in items)


def build_cases(
    *,
    input_image: str = "",
    datalist: str = "",
    datalist_key: str = "test",
    prompt: str | Sequence[str] | None = None,
    modality: str = "CT",
    require_labels: bool = False,
) -> list[Case]:
    """Cases from one image (``input_image``) or a decathlon datalist; ``UserError`` names the problem.

    Datalist entries may carry their own ``prompt``, ``modality`` and ``category``; ``label`` is
    the reference mask (needed for evaluation), or ``"expect_empty": true`` says the prompt names
    something absent (healthy scans, misleading prompts) so the reference is empty.
    """
    if bool(input_image) == bool(datalist):
        raise UserError("give either --input_image or --datalist (one of them)")
    default_prompts = _prompt_list(prompt)
    default_modality = Modality.parse(modality)
    if input_image:
        path = Path(input_image)
        if not path.is_file():
            raise UserError(f"input image not found: {path}")
        if not default_prompts:
            raise UserError("the prompt is empty: name a finding, e.g. --prompt 'liver tumor'")
        if require_labels:
            raise UserError("evaluation needs a --datalist with labels")
        return [Case(_case_name(path), path, default_prompts, default_modality)]
    path = Path(datalist)
    if not path.is_file():
        raise UserError(f"datalist not found: {path}")
    try:
        entries = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key=datalist_key)
    except (ValueError, KeyError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read datalist {path} (key '{datalist_key}'): {error}") from None
    cases: list[Case] = []
    for entry in entries:
        image = Path(entry["image"])
        if not image.is_file():
            raise UserError(f"image listed in {path} not found: {image}")
        try:
            prompts = _prompt_list(entry.get("prompt")) or default_prompts
        except UserError as error:
            raise UserError(f"datalist {path}, entry {image.name}: {error}") from None
        if not prompts:
            raise UserError(f"no prompt for {image}: give --prompt or a 'prompt' in the datalist")
        expect_empty = bool(entry.get("expect_empty", False))
        label = Path(entry["label"]) if entry.get("label") and not expect_empty else None
        if require_labels and not expect_empty and (label is None or not label.is_file()):
            raise UserError(f"reference label for {image} not found: {label}")
        modality_value = Modality.parse(entry.get("modality", default_modality))
        name = _unique_name(_case_name(image), prompts[0], {c.name for c in cases})
        cases.append(Case(name, image, prompts, modality_value, label, entry.get("category"), expect_empty))
    if not cases:
        raise UserError(f"datalist {path} has no entries under '{datalist_key}'")
    return cases


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def _unique_name(name: str, prompt: str, taken: set[str]) -> str:
    """``name``, or with the prompt and then a counter appended: a datalist may list one image
    several times (other prompts, or repeats) and every case keeps its own outputs."""
    if name not in taken:
        return name
    candidate, counter = f"{name}_{_slug(prompt)}", 2
    while candidate in taken:
        candidate, counter = f"{name}_{_slug(prompt)}_{counter}", counter + 1
    return candidate


def _output_stem(case: Case, prompt: str) -> str:
    return case.name if len(case.prompts) == 1 else f"{case.name}_{_slug(prompt)}"


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


def _header_geometry(path: Path) -> tuple[tuple[int, ...], tuple[float, ...], str | None] | None:
    """Shape, voxel size and what is wrong with the orientation (``None``: nothing) from a NIfTI
    header, without reading the voxels; ``None`` for other formats or an unreadable header (the
    loader then reports the file)."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    try:
        header = cast(nib.Nifti1Header, nib.load(str(path)).header)  # a .nii/.nii.gz file: NIfTI-1 or NIfTI-2 (a subclass)
        geometry = tuple(int(n) for n in header.get_data_shape()), tuple(float(z) for z in header.get_zooms())
        return (*geometry, _orientation_problem(header))
    except Exception:  # nibabel raises many types for damaged headers
        return None


def _orientation_problem(header: Any) -> str | None:
    """Why the header does not say where the voxels are, or ``None``.

    With no usable sform or qform, readers substitute ``diag(pixdim)`` (MONAI) or a centred grid
    (nibabel): left and right are then a guess, and the mask's header would not match the input's.
    """
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code > 0:
        rotation = header.get_sform()[:3, :3]
        if not np.all(np.isfinite(rotation)) or abs(np.linalg.det(rotation)) < 1e-9:
            return f"its sform (code {sform_code}) is all zeros or singular"
        return None
    if qform_code > 0:
        return None
    return "it has neither an sform nor a qform (both codes are 0)"


class BundleRunner:
    """Runs the pipeline over cases, writes outputs and (optionally) evaluation metrics.

    Args:
        pipeline_factory: builds the :class:`DiffuGTSPipeline` (called once, inside the error
            handling, so bad weights end in a one-line error too).
        cases_factory: returns the cases (validated before any model is loaded).
        output_dir: created if missing.
        evaluate: compute DSC, NSD and false-positive volume against each case's label.
        save_maps: maps written besides the mask (see :func:`parse_save_maps`); the pipeline
            must bring them back (``PipelineConfig.maps``, see :func:`pipeline_maps`).
        nsd_tolerance_mm: NSD tolerance, > 0.
        bundle_version: written into every report.
    """

    def __init__(
        self,
        pipeline_factory: Callable[[], DiffuGTSPipeline],
        cases_factory: Callable[[], list[Case]],
        output_dir: str,
        *,
        evaluate: bool = False,
        nsd_tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
        bundle_version: str = "",
        save_maps: str | Sequence[str] | None = (),
    ) -> None:
        self.pipeline_factory = pipeline_factory
        self.cases_factory = cases_factory
        self.output_dir = Path(output_dir)
        self.evaluate = evaluate
        self.nsd_tolerance_mm = float(nsd_tolerance_mm)
        self.bundle_version = bundle_version
        self.save_maps = save_maps
        self._saved: tuple[OutputMap, ...] = ()
        self.reports: list[dict[str, Any]] = []
        self._staged: StagedOutputs | None = None

    def run(self) -> list[dict[str, Any]]:
        self._staged = None
        try:
            with stop_on_signals():
                reports = self._run()
                self._staging().commit(order=self._commit_order())
                logger.info("wrote outputs of %d case(s) to %s", len(reports), self.output_dir)
                return reports
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

    def _run(self) -> list[dict[str, Any]]:
        if self.nsd_tolerance_mm <= 0:
            raise UserError(f"nsd_tolerance_mm must be > 0, got {self.nsd_tolerance_mm}")
        self._saved = (OutputMap.MASK, *parse_save_maps(self.save_maps))
        cases = self.cases_factory()
        self._refuse_overwriting_inputs(cases)
        self._prepare_output_dir()
        pipeline = self.pipeline_factory()
        for case in cases:  # before any voxel is read: a bad case late in a datalist fails fast
            self._check_header(pipeline, case)
        loader = LoadImage(image_only=True)
        self.reports = []
        for case in tqdm(cases, desc="cases", disable=len(cases) < 2):
            self.reports.append(self._run_case(pipeline, loader, case))
        if self.evaluate:
            self._write_metrics()
        return self.reports

    def _commit_order(self) -> list[str]:
        # Reports after the images they describe, the metrics last: whoever polls for a report
        # finds its masks there.
        reports = [f"{report['case']}_report.json" for report in self.reports]
        return reports + (["metrics.json", "metrics.md"] if self.evaluate else [])

    def _prepare_output_dir(self) -> None:
        self._staged = stage_outputs(self.output_dir)

    def _output_paths(self, case: Case) -> list[Path]:
        stems = [_output_stem(case, prompt) for prompt in case.prompts]
        names = [f"{stem}{OUTPUT_SUFFIXES[key]}" for stem in stems for key in self._saved] + [f"{case.name}_report.json"]
        return [self.output_dir / name for name in names]

    def _refuse_overwriting_inputs(self, cases: list[Case]) -> None:
        inputs = {path.resolve() for case in cases for path in (case.image, case.label) if path is not None}
        extra = [self.output_dir / "metrics.json", self.output_dir / "metrics.md"] if self.evaluate else []
        for path in [p for case in cases for p in self._output_paths(case)] + extra:
            if path.resolve() in inputs:
                raise UserError(f"the output {path} would replace the input file of that name: choose another --output_dir")

    @staticmethod
    def _check_header(pipeline: DiffuGTSPipeline, case: Case) -> None:
        geometry = _header_geometry(case.image)
        if geometry is None:
            return
        shape, spacing, orientation_problem = geometry
        try:
            if orientation_problem:
                raise UserError(
                    f"the image has no orientation: {orientation_problem}, so left and right cannot be told "
                    "apart; write its orientation into the header (sform or qform) and run again"
                )
            if len(shape) != 3:
                raise UserError(f"expected a 3D volume, got an image of shape {shape}")
            pipeline.check_memory(shape, spacing[:3], case.modality, len(case.prompts))
        except UserError as error:
            raise UserError(f"{case.image}: {error}") from None

    def _staging(self) -> StagedOutputs:
        """The staging folder of the run in progress (``_run`` creates it before anything is written)."""
        assert self._staged is not None, "no run in progress"
        return self._staged

    def _write(self, path: Path, write: Callable[[str], object]) -> None:
        atomic_write(self._staging().path(path.name), write)

    def _write_concurrently(self, writes: Sequence[tuple[Path, Callable[[str], object]]]) -> None:
        # gzip compression releases the GIL, so the maps of a large volume compress side by side
        # (benchmarks.hot_paths times both ways). A failure is raised after all writes ended; the staging folder, with
        # whatever was written, goes with the rest of the run.
        with ThreadPoolExecutor(max_workers=max(1, min(len(writes), _WRITE_THREADS))) as pool:
            futures = [pool.submit(self._write, path, write) for path, write in writes]
        errors = [error for error in (future.exception() for future in futures) if error is not None]
        if errors:
            raise errors[0]

    def _discard(self) -> None:
        # A failed or stopped run leaves nothing: no one mistakes half a datalist for a result.
        if self._staged is not None:
            self._staged.discard()
            self._staged = None

    def _run_case(self, pipeline: DiffuGTSPipeline, loader: LoadImage, case: Case) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            volume = loader(str(case.image))
        except Exception as error:  # readers raise many types for damaged files
            raise UserError(f"cannot read image {case.image}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        # Before the long part, so the user can stop a run on a wrong --modality; a volume that is
        # not 3D is refused by the pipeline instead.
        warnings = plausibility_warnings(volume, case.modality) if volume.ndim == 3 else []
        for warning in warnings:
            logger.warning("%s: %s", case.image, warning)
        try:
            output = pipeline.segment(volume, modality=case.modality, prompts=list(case.prompts))
        except UserError as error:
            raise UserError(f"{case.image}: {error}") from None
        report = self._write_case(pipeline, case, output, np.asarray(volume))
        report["stage_seconds"]["total"] = time.perf_counter() - start
        report["warnings"] = warnings
        if self.evaluate:
            report["metrics"] = self._case_metrics(case, output, pipeline)
        del volume, output  # before measuring: what stays resident is what the next case inherits
        report["resident_memory_mb"] = psutil.Process().memory_info().rss / 2**20
        report_path = self.output_dir / f"{case.name}_report.json"
        self._write(report_path, _json_writer(report))
        logger.info(
            "%s: %s in %.1f s",
            case.name,
            ", ".join(f"'{p['prompt']}' {p['tumor_volume_ml']:.2f} mL" for p in report["prompts"]),
            report["stage_seconds"]["total"],
        )
        return report

    def _write_case(self, pipeline: DiffuGTSPipeline, case: Case, output: PipelineOutput, image: np.ndarray) -> dict[str, Any]:
        prompts, writes = [], []
        for prompt, result in zip(case.prompts, output.results):
            stem = _output_stem(case, prompt)
            files = {}
            for key in self._saved:
                array = getattr(result, key)
                if array is None:
                    raise UserError(f"the pipeline did not compute the {key} map: add it to its config's maps")
                path = self.output_dir / f"{stem}{OUTPUT_SUFFIXES[key]}"
                writes.append((path, _nifti_writer(*_stored(key, array), affine=output.affine)))
                files[key] = path.name
            prompts.append(
                {
                    "prompt": result.prompt.prompt,
                    "finding": result.prompt.finding,
                    "organ": result.prompt.organ,
                    "tumor_volume_ml": result.tumor_volume_ml,
                    "lesions": [
                        lesion.to_json()
                        for lesion in measure_lesions(
                            result.mask,
                            output.affine,
                            image,
                            aova_map=result.aova_map,
                            probability=result.probability,
                            host_organ=result.prompt.organ,
                        )
                    ],
                    "files": files,
                }
            )
        self._write_concurrently(writes)
        return {
            "case": case.name,
            "input": str(case.image),
            "input_sha256": file_sha256(case.image),
            "modality": case.modality.value,
            "profile": pipeline.profile.name,
            "weights": pipeline.weights,
            "device": str(pipeline.device),
            "config": {k: (v.value if hasattr(v, "value") else v) for k, v in vars(pipeline.config).items()},
            "bundle_version": self.bundle_version,
            "versions": package_versions(("monai", "torch", "numpy", "nibabel")),
            "stage_seconds": dict(output.stage_seconds),
            "prompts": prompts,
            "intended_use": "research only; not for clinical decisions",
        }

    def _case_metrics(self, case: Case, output: PipelineOutput, pipeline: DiffuGTSPipeline) -> dict[str, Any]:
        """DSC, NSD and false-positive volume of the final mask and of the AOVA map alone.

        "AOVA alone" is the ablation of the paper's tables: the AOVA map above the coarse-mask
        threshold, without inpainting and residual learning, from the same pass.
        """
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
        return {
            "category": case.category or result.prompt.finding or result.prompt.prompt,
            "prompt": result.prompt.prompt,
            "reference_ml": float(reference.sum()) * float(np.prod(spacing)) / 1000.0,
            **scores,
        }

    def _write_metrics(self) -> None:
        per_case = [{"case": r["case"], **r["metrics"]} for r in self.reports]
        summary = summarize(per_case, list(METHOD_LABELS))
        payload = {"nsd_tolerance_mm": self.nsd_tolerance_mm, "per_category": summary, "per_case": per_case}
        self._write(self.output_dir / "metrics.json", _json_writer(payload))
        text = metrics_markdown(summary, METHOD_LABELS, self.nsd_tolerance_mm)
        self._write(self.output_dir / "metrics.md", lambda t: Path(t).write_text(text, encoding="utf-8"))
        logger.info("evaluation:\n%s", text)
