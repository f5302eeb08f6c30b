"""Memory soak: many cases in a row through one bundle process, resident memory after each.

    .venv/bin/python benchmarks/memory_soak.py [--cases 20] [--size 64] [--max-growth 0.10] [--work DIR]

Writes ``--cases`` phantom volumes as NIfTI (``SOURCES`` distinct phantoms, CT and MR; case ``i``
is a byte copy of source ``i % len(SOURCES)``), runs the bundle's batch mode once over all of
them (``python -m monai.bundle run --datalist ...``: one process, one pipeline), then prints the
resident memory each case's report records after the case, the largest growth over the first
case, and whether identical inputs gave identical masks.

Exit status 1 when the growth exceeds ``--max-growth`` or two identical inputs gave different
masks; 0 otherwise. The results recorded in ``benchmarks/results/memory_soak.txt`` come from the
default command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bundle"))
sys.path.insert(0, str(ROOT))  # the corpus package

from corpus import generate_case  # noqa: E402

#: (category, seed, prompt): two CT findings, an MR finding and a healthy CT asked for a tumor.
SOURCES = (
    ("liver tumor", 1, "liver tumor"),
    ("kidney tumor", 2, "kidney tumor"),
    ("brain tumor", 3, "brain tumor"),
    ("healthy CT", 4, "liver tumor"),
)


@dataclass
class SoakResult:
    names: list[str]
    resident_mb: list[float]
    max_growth: float  # largest RSS after a later case over the RSS after the first, minus 1
    mismatched: list[str]  # cases whose mask or probability differs from the first case of the same source


def write_cases(folder: Path, cases: int, size: int, distinct: int = len(SOURCES)) -> tuple[Path, dict[str, int]]:
    """The inputs and their datalist (the first ``distinct`` sources, repeated); returns the
    datalist and each case's source index."""
    folder.mkdir(parents=True, exist_ok=True)
    originals = []
    for index, (category, seed, _prompt) in enumerate(SOURCES[: min(cases, distinct)]):
        case = generate_case(category, seed, size=(size, size, size))
        path = folder / f"source{index}.nii.gz"
        nib.save(nib.Nifti1Image(case.image, case.affine), path)
        originals.append((path, case.modality.value))
    entries, sources = [], {}
    for number in range(1, cases + 1):
        index = (number - 1) % len(originals)
        name = f"case{number:02d}"
        shutil.copyfile(originals[index][0], folder / f"{name}.nii.gz")
        entries.append({"image": f"{name}.nii.gz", "prompt": SOURCES[index][2], "modality": originals[index][1]})
        sources[name] = index
    datalist = folder / "datalist.json"
    datalist.write_text(json.dumps({"test": entries}, indent=1))
    return datalist, sources


def run_batch(datalist: Path, output: Path, **overrides) -> subprocess.CompletedProcess:
    """The bundle's batch mode, as a user runs it, in its own process."""
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--bundle_root",
        str(ROOT / "bundle"),
        "--config_file",
        str(ROOT / "bundle" / "configs" / "inference.json"),
        "--datalist",
        str(datalist),
        "--output_dir",
        str(output),
        "--progress",
        "False",
        "--save_maps",
        "probability",
    ]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def summarize(output: Path, sources: dict[str, int]) -> SoakResult:
    names = sorted(sources)
    resident = [float(json.loads((output / f"{name}_report.json").read_text())["resident_memory_mb"]) for name in names]
    growth = max((r / resident[0] - 1.0 for r in resident[1:]), default=0.0)
    first_of_source: dict[int, list[np.ndarray]] = {}
    mismatched = []
    for name in names:
        # The probability too: an all-empty mask would match by chance, the probabilities not.
        arrays = [np.asarray(cast(SpatialImage, nib.load(output / f"{name}{suffix}")).dataobj) for suffix in ("_seg.nii.gz", "_prob.nii.gz")]
        reference = first_of_source.setdefault(sources[name], arrays)
        if not all(np.array_equal(a, b) for a, b in zip(arrays, reference)):
            mismatched.append(name)
    return SoakResult(names, resident, growth, mismatched)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20, help="cases in the batch (>= 2, default 20)")
    parser.add_argument("--size", type=int, default=64, help="phantom size N (N^3 voxels, >= 32, default 64)")
    parser.add_argument("--max-growth", type=float, default=0.10, help="largest accepted RSS growth over the first case (default 0.10)")
    parser.add_argument("--num-steps", type=int, default=None, help="diffusion steps (default: the profile's)")
    parser.add_argument("--work", type=Path, default=None, help="keep inputs and outputs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.cases < 2 or args.size < 32:
        parser.error("--cases must be >= 2 and --size >= 32")

    work = args.work or Path(tempfile.mkdtemp(prefix="diffugts-soak-"))
    try:
        datalist, sources = write_cases(work / "inputs", args.cases, args.size)
        overrides = {} if args.num_steps is None else {"num_steps": args.num_steps}
        start = time.perf_counter()
        result = run_batch(datalist, work / "outputs", **overrides)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            print(result.stderr[-3000:], file=sys.stderr)
            print(f"memory_soak: the bundle failed with exit status {result.returncode}", file=sys.stderr)
            return 1
        soak = summarize(work / "outputs", sources)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"memory soak: {args.cases} cases of {args.size}^3 through one bundle process (batch mode), "
        f"{len(SOURCES)} distinct phantoms repeated; {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    )
    print(f"{'case':<8} {'source':<34} {'RSS MB':>8} {'vs first':>9}")
    for name, resident in zip(soak.names, soak.resident_mb):
        category, seed, prompt = SOURCES[sources[name]]
        print(f"{name:<8} {f'{category} #{seed} ({prompt})':<34} {resident:8.1f} {resident / soak.resident_mb[0] - 1:+9.1%}")
    identical = not soak.mismatched
    print(f"max growth over the first case: {soak.max_growth:+.1%} (limit {args.max_growth:+.0%}): {'ok' if soak.max_growth <= args.max_growth else 'FAIL'}")
    print(f"identical inputs gave identical masks and probabilities: {'yes' if identical else 'NO (' + ', '.join(soak.mismatched) + ')'}")
    print(f"wall time of the batch: {seconds:.0f} s")
    return 0 if soak.max_growth <= args.max_growth and identical else 1


if __name__ == "__main__":
    sys.exit(main())
