"""The paper's published zero-shot numbers (shared/docs/method.md, section 7), for reference rows.

DSC and NSD in percent, on MSD liver tumor (CT) and MSD brain tumor (MR): the paper's datasets and
the official MAISI weights, not this project's corpus and ``mini`` weights.
"""

from __future__ import annotations

__all__ = ["PUBLISHED", "PAPER_SOURCE"]

PAPER_SOURCE = "Jiang et al., CVPR 2025, supplementary zero-shot setting (MSD liver / MSD brain)"

#: method -> tumor -> (DSC %, NSD %)
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "DiffuGTS": {"liver": (63.23, 73.58), "brain": (47.51, 49.75)},
    "without LSI (direct generation)": {"liver": (60.36, 70.31), "brain": (30.55, 32.74)},
    "single feature level, best": {"liver": (62.28, 72.49), "brain": (44.92, 46.84)},
    "ZePT": {"liver": (59.16, 68.72), "brain": (19.54, 22.02)},
    "Malenia": {"liver": (59.83, 70.08), "brain": (19.83, 22.58)},
}
