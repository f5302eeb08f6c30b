"""Build the whole corpus into a folder: cases, datalists, montage and a summary.

``python -m corpus --output DIR`` calls :func:`build_corpus`. Output layout: see
:mod:`.writer` for the case files; ``datalists/<name>.json`` (:mod:`.datalists`),
``montage.png`` (:mod:`.montage`) and ``corpus.json`` (configuration, counts, and the measured
contrast and noise per category).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from scripts.lesion_synthesis import SUBTLE_CONTRAST_HU
from scripts.preprocessing import Modality

from .categories import Category
from .datalists import DATALISTS, Split, case_seed, check_protocol, write_datalist
from .montage import MontagePanel, panel_from_case, write_montage
from .phantom import PhantomCase, generate_case, generate_hosted_case, real_healthy_case
from .quality import case_quality
from .real_anatomy import FetchError, RealSource, RealVolume, host_anatomy, load_real_volume
from .writer import CASE_FOLDERS, write_case, write_json

__all__ = ["CorpusConfig", "build_corpus", "generator_fingerprint"]

#: benchmark.md: at most this share of a CT category's cases under SUBTLE_CONTRAST_HU, subtle tail included.
SUBTLE_SHARE_LIMIT = 0.15

#: The files that decide what a case holds; a case written by other versions of them is made anew.
_GENERATOR_FILES = (
    "anatomy.py",
    "anatomy_ct.py",
    "anatomy_mr.py",
    "categories.py",
    "geometry.py",
    "labels.py",
    "lesions.py",
    "phantom.py",
    "real_anatomy.py",
    "realism.py",
    "shapes.py",
    "writer.py",
)
_BUNDLE_FILES = ("lesion_synthesis.py", "organ_labels.py", "preprocessing.py", "data/attributes.json")


def generator_fingerprint() -> str:
    """sha256 over the generator's source files: two corpora with the same fingerprint and seeds
    hold the same cases."""
    import hashlib

    here = Path(__file__).resolve().parent
    bundle = here.parent / "bundle" / "scripts"
    digest = hashlib.sha256()
    for path in [here / name for name in _GENERATOR_FILES] + [bundle / name for name in _BUNDLE_FILES]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _reusable(output: Path, job: _Job, fingerprint: str, size: Any, spacing: Any) -> dict[str, Any] | None:
    """The metadata of a case already written by this generator version (same seed and, for a
    phantom, the same grid), or None."""
    metadata_path = output / "metadata" / f"{job.case_id}.json"
    if not metadata_path.is_file():
        return None
    try:
        metadata = json.loads(metadata_path.read_text())
    except (OSError, ValueError):
        return None
    name = f"{job.case_id}.nii.gz"
    complete = all((output / folder / name).is_file() for folder in ("images", "labels", "organs", "parts"))
    same_grid = job.kind != "phantom" or (metadata.get("shape") == [int(n) for n in size] and np.allclose(metadata.get("spacing_mm", []), spacing))
    return metadata if complete and same_grid and metadata.get("generator_sha256") == fingerprint and metadata.get("seed") == job.seed else None


logger = logging.getLogger(__name__)


@dataclass
class CorpusConfig:
    """What :func:`build_corpus` writes.

    Attributes:
        output: corpus folder (created).
        cases_per_category: training cases per phantom category and per real host (1 to 10000).
        validation_cases: validation cases per category; default ``max(1, cases_per_category // 2)``.
        test_cases: test cases per category; default ``cases_per_category``.
        size: phantom array shape, each >= 16.
        ct_spacing: CT phantom spacing in mm; mr_spacing: MR phantom spacing in mm.
        seed_base: added to every seed (another, disjoint corpus for the same protocol).
        include_real: fetch and use the real volumes (skipped with a warning when impossible).
        montage: write ``montage.png``.
        reuse: keep cases the same generator version (:func:`generator_fingerprint`) already
            wrote into ``output`` with the same seed and size, instead of making them again.
    """

    output: Path
    cases_per_category: int = 4
    validation_cases: int | None = None
    test_cases: int | None = None
    size: tuple[int, int, int] = (128, 128, 128)
    ct_spacing: float = 2.0
    mr_spacing: float = 1.5
    seed_base: int = 0
    include_real: bool = True
    montage: bool = True
    reuse: bool = True

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        if self.validation_cases is None:
            self.validation_cases = max(1, self.cases_per_category // 2)
        if self.test_cases is None:
            self.test_cases = self.cases_per_category
        for name in ("cases_per_category", "validation_cases", "test_cases"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 10_000:
                raise ValueError(f"{name} must be an integer in [1, 10000], got {value!r}")
        if len(self.size) != 3 or any(int(n) < 16 or int(n) > 1024 for n in self.size):
            raise ValueError(f"size must be three integers in [16, 1024], got {self.size!r}")
        for name in ("ct_spacing", "mr_spacing"):
            if not 0.1 <= float(getattr(self, name)) <= 20.0:
                raise ValueError(f"{name} must be in [0.1, 20] mm, got {getattr(self, name)!r}")
        if self.seed_base < 0:
            raise ValueError(f"seed_base must be >= 0, got {self.seed_base}")

    def count(self, split: Split) -> int:
        count = {Split.TRAIN: self.cases_per_category, Split.VALIDATION: self.validation_cases, Split.TEST: self.test_cases}[split]
        assert count is not None  # __post_init__ fills the defaults
        return count


@dataclass(frozen=True)
class _Job:
    case_id: str
    kind: str  # "phantom", "hosted" or "real"
    category: Category
    seed: int
    source: RealSource | None = None


@dataclass
class _Written:
    entry: dict[str, Any]
    quality: dict[str, float] = field(default_factory=dict)


def _plan(config: CorpusConfig, volumes: dict[RealSource, RealVolume]) -> tuple[dict[str, list[_Job]], dict[str, _Job]]:
    per_list: dict[str, list[_Job]] = {}
    unique: dict[str, _Job] = {}
    for spec in DATALISTS:
        jobs: list[_Job] = []
        n = config.count(spec.split)
        for category in spec.categories:
            for index in range(n):
                seed = case_seed(spec.split, category, index, config.seed_base)
                jobs.append(_Job(f"{category.slug}_{seed:07d}", "phantom", category, seed))
        for source, category in spec.hosted:
            if source not in volumes:
                continue
            for index in range(n):
                seed = case_seed(spec.split, source, index, config.seed_base)
                jobs.append(_Job(f"{source.value}_{category.slug}_{seed:07d}", "hosted", category, seed, source))
        for source in spec.real_healthy:
            if source in volumes:
                category = Category.HEALTHY_CT if volumes[source].modality is Modality.CT else Category.HEALTHY_MR
                jobs.append(_Job(source.value, "real", category, 0, source))
        per_list[spec.name] = jobs
        for job in jobs:
            unique.setdefault(job.case_id, job)
    return per_list, unique


def _load_real(config: CorpusConfig) -> dict[RealSource, RealVolume]:
    wanted = {s for spec in DATALISTS for s in (*spec.real_healthy, *(h for h, _ in spec.hosted))}
    volumes: dict[RealSource, RealVolume] = {}
    if not config.include_real:
        return volumes
    for source in sorted(wanted, key=lambda s: s.value):
        try:
            volumes[source] = load_real_volume(source)
        except FetchError as error:
            logger.warning("real volume %s skipped: %s", source.value, error)
    return volumes


def _entry(job: _Job, case: PhantomCase, paths: dict[str, str]) -> dict[str, Any]:
    entry = {
        "image": f"../{paths['images']}",
        "label": f"../{paths['labels']}",
        "organs": f"../{paths['organs']}",
        "parts": f"../{paths['parts']}",
        "metadata": f"../{paths['metadata']}",
        "prompt": case.prompt,
        "category": case.category.value,
        "modality": case.modality.value,
        "seed": case.seed,
        "source": case.source,
    }
    if not case.prompt:
        # Healthy cases name no finding. An empty string would be taken for a path: MONAI's
        # load_decathlon_datalist joins every value that names an existing path with its folder.
        del entry["prompt"]
    return entry


def _entry_from_metadata(metadata: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    """The datalist entry of a reused case, as :func:`_entry` writes it."""
    entry = {
        "image": f"../{paths['images']}",
        "label": f"../{paths['labels']}",
        "organs": f"../{paths['organs']}",
        "parts": f"../{paths['parts']}",
        "metadata": f"../{paths['metadata']}",
        "prompt": metadata["prompt"],
        "category": metadata["category"],
        "modality": metadata["modality"],
        "seed": metadata["seed"],
        "source": metadata["source"],
    }
    if not metadata["prompt"]:
        del entry["prompt"]
    return entry


def _summarise(written: dict[str, _Written]) -> dict[str, dict[str, dict[str, float]]]:
    groups: dict[str, dict[str, list[float]]] = {}
    for item in written.values():
        key = f"{item.entry['category']} ({item.entry['source']})"
        for name, value in item.quality.items():
            if np.isfinite(value):
                groups.setdefault(key, {}).setdefault(name, []).append(value)
    summary: dict[str, dict[str, dict[str, float]]] = {
        key: {name: {"min": round(min(v), 2), "median": round(float(np.median(v)), 2), "max": round(max(v), 2), "n": len(v)} for name, v in metrics.items()}
        for key, metrics in sorted(groups.items())
    }
    for key, metrics in groups.items():
        if "contrast" in metrics and "contrast_relative" not in metrics:  # CT lesions: the tail benchmark.md bounds
            share = float(np.mean(np.abs(metrics["contrast"]) < SUBTLE_CONTRAST_HU))
            summary[key]["contrast"]["share_under_20_hu"] = round(share, 3)
            if share > SUBTLE_SHARE_LIMIT:
                logger.warning(
                    "%s: %.0f%% of cases measure under %.0f HU of contrast on the final image (benchmark.md allows %.0f%%)",
                    key,
                    100 * share,
                    SUBTLE_CONTRAST_HU,
                    100 * SUBTLE_SHARE_LIMIT,
                )
    return summary


def build_corpus(config: CorpusConfig, *, progress: bool = True) -> dict[str, Any]:
    """Generate and write every case of every datalist, then the datalists, montage and summary.

    Returns the summary also written to ``corpus.json``.

    Raises:
        ValueError: if the protocol check fails (see :func:`~.datalists.check_protocol`).
        ChecksumError: if a fetched real volume differs from its recorded checksum.
    """
    check_protocol()
    started = time.perf_counter()
    output = config.output
    output.mkdir(parents=True, exist_ok=True)
    volumes = _load_real(config)
    hosts = {}
    per_list, unique = _plan(config, volumes)
    logger.info("writing %d cases for %d datalists to %s", len(unique), len(per_list), output)
    written: dict[str, _Written] = {}
    panels: dict[tuple[str, str], MontagePanel] = {}
    spacing = {Modality.CT: (config.ct_spacing,) * 3, Modality.MR: (config.mr_spacing,) * 3}
    fingerprint = generator_fingerprint()

    def make(job: _Job) -> PhantomCase:
        if job.kind == "phantom":
            return generate_case(job.category, job.seed, size=config.size, spacing=spacing[job.category.modality])
        source = job.source
        assert source is not None  # hosted and real jobs name their volume
        if job.kind == "hosted":
            if source not in hosts:
                hosts[source] = host_anatomy(volumes[source])
            return generate_hosted_case(volumes[source], job.category, job.seed, host=hosts[source])
        return real_healthy_case(volumes[source])

    reused = 0
    for job in tqdm(unique.values(), desc="corpus", unit="case", disable=not progress):
        grid = spacing[job.category.modality]
        previous = _reusable(output, job, fingerprint, config.size, grid) if config.reuse else None
        key = (job.category.value, job.source.value if job.source else "phantom")
        if previous is not None:
            reused += 1
            paths = {folder: f"{folder}/{job.case_id}.json" if folder == "metadata" else f"{folder}/{job.case_id}.nii.gz" for folder in CASE_FOLDERS}
            written[job.case_id] = _Written(_entry_from_metadata(previous, paths), previous.get("measured", {}))
            if config.montage and key not in panels:
                panels[key] = panel_from_case(make(job))
            continue
        case = make(job)
        quality = case_quality(case)
        paths = write_case(output, case, {"measured": quality, "generator_sha256": fingerprint})
        written[job.case_id] = _Written(_entry(job, case, paths), quality)
        if config.montage and key not in panels:
            panels[key] = panel_from_case(case)
    if reused:
        logger.info("%d cases reused: written before by this generator version (%s)", reused, fingerprint[:12])
    for spec in DATALISTS:
        entries = [written[job.case_id].entry for job in per_list[spec.name]]
        write_datalist(output / "datalists" / f"{spec.name}.json", spec, entries)
    if config.montage and panels:
        write_montage(list(panels.values()), output / "montage.png")
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "orientation": "RAS+",
        "cases": len(written),
        "datalists": {name: len(jobs) for name, jobs in per_list.items()},
        "real_volumes": sorted(s.value for s in volumes),
        "measured": _summarise(written),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(output / "corpus.json", summary)
    logger.info("corpus written in %.1f s: %d cases", summary["seconds"], len(written))
    return summary
