"""The zero-shot evaluation of the embedded default, through the bundle's evaluation command.

    .venv/bin/python -m benchmarks.zero_shot --corpus .cache/corpus_train --output .cache/zero_shot

Builds one datalist from the corpus's test splits, never from training data:

* unseen tumor: liver tumors (CT), prompt "liver tumor";
* unseen tumor and modality: gliomas (MR phantoms and gliomas inserted in the real Colin27 T1),
  prompt "brain tumor";
* healthy scans with the prompt of their body part ("liver tumor" on healthy CT, "brain tumor" on
  healthy MR), expected empty;
* misleading prompts: "lung tumor" on the liver-tumor scans (wrong organ) and "kidney tumor" on
  the glioma scans (wrong organ and modality), expected empty;

then runs ``inference.json`` + ``evaluate.json`` on it and prints ``metrics.md``. Each volume is one
128^3 patch (no seams); the other knobs are the bundle's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .bundle_eval import bundle_command

ROOT = Path(__file__).resolve().parents[1]


def _entries(corpus: Path, name: str) -> list[dict]:
    datalist = json.loads((corpus / "datalists" / f"{name}.json").read_text())
    folder = corpus / "datalists"
    entries = []
    for entry in datalist["test"]:
        entry = dict(entry)
        for key in ("image", "label"):
            entry[key] = str((folder / entry[key]).resolve())
        entries.append(entry)
    return entries


def build_datalist(corpus: Path, limit: int | None) -> dict:
    liver = _entries(corpus, "test_unseen_liver")[:limit]
    glioma = _entries(corpus, "test_unseen_mr_glioma")[:limit]
    healthy = _entries(corpus, "test_healthy")[:limit]
    cases = []
    for entry in liver:
        cases.append({**entry, "prompt": "liver tumor", "category": "liver tumor (unseen)"})
    for entry in glioma:
        cases.append({**entry, "prompt": "brain tumor", "category": "MR glioma (unseen)"})
    for entry in healthy:
        prompt = "liver tumor" if entry["modality"] == "CT" else "brain tumor"
        cases.append({**entry, "prompt": prompt, "category": f"{entry['category']}, prompt '{prompt}'", "expect_empty": True})
    for entry in liver:
        cases.append({**entry, "prompt": "lung tumor", "category": "misleading: 'lung tumor' on liver-tumor CT", "expect_empty": True})
    for entry in glioma:
        cases.append({**entry, "prompt": "kidney tumor", "category": "misleading: 'kidney tumor' on glioma MR", "expect_empty": True})
    for case in cases:
        if case.get("expect_empty"):
            del case["label"]  # the reference is empty: the prompt names something absent
    return {"name": "DiffuGTS zero-shot evaluation", "test": cases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / ".cache" / "corpus_train")
    parser.add_argument("--output", type=Path, default=ROOT / ".cache" / "zero_shot")
    parser.add_argument("--limit", type=int, default=None, help="at most this many cases per split (>= 1)")
    parser.add_argument("--bundle-args", nargs=argparse.REMAINDER, default=[], help="extra bundle overrides, e.g. --num_steps 5")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if not (args.corpus / "datalists").is_dir():
        parser.error(f"no corpus at {args.corpus}: generate it with python -m corpus")
    args.output.mkdir(parents=True, exist_ok=True)
    datalist = args.output / "zero_shot_datalist.json"
    datalist.write_text(json.dumps(build_datalist(args.corpus, args.limit), indent=2))
    command = bundle_command(datalist, args.output / "eval", args.bundle_args)
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    print((args.output / "eval" / "metrics.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
