"""Series selection: the SDK's rule matching plus the checks a radiologist makes by eye.

:class:`ClinicalSeriesSelectorOperator` reuses the SDK's
:class:`~monai.deploy.operators.DICOMSeriesSelectorOperator` to match DICOM attributes (its JSON
rules format, regular expressions, ``ImageType`` inclusion and ``!`` exclusion), then keeps only
series that can be segmented as a volume:

* ``min_slices`` (per selection): enough slices for a 3D model.
* ``orientation`` (per selection, optional): ``axial``, ``coronal`` or ``sagittal``, from the
  dominant axis of the slice normal; needs no ``PatientPosition``.
* always: single-frame, single-channel images of one size and one orientation, with positions
  regularly spaced along the normal (no gaps, no duplicates), so the stack is a volume.

The selections are tried in order; the first that any series satisfies wins, and among its series
the one with the most slices. Exactly one series goes downstream. When none qualifies the operator
raises ``ValueError`` with one line that says, for each series found, why it was not used.

The default rules are in ``default_series_rules.json`` next to this module; a rules file in the
same format replaces them (``DIFFUGTS_SERIES_RULES`` or ``series_rules`` in the configuration).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from monai.deploy.core import Fragment
from monai.deploy.core.domain.dicom_series import DICOMSeries
from monai.deploy.core.domain.dicom_series_selection import SelectedSeries, StudySelectedSeries
from monai.deploy.operators import DICOMSeriesSelectorOperator

from .volume_geometry import slice_normal

__all__ = [
    "DEFAULT_RULES_PATH",
    "SelectionRule",
    "ClinicalSeriesSelectorOperator",
    "load_rules",
    "describe_rules",
    "reconstruction_problem",
    "series_orientation",
]

logger = logging.getLogger(__name__)

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "default_series_rules.json"
ORIENTATIONS = ("sagittal", "coronal", "axial")  # dominant axis of the normal: x, y, z
#: Largest relative deviation of a slice gap from the median gap that still counts as regular.
SPACING_TOLERANCE = 0.1


@dataclass(frozen=True)
class SelectionRule:
    """One selection of a rules file.

    Attributes:
        name: shown in logs and the provenance record.
        conditions: SDK attribute conditions (see ``DICOMSeriesSelectorOperator``).
        min_slices: fewest slices accepted, >= 1.
        orientation: ``axial``, ``coronal``, ``sagittal`` or ``None`` (any).
    """

    name: str
    conditions: dict[str, Any]
    min_slices: int = 1
    orientation: str | None = None


def load_rules(path: str | os.PathLike | None = None) -> tuple[str, list[SelectionRule]]:
    """Read and validate a rules file (default: the shipped rules); returns its text and rules.

    Raises:
        ValueError: unreadable file, bad JSON, or a selection without conditions or with a bad
            ``min_slices`` or ``orientation``.
    """
    path = Path(path) if path else DEFAULT_RULES_PATH
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except OSError as error:
        raise ValueError(f"cannot read series rules file {path}: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"series rules file {path} is not valid JSON: {error.msg} at line {error.lineno}") from None
    selections = data.get("selections") if isinstance(data, dict) else None
    if not isinstance(selections, list) or not selections:
        raise ValueError(f'series rules file {path} needs a non-empty "selections" list')
    rules = []
    for index, selection in enumerate(selections, 1):
        name = str(selection.get("name") or f"selection {index}")
        conditions = selection.get("conditions")
        if not isinstance(conditions, dict) or not conditions:
            raise ValueError(f"series rule '{name}' in {path} has no conditions")
        min_slices = selection.get("min_slices", 1)
        if not isinstance(min_slices, int) or min_slices < 1:
            raise ValueError(f"series rule '{name}': min_slices must be an integer >= 1, got {min_slices!r}")
        orientation = selection.get("orientation")
        if orientation is not None:
            orientation = str(orientation).lower()
            if orientation not in ORIENTATIONS:
                raise ValueError(f"series rule '{name}': orientation must be one of {', '.join(ORIENTATIONS)}, got {selection['orientation']!r}")
        rules.append(SelectionRule(name, conditions, min_slices, orientation))
    return text, rules


def series_orientation(series: DICOMSeries) -> str:
    """``axial``, ``coronal`` or ``sagittal``: the patient axis closest to the slice normal."""
    normal = slice_normal(series.get_sop_instances()[0].get_native_sop_instance())
    return ORIENTATIONS[int(np.argmax(np.abs(normal)))]


def reconstruction_problem(series: DICOMSeries) -> str | None:
    """Why the slices of ``series`` do not form a regular volume, or ``None`` when they do."""
    datasets = [instance.get_native_sop_instance() for instance in series.get_sop_instances()]
    if not all("PixelData" in ds for ds in datasets):
        return "not an image series"
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        return "multi-frame images (only single-frame slice series are read)"
    if any(int(ds.get("SamplesPerPixel", 1)) != 1 for ds in datasets):
        return "colour images"
    for keyword in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
        if not all(keyword in ds for ds in datasets):
            return f"{keyword} missing"
    if len({(int(ds.Rows), int(ds.Columns)) for ds in datasets}) > 1:
        return "slices of different sizes"
    orientations = np.asarray([[float(v) for v in ds.ImageOrientationPatient] for ds in datasets])
    if np.abs(orientations - orientations[0]).max() > 1e-3:
        return "slices of different orientations"
    try:
        normal = slice_normal(datasets[0])
    except ValueError as error:
        return str(error)
    if len(datasets) > 1:
        distances = np.sort([float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for ds in datasets])
        gaps = np.diff(distances)
        median = float(np.median(gaps))
        if median <= 1e-3:
            return "slices at the same position"
        if np.abs(gaps - median).max() > SPACING_TOLERANCE * median:
            return f"irregular slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm: missing or extra slices)"
    return None


class ClinicalSeriesSelectorOperator(DICOMSeriesSelectorOperator):
    """Select the one series to segment (see the module docstring).

    Named input:
        dicom_study_list: list of ``DICOMStudy``.
    Named output:
        study_selected_series_list: one ``StudySelectedSeries`` holding the chosen series.

    Args:
        fragment: the application.
        rules_file: a rules file; ``None`` for the shipped default rules.

    Raises:
        ValueError: at construction for a bad rules file; at compute when no series qualifies.
    """

    def __init__(self, fragment: Fragment, *args, rules_file: str | os.PathLike | None = None, **kwargs) -> None:
        rules_text, self.rules = load_rules(rules_file)
        self.rules_source = str(rules_file) if rules_file else "default"
        super().__init__(fragment, *args, rules=rules_text, all_matched=True, sort_by_sop_instance_count=True, **kwargs)

    def filter(self, selection_rules, dicom_study_list, all_matched: bool = False, sort_by_sop_instance_count: bool = False) -> list[StudySelectedSeries]:
        studies = list(dicom_study_list or [])
        all_series = [(study, series) for study in studies for series in study.get_all_series()]
        if not all_series:
            raise ValueError("the input holds no DICOM series")
        problems = {id(series): reconstruction_problem(series) for _, series in all_series}
        reasons: dict[int, str] = {}
        for rule in self.rules:
            candidates = []
            for study in studies:
                for series in self._matching(rule, study):
                    reason = problems[id(series)] or self._extension_problem(rule, series)
                    if reason:
                        reasons.setdefault(id(series), reason)
                    else:
                        candidates.append((study, series))
            if candidates:
                study, series = max(candidates, key=lambda pair: len(pair[1].get_sop_instances()))
                logger.info(
                    "selected series %s (%s, %d slices, '%s') by rule '%s'",
                    series.SeriesInstanceUID, series.Modality, len(series.get_sop_instances()),
                    getattr(series, "SeriesDescription", "") or "", rule.name,
                )
                selection = StudySelectedSeries(study)
                selection.add_selected_series(SelectedSeries(rule.name, series, None))
                return [selection]
        details = "; ".join(
            f"{series.SeriesInstanceUID} ({getattr(series, 'Modality', '?')}, {len(series.get_sop_instances())} image(s)): "
            f"{reasons.get(id(series)) or problems[id(series)] or 'matches no selection rule'}"
            for _, series in all_series
        )
        raise ValueError(f"no usable series in the input ({len(all_series)} found; rules: {self.rules_source}): {details}")

    def _matching(self, rule: SelectionRule, study) -> list[DICOMSeries]:
        try:
            return self._select_series(rule.conditions, study, all_matched=True)
        except (NotImplementedError, AttributeError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"series rule '{rule.name}' cannot be applied: {error}") from None

    @staticmethod
    def _extension_problem(rule: SelectionRule, series: DICOMSeries) -> str | None:
        count = len(series.get_sop_instances())
        if count < rule.min_slices:
            return f"{count} slice(s), fewer than the {rule.min_slices} of rule '{rule.name}'"
        if rule.orientation and series_orientation(series) != rule.orientation:
            return f"{series_orientation(series)} slices, rule '{rule.name}' wants {rule.orientation}"
        return None


def describe_rules(rules: Sequence[SelectionRule]) -> list[dict[str, Any]]:
    """JSON-ready copy of the rules (for the provenance record)."""
    return [
        {"name": r.name, "conditions": r.conditions, "min_slices": r.min_slices, "orientation": r.orientation}
        for r in rules
    ]
