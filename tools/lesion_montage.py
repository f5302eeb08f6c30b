"""Draw the model card's lesion montage: one test-seed case per tumor category, through the lesion.

.venv/bin/python -m tools.lesion_montage --output bundle/docs/corpus_lesions.png [--seed-base 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corpus import Category, Split, case_seed, generate_case  # noqa: E402
from corpus.montage import write_lesion_montage  # noqa: E402

ORDER = ("kidney tumor", "pancreas tumor", "colon tumor", "lung tumor", "hepatic vessel tumor", "liver tumor", "brain tumor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "bundle" / "docs" / "corpus_lesions.png")
    parser.add_argument("--seed-base", type=int, default=0, help="added to every seed (default 0)")
    args = parser.parse_args(argv)
    cases = [generate_case(name, case_seed(Split.TEST, Category(name), 0, args.seed_base)) for name in ORDER]
    print(write_lesion_montage(cases, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
