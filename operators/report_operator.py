"""Report: an HTML report and a PNG montage for a human, a provenance JSON for an audit.

The HTML report (:mod:`.html_report`) is the one to open in a browser: a slice browser with the
masks, AOVA maps and pseudo-healthy images, and the lesion table. The montage stays for PACS
viewers that show only DICOM and images.

The montage shows slices of the series as they are stored (rows down, columns across, as a PACS
viewer shows them), two rows per prompt: the mask in red, then the AOVA (anomaly attention) map.
CT is shown in a soft-tissue window (-160 to 240 HU), MR between its 1st and 99th percentiles.

The provenance record says what went in (study and series UIDs, the selection rule, geometry),
what came out (SEG UIDs, tumor volumes), and how (profile, weights hashes, knobs, package
versions, timings).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and in containers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from monai.deploy.core import Fragment, Operator, OperatorSpec  # noqa: E402
from pydicom import dcmread  # noqa: E402

from scripts.preprocessing import CT_DISPLAY_WINDOW  # noqa: E402
from scripts.versions import package_versions as installed_versions  # noqa: E402

from . import __version__  # noqa: E402
from .app_config import AppConfig  # noqa: E402
from .html_report import HTML_REPORT_FILE_NAME, write_html_report  # noqa: E402
from .output_files import atomic_path  # noqa: E402
from .segmentation_run import SegmentationRun  # noqa: E402
from .series_rules import SelectionRule, describe_rules  # noqa: E402
from .stages import stage  # noqa: E402

__all__ = ["HTML_REPORT_FILE_NAME", "MONTAGE_FILE_NAME", "PROVENANCE_FILE_NAME", "ReportOperator", "montage_slices", "display_window", "provenance_record"]

logger = logging.getLogger(__name__)

MONTAGE_FILE_NAME = "diffugts_montage.png"
PROVENANCE_FILE_NAME = "diffugts_provenance.json"
_PACKAGES = ("torch", "monai", "monai-deploy-app-sdk", "holoscan-cu13", "highdicom", "pydicom", "numpy", "sentence-transformers")
_MASK_COLOURS = ListedColormap([(0, 0, 0, 0), (1.0, 0.1, 0.1, 0.55)])


def montage_slices(masks: np.ndarray, count: int) -> list[int]:
    """Slice indices to show: ``count`` evenly spread over the slices holding any mask voxel
    (all slices when the masks are empty). ``masks``: (prompts, slices, rows, columns)."""
    occupied = np.flatnonzero(masks.reshape(masks.shape[0], masks.shape[1], -1).any(axis=(0, 2)))
    pool = occupied if occupied.size else np.arange(masks.shape[1])
    picks = np.linspace(0, pool.size - 1, num=min(count, pool.size)).round().astype(int)
    return sorted({int(pool[i]) for i in picks})


def display_window(volume: np.ndarray, modality: str) -> tuple[float, float]:
    """Grey-level window: soft tissue for CT, 1st to 99th percentile for MR."""
    if modality == "CT":
        return CT_DISPLAY_WINDOW
    low, high = np.percentile(volume, [1, 99])
    return float(low), float(max(high, low + 1e-3))


def render_montage(run: SegmentationRun, path: Path, count: int) -> list[int]:
    """Draw the montage of ``run`` into ``path`` (PNG); return the slice indices shown."""
    masks = np.stack([run.mask_slices(i) for i in range(len(run.results))])
    slices = montage_slices(masks, count)
    low, high = display_window(run.volume, run.modality.value)
    rows, columns = 2 * len(run.results), len(slices)
    figure, axes = plt.subplots(rows, columns, figsize=(1.9 * columns + 0.4, 2.0 * rows + 0.3), squeeze=False)
    for p, result in enumerate(run.results):
        aova = run.aova_slices(p)
        for c, k in enumerate(slices):
            for r, overlay in ((2 * p, "mask"), (2 * p + 1, "aova")):
                axis = axes[r][c]
                axis.imshow(run.volume[k], cmap="gray", vmin=low, vmax=high, interpolation="nearest")
                if overlay == "mask":
                    axis.imshow(masks[p, k], cmap=_MASK_COLOURS, vmin=0, vmax=1, interpolation="nearest")
                else:
                    axis.imshow(np.ma.masked_less(aova[k], 0.05), cmap="inferno", vmin=0, vmax=1, alpha=0.6, interpolation="nearest")
                axis.set_xticks([])
                axis.set_yticks([])
                if r == 0:
                    axis.set_title(f"slice {k + 1}/{run.volume.shape[0]}", fontsize=8)
            axes[2 * p][0].set_ylabel(f"{result.prompt.prompt}\nmask {result.tumor_volume_ml:.1f} mL", fontsize=8)
            axes[2 * p + 1][0].set_ylabel(f"{result.prompt.prompt}\nAOVA map", fontsize=8)
    untrained = f", UNTRAINED {'+'.join(run.untrained)}" if run.untrained else ""
    figure.suptitle(
        f"DiffuGTS ({run.profile}{untrained}) on {run.modality.value} series {run.series.SeriesInstanceUID}: research use only",
        fontsize=9,
    )
    figure.tight_layout()
    with atomic_path(path) as partial:
        figure.savefig(partial, format="png", dpi=100)
    plt.close(figure)
    return slices


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape the result."""
    return {"diffugts-deploy": __version__, **installed_versions(_PACKAGES)}


