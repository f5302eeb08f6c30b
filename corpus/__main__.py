"""Command line: write the corpus to a folder.

    python -m corpus --output DIR [--cases-per-category N] [--size 128] [--seed-base S]

Run from ``bundle/`` or with ``bundle/`` on ``PYTHONPATH``. See :mod:`.build` for what is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .build import CorpusConfig, build_corpus


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"expected an integer in [1, 10000], got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _size(text: str) -> tuple[int, int, int]:
    try:
        values = [int(v) for v in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or NxNxN, got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or any(not 16 <= v <= 1024 for v in values):
        raise argparse.ArgumentTypeError(f"expected N or NxNxN with each in [16, 1024], got {text!r}")
    return (values[0], values[1], values[2])


def _spacing(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of mm, got {text!r}") from None
    if not 0.1 <= value <= 20.0:
        raise argparse.ArgumentTypeError(f"expected a spacing in [0.1, 20] mm, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m corpus",
        description="Write the DiffuGTS zero-shot corpus (phantoms, real anatomy, datalists, montage) as NIfTI.",
    )
    parser.add_argument("--output", required=True, type=Path, help="corpus folder (created)")
    parser.add_argument("--cases-per-category", type=_positive, default=4, help="training cases per category (default 4)")
    parser.add_argument("--val-cases", type=_positive, default=None, help="validation cases per category (default half)")
    parser.add_argument("--test-cases", type=_positive, default=None, help="test cases per category (default = training)")
    parser.add_argument("--size", type=_size, default=(128, 128, 128), help="phantom shape, N or NxNxN (default 128)")
    parser.add_argument("--ct-spacing", type=_spacing, default=2.0, help="CT phantom spacing in mm (default 2.0)")
    parser.add_argument("--mr-spacing", type=_spacing, default=1.5, help="MR phantom spacing in mm (default 1.5)")
    parser.add_argument("--seed-base", type=_non_negative, default=0, help="added to every seed (default 0)")
    parser.add_argument("--no-real", action="store_true", help="do not fetch or use the real volumes")
    parser.add_argument("--no-montage", action="store_true", help="do not draw montage.png")
    parser.add_argument("--no-reuse", action="store_true", help="make every case anew, even those this generator version already wrote")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = CorpusConfig(
        output=args.output,
        cases_per_category=args.cases_per_category,
        validation_cases=args.val_cases,
        test_cases=args.test_cases,
        size=args.size,
        ct_spacing=args.ct_spacing,
        mr_spacing=args.mr_spacing,
        seed_base=args.seed_base,
        include_real=not args.no_real,
        montage=not args.no_montage,
        reuse=not args.no_reuse,
    )
    try:
        summary = build_corpus(config, progress=not args.quiet)
    except OSError as error:
        print(f"error: cannot write the corpus: {error}", file=sys.stderr)
        return 1
    print(f"{summary['cases']} cases in {config.output} ({summary['seconds']} s); datalists: " + ", ".join(f"{k}={v}" for k, v in summary["datalists"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
