"""The bundle's runner: DiffuGTS on image files, NIfTI outputs, reports and evaluation.

``configs/inference.json`` declares a :class:`BundleRunner` as its ``evaluator``; ``evaluate.json``
switches evaluation on. A user mistake (missing file, unknown modality, empty prompt, unreadable
weights, unwritable output folder) ends the run with one ``error: ...`` line and exit status 1,
before anything is written; every file is written under a temporary name and then renamed.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import monai
import nibabel as nib
import numpy as np
import torch
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage
from tqdm.auto import tqdm

from .atomic import atomic_write
from .foundation import file_sha256
from .metrics import DEFAULT_NSD_TOLERANCE_MM, dice_score, false_positive_volume_ml, normalized_surface_dice
from .pipeline import DiffuGTSPipeline, PipelineOutput
from .preprocessing import Modality
from .text import validate_prompt

__all__ = ["Case", "build_cases", "BundleRunner", "OUTPUT_SUFFIXES"]

logger = logging.getLogger(__name__)

#: Files written per case and prompt: ``<name>[_<prompt>]<suffix>``.
OUTPUT_SUFFIXES = {
    "mask": "_seg.nii.gz",
    "probability": "_prob.nii.gz",
    "aova_map": "_aova.nii.gz",
    "pseudo_healthy": "_pseudo_healthy.nii.gz",
}
_IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


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
    """Cases from one image (``input_image``) or a decathlon datalist; ``ValueError`` names the problem.

    Datalist entries may carry their own ``prompt``, ``modality`` and ``category``; ``label`` is
    the reference mask (needed for evaluation), or ``"expect_empty": true`` says the prompt names
    something absent (healthy scans, misleading prompts) so the reference is empty.
    """
    if bool(input_image) == bool(datalist):
        raise ValueError("give either --input_image or --datalist (one of them)")
    default_prompts = _prompt_list(prompt)
    default_modality = Modality.parse(modality)
    if input_image:
        path = Path(input_image)
        if not path.is_file():
            raise ValueError(f"input image not found: {path}")
        if not default_prompts:
            raise ValueError("the prompt is empty: name a finding, e.g. --prompt 'liver tumor'")
        if require_labels:
            raise ValueError("evaluation needs a --datalist with labels")
        return [Case(_case_name(path), path, default_prompts, default_modality)]
    path = Path(datalist)
    if not path.is_file():
        raise ValueError(f"datalist not found: {path}")
    try:
        entries = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key=datalist_key)
    except (ValueError, KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read datalist {path} (key '{datalist_key}'): {error}") from None
    cases = []
    for entry in entries:
        image = Path(entry["image"])
        if not image.is_file():
            raise ValueError(f"image listed in {path} not found: {image}")
        prompts = _prompt_list(entry.get("prompt")) or default_prompts
        if not prompts:
            raise ValueError(f"no prompt for {image}: give --prompt or a 'prompt' in the datalist")
        expect_empty = bool(entry.get("expect_empty", False))
        label = Path(entry["label"]) if entry.get("label") and not expect_empty else None
        if require_labels and not expect_empty and (label is None or not label.is_file()):
            raise ValueError(f"reference label for {image} not found: {label}")
        modality_value = Modality.parse(entry.get("modality", default_modality))
        name = _case_name(image)
        if any(c.name == name for c in cases):  # the same image again (another prompt): keep both outputs
            name = f"{name}_{_slug(prompts[0])}"
        cases.append(Case(name, image, prompts, modality_value, label, entry.get("category"), expect_empty))
    if not cases:
        raise ValueError(f"datalist {path} has no entries under '{datalist_key}'")
    return cases


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def _write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    atomic_write(path, lambda temporary: nib.save(image, temporary))


def _write_json(path: Path, payload: Any) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")

    atomic_write(path, write)


def software_versions() -> dict[str, str]:
    return {
        "monai": monai.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "nibabel": nib.__version__,
        "python": platform.python_version(),
    }


class BundleRunner:
    """Runs the pipeline over cases, writes outputs and (optionally) evaluation metrics.

    Args:
        pipeline_factory: builds the :class:`DiffuGTSPipeline` (called once, inside the error
            handling, so bad weights end in a one-line error too).
        cases_factory: returns the cases (validated before any model is loaded).
        output_dir: created if missing.
        evaluate: compute DSC, NSD and false-positive volume against each case's label.
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
    ) -> None:
        self.pipeline_factory = pipeline_factory
        self.cases_factory = cases_factory
        self.output_dir = Path(output_dir)
        self.evaluate = evaluate
        self.nsd_tolerance_mm = float(nsd_tolerance_mm)
        self.bundle_version = bundle_version
        self.reports: list[dict[str, Any]] = []

    def run(self) -> list[dict[str, Any]]:
        try:
            return self._run()
        except ValueError as error:  # user mistakes: one line, no traceback
            logger.error("%s", error)
            raise SystemExit(f"error: {error}") from None

    def _run(self) -> list[dict[str, Any]]:
        if self.nsd_tolerance_mm <= 0:
            raise ValueError(f"nsd_tolerance_mm must be > 0, got {self.nsd_tolerance_mm}")
        cases = self.cases_factory()
        self._prepare_output_dir()
        pipeline = self.pipeline_factory()
        loader = LoadImage(image_only=True)
        self.reports = []
        for case in tqdm(cases, desc="cases", disable=len(cases) < 2):
            self.reports.append(self._run_case(pipeline, loader, case))
        if self.evaluate:
            self._write_metrics()
        logger.info("wrote outputs of %d case(s) to %s", len(cases), self.output_dir)
        return self.reports

    def _prepare_output_dir(self) -> None:
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"cannot create output folder {self.output_dir}: {error.strerror}") from None
        if not os.access(self.output_dir, os.W_OK | os.X_OK):
            raise ValueError(f"output folder is not writable: {self.output_dir}")

    def _run_case(self, pipeline: DiffuGTSPipeline, loader: LoadImage, case: Case) -> dict[str, Any]:
        start = time.perf_counter()
        try:
            volume = loader(str(case.image))
        except Exception as error:  # readers raise many types for damaged files
            raise ValueError(f"cannot read image {case.image}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        try:
            output = pipeline.segment(volume, modality=case.modality, prompts=list(case.prompts))
        except ValueError as error:
            raise ValueError(f"{case.image}: {error}") from None
        report = self._write_case(pipeline, case, output)
        report["stage_seconds"]["total"] = time.perf_counter() - start
        if self.evaluate:
            report["metrics"] = self._case_metrics(case, output, pipeline)
        report_path = self.output_dir / f"{case.name}_report.json"
        _write_json(report_path, report)
        logger.info(
            "%s: %s in %.1f s", case.name,
            ", ".join(f"'{p['prompt']}' {p['tumor_volume_ml']:.2f} mL" for p in report["prompts"]),
            report["stage_seconds"]["total"],
        )
        return report

    def _write_case(self, pipeline: DiffuGTSPipeline, case: Case, output: PipelineOutput) -> dict[str, Any]:
        prompts = []
        for result in output.results:
            stem = case.name if len(output.results) == 1 else f"{case.name}_{_slug(result.prompt.prompt)}"
            files = {}
            for key, suffix in OUTPUT_SUFFIXES.items():
                array = getattr(result, key)
                path = self.output_dir / f"{stem}{suffix}"
                _write_nifti(path, array.astype(np.uint8 if key == "mask" else np.float32), output.affine)
                files[key] = path.name
            prompts.append(
                {
                    "prompt": result.prompt.prompt,
                    "finding": result.prompt.finding,
                    "organ": result.prompt.organ,
                    "tumor_volume_ml": result.tumor_volume_ml,
                    "files": files,
                }
            )
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
            "versions": software_versions(),
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
        reference = np.zeros(result.mask.shape, bool) if case.expect_empty else np.asarray(nib.load(str(case.label)).dataobj) > 0
        if reference.shape != result.mask.shape:
            raise ValueError(f"label {case.label} has shape {reference.shape}, image has {result.mask.shape}")
        spacing = tuple(float(s) for s in np.linalg.norm(output.affine[:3, :3], axis=0))
        scores = {}
        for method, prediction in (("full", result.mask), ("aova_only", result.aova_map > pipeline.config.coarse_threshold)):
            scores[method] = {
                "dsc": dice_score(prediction, reference),
                "nsd": normalized_surface_dice(prediction, reference, spacing, self.nsd_tolerance_mm),
                "false_positive_ml": false_positive_volume_ml(prediction, reference, spacing),
                "foreground_free": not bool(np.any(prediction)),
            }
        return {
            "category": case.category or result.prompt.finding or result.prompt.prompt,
            "prompt": result.prompt.prompt,
            "reference_ml": float(reference.sum()) * float(np.prod(spacing)) / 1000.0,
            **scores,
        }

    def _write_metrics(self) -> None:
        per_case = [{"case": r["case"], **r["metrics"]} for r in self.reports]
        categories: dict[str, list[dict[str, Any]]] = {}
        for row in per_case:
            categories.setdefault(row["category"], []).append(row)
        summary: dict[str, dict[str, Any]] = {}
        for category, rows in sorted(categories.items()):
            summary[category] = {"n": len(rows)}
            for method in ("full", "aova_only"):
                summary[category][method] = {
                    metric: {
                        "mean": float(np.mean([r[method][metric] for r in rows])),
                        "std": float(np.std([r[method][metric] for r in rows])),
                    }
                    for metric in ("dsc", "nsd", "false_positive_ml")
                }
                summary[category][method]["foreground_free_rate"] = float(np.mean([r[method]["foreground_free"] for r in rows]))
        payload = {"nsd_tolerance_mm": self.nsd_tolerance_mm, "per_category": summary, "per_case": per_case}
        _write_json(self.output_dir / "metrics.json", payload)
        lines = [
            f"| category | method | n | DSC | NSD ({self.nsd_tolerance_mm:g} mm) | false-positive mL | cases without foreground |",
            "|---|---|---|---|---|---|---|",
        ]
        for category, row in summary.items():
            for method, label in (("full", "DiffuGTS"), ("aova_only", "AOVA map alone")):
                cells = [f"{row[method][m]['mean']:.3f} ± {row[method][m]['std']:.3f}" for m in ("dsc", "nsd", "false_positive_ml")]
                free = f"{100 * row[method]['foreground_free_rate']:.0f}%"
                lines.append(f"| {category} | {label} | {row['n']} | " + " | ".join(cells) + f" | {free} |")
        text = "\n".join(lines) + "\n"
        atomic_write(self.output_dir / "metrics.md", lambda t: Path(t).write_text(text, encoding="utf-8"))
        logger.info("evaluation:\n%s", text)