def provenance_record(
    run: SegmentationRun, seg_path: Path, *, config: AppConfig, rules: list[SelectionRule], montage: Path | None, shown_slices: list[int]
) -> dict[str, Any]:
    """The provenance JSON content (see the module docstring)."""
    seg = dcmread(seg_path, stop_before_pixels=True)
    first = run.source_datasets[0]
    spacing = np.linalg.norm(run.affine[:3, :3], axis=0)
    return {
        "application": {"name": "DiffuGTS-Deploy", "version": __version__, "intended_use": "research only, not for diagnosis"},
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "input": {
            "study_instance_uid": str(run.study.StudyInstanceUID),
            "series_instance_uid": str(run.series.SeriesInstanceUID),
            "series_description": str(first.get("SeriesDescription", "")),
            "modality": run.modality.value,
            "selection_rule": run.selection_name,
            "sop_instances": len(run.source_datasets),
            "shape_slices_rows_columns": list(run.volume.shape),
            "spacing_mm_xyz": [round(float(s), 6) for s in spacing],
            "affine_ras_xyz": np.round(run.affine, 6).tolist(),
            "warnings": list(run.warnings),
        },
        "output": {
            "seg_file": seg_path.name,
            "seg_series_instance_uid": str(seg.SeriesInstanceUID),
            "seg_sop_instance_uid": str(seg.SOPInstanceUID),
            "montage_file": montage.name if montage else None,
            "html_report_file": HTML_REPORT_FILE_NAME,
            "montage_slices": [k + 1 for k in shown_slices],
        },
        "prompts": [
            {
                "segment_number": i + 1,
                "prompt": r.prompt.prompt,
                "finding": r.prompt.finding,
                "organ": r.prompt.organ,
                "tumor_volume_ml": round(float(r.tumor_volume_ml), 4),
                "voxels": int(r.mask.sum()),
                "aova_max": round(float(run.aova_map(i).max()), 4),
            }
            for i, r in enumerate(run.results)
        ],
        "profile": run.profile,
        "weights": run.weights,
        "weights_source": run.weights_source,
        "pipeline_config": run.pipeline_config,
        "series_rules": describe_rules(rules),
        "configuration": config.as_dict(),
        "versions": package_versions(),
        "timings_seconds": {
            "model_step": round(run.seconds, 3),
            "stages": {name: round(seconds, 3) for name, seconds in run.stage_seconds.items()},
        },
    }


class ReportOperator(Operator):
    """Write the HTML report, the montage PNG and the provenance JSON next to the SEG.

    Named inputs:
        segmentation: the model step's output.
        seg_path: the written SEG (its UIDs go into the provenance record).
    """

    def __init__(self, fragment: Fragment, *args, output_folder: str | os.PathLike, config: AppConfig, rules: list[SelectionRule], **kwargs) -> None:
        self.output_folder = Path(output_folder)
        self.config = config
        self.rules = rules
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("segmentation")
        spec.input("seg_path")

    def compute(self, op_input, op_output, context) -> None:
        self.write(op_input.receive("segmentation"), Path(op_input.receive("seg_path")))

    @stage("report (montage, HTML, provenance)")
    def write(self, run: SegmentationRun, seg_path: Path) -> tuple[Path, Path]:
        start = time.perf_counter()
        montage = self.output_folder / MONTAGE_FILE_NAME
        shown = render_montage(run, montage, self.config.montage_slices)
        html_start = time.perf_counter()
        report = write_html_report(
            run,
            self.output_folder / HTML_REPORT_FILE_NAME,
            window=display_window(run.volume, run.modality.value),
            versions=package_versions(),
        )
        html_seconds = time.perf_counter() - html_start
        record = provenance_record(run, seg_path, config=self.config, rules=self.rules, montage=montage, shown_slices=shown)
        record["timings_seconds"]["report"] = round(time.perf_counter() - start, 3)
        record["timings_seconds"]["html_report"] = round(html_seconds, 3)
        provenance = self.output_folder / PROVENANCE_FILE_NAME
        with atomic_path(provenance) as partial:
            partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        logger.info("wrote montage %s, HTML report %s (%.2f s) and provenance %s", montage, report, html_seconds, provenance)
        return montage, provenance
