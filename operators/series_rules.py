"""Series selection: the SDK's rule matching plus the checks a radiologist makes by eye.

:class:`ClinicalSeriesSelectorOperator` reuses the SDK's
:class:`~monai.deploy.operators.DICOMSeriesSelectorOperator` to match DICOM attributes (its JSON
rules format, regular expressions, ``ImageType`` inclusion and ``!`` exclusion), then keeps only
series that can be segmented as a volume:

* ``min_slices`` (per selection): enough slices for a 3D model.
* ``orientation`` (per selection, optional): ``axial``, ``coronal`` or ``sagittal``, from the
  dominant axis of the slice normal; needs no ``PatientPosition``.
* always: single-frame, single-channel images of one size and one orientation, with complete
  pixel data and positions regularly spaced along the normal (no gaps, no duplicates), so the
  stack is a volume. Each reason names a file of the series that shows the problem.

The selections are tried in order; the first that any series satisfies wins, and among its series
the one with the most slices. Exactly one series goes downstream. When none qualifies the operator
raises ``UserError`` with one line that says, for each series found, where its files are and
why it was not used (an unsupported modality such as PT is named as such).

The default rules are in ``default_series_rules.json`` next to this module; a rules file in the
same format replaces them (``DIFFUGTS_SERIES_RULES`` or ``series_rules`` in the configuration).
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.deploy.core import Fragment
from monai.deploy.core.domain.dicom_series import DICOMSeries
from monai.deploy.core.domain.dicom_series_selection import SelectedSeries, StudySelectedSeries
from monai.deploy.operators import DICOMSeriesSelectorOperator
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import get_expected_length

from scripts.errors import UserError

from .stages import stage
from .volume_geometry import slice_normal

__all__ = [
    "DEFAULT_RULES_PATH",
    "SelectionRule",
    "ClinicalSeriesSelectorOperator",
    "load_rules",
    "describe_rules",
    "reconstruction_problem",
    "modality_problem",
    "series_folder",
    "series_orientation",
]

logger = logging.getLogger(__name__)

DEFAULT_RULES_PATH = Path(__file__).resolve().parent / "default_series_rules.json"
ORIENTATIONS = ("sagittal", "coronal", "axial")  # dominant axis of the normal: x, y, z
#: Largest relative deviation of a slice gap from the median gap that still counts as regular.
SPACING_TOLERANCE = 0.1
#: What the pipeline segments (``scripts.Modality``); other modalities are named in the refusal.
SUPPORTED_MODALITIES = ("CT", "MR")
_SELECTION_KEYS = ("name", "conditions", "min_slices", "orientation")


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
        UserError: unreadable file, bad JSON, a selection that is not an object, has an unknown
            key, no conditions, a condition the SDK cannot match (or a bad regular expression),
            or a bad ``min_slices`` or ``orientation``. The message names the file.
    """
    path = Path(path) if path else DEFAULT_RULES_PATH
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read series rules file {path}: {getattr(error, 'strerror', None) or error}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"series rules file {path} is not valid JSON: {error.msg} at line {error.lineno}") from None
    selections = data.get("selections") if isinstance(data, dict) else None
    if not isinstance(selections, list) or not selections:
        raise UserError(f'series rules file {path} needs a non-empty "selections" list')
    rules = []
    for index, selection in enumerate(selections, 1):
        if not isinstance(selection, dict):
            raise UserError(
                f'series rules file {path}: selection {index} must be an object such as {{"name": "CT", "conditions": '
                f'{{"Modality": "CT"}}, "min_slices": 16}}, got {selection!r}'
            )
        name = str(selection.get("name") or f"selection {index}")
        unknown = sorted(set(selection) - set(_SELECTION_KEYS))
        if unknown:
            raise UserError(f"series rule '{name}' in {path}: unknown key(s) {', '.join(unknown)}; expected {', '.join(_SELECTION_KEYS)}")
        conditions = selection.get("conditions")
        if not isinstance(conditions, dict) or not conditions:
            raise UserError(f"series rule '{name}' in {path} has no conditions")
        for keyword, value in conditions.items():
            problem = _condition_problem(value)
            if problem:
                raise UserError(f"series rule '{name}' in {path}: condition {keyword} {problem}")
        min_slices = selection.get("min_slices", 1)
        if isinstance(min_slices, bool) or not isinstance(min_slices, int) or min_slices < 1:
            raise UserError(f"series rule '{name}' in {path}: min_slices must be an integer >= 1, got {min_slices!r}")
        orientation = selection.get("orientation")
        if orientation is not None:
            orientation = str(orientation).lower()
            if orientation not in ORIENTATIONS:
                raise UserError(f"series rule '{name}' in {path}: orientation must be one of {', '.join(ORIENTATIONS)}, got {selection['orientation']!r}")
        rules.append(SelectionRule(name, conditions, min_slices, orientation))
    return text, rules


def _condition_problem(value: Any) -> str | None:
    # What the SDK's matcher accepts: text (a regular expression), a number, a list of those
    # (ImageType terms, a range, [value, ">"]), or null (ignored). Anything else fails at run time.
    items = value if isinstance(value, list) else [value]
    if value is None or all(isinstance(v, (str, numbers.Real)) and not isinstance(v, bool) for v in items):
        for item in items:
            if isinstance(item, str):
                try:
                    re.compile(item)
                except re.error as error:
                    return f"is not a valid regular expression ({error}): {item!r}"
        return None
    return f"must be text (a regular expression), a number, or a list of those, got {value!r}"


def series_orientation(series: DICOMSeries) -> str:
    """``axial``, ``coronal`` or ``sagittal``: the patient axis closest to the slice normal."""
    normal = slice_normal(series.get_sop_instances()[0].get_native_sop_instance())
    return ORIENTATIONS[int(np.argmax(np.abs(normal)))]


def _file_name(dataset: Dataset) -> str:
    """The name of the file a dataset was read from (``?`` when it was not read from a file)."""
    filename = getattr(dataset, "filename", None)
    return Path(filename).name if isinstance(filename, (str, os.PathLike)) else "?"


def series_folder(series: DICOMSeries) -> str:
    """The folder holding the files of ``series`` (their common parent)."""
    files = [getattr(ds, "filename", None) for ds in _datasets(series)]
    parents = {str(Path(f).parent) for f in files if isinstance(f, (str, os.PathLike))}
    return os.path.commonpath(sorted(parents)) if parents else "?"


def _attribute_text(series: DICOMSeries, keyword: str) -> str:
    """The value of ``keyword`` in the series' first slice as DICOM writes it (``A\\B``), or ``absent``."""
    value = _datasets(series)[0].get(keyword) if series.get_sop_instances() else None
    if value is None or value == "":
        return "absent"
    return "\\".join(map(str, value)) if isinstance(value, (list, tuple, MultiValue)) else str(value)


def _datasets(series: DICOMSeries) -> list[Dataset]:
    return [instance.get_native_sop_instance() for instance in series.get_sop_instances()]


def _truncated_pixel_data(ds: Dataset) -> str | None:
    # Native (uncompressed) pixel data has a known length; a damaged copy or an interrupted
    # transfer leaves it short, and the SDK would fail on it with a traceback.
    transfer_syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if transfer_syntax is None or transfer_syntax.is_encapsulated:
        return None
    try:
        expected = int(get_expected_length(ds, unit="bytes"))
    except (AttributeError, KeyError, TypeError, ValueError):
        return f"{_file_name(ds)} lacks the attributes that describe its pixel data"
    actual = len(ds.PixelData)
    if actual < expected:
        return f"pixel data of {_file_name(ds)} is truncated ({actual} of {expected} bytes)"
    return None


def _bad_rescale(ds: Dataset) -> str | None:
    # A non-finite slope or intercept is invalid DICOM; the SDK would cast the NaN it yields into
    # the integer volume as arbitrary numbers instead of failing. A zero slope makes every voxel
    # the intercept: a constant image, on which any mask would be meaningless.
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword in ds:
            element = ds.data_element(keyword)
            assert element is not None  # the keyword is in ds
            try:
                value = float(element.value)
            except (TypeError, ValueError):
                value = float("nan")
            if not np.isfinite(value):
                return f"{keyword} of {_file_name(ds)} is not a finite number ({element.value!r})"
            if keyword == "RescaleSlope" and value == 0:
                return f"RescaleSlope of {_file_name(ds)} is 0: every voxel would have the same value"
    return None


def _bad_spacing(ds: Dataset) -> str | None:
    # The affine and the SEG's pixel measures are taken from these: a negative or zero spacing
    # would mirror or collapse the grid, and be copied into the SEG.
    try:
        spacing = [float(v) for v in ds.PixelSpacing]
    except (TypeError, ValueError):
        spacing = []
    if len(spacing) != 2 or not all(np.isfinite(v) and v > 0 for v in spacing):
        return f"PixelSpacing of {_file_name(ds)} must be two positive numbers (mm), got {ds.PixelSpacing!r}"
    thickness = ds.get("SliceThickness")
    if thickness not in (None, ""):
        try:
            value = float(thickness)
        except (TypeError, ValueError):
            value = float("nan")
        if not (np.isfinite(value) and value > 0):
            return f"SliceThickness of {_file_name(ds)} must be a positive number (mm), got {thickness!r}"
    return None


def _undecodable(ds: Dataset) -> str | None:
    # Compressed pixel data needs a decoder plugin (pylibjpeg and its libjpeg, openjpeg and rle
    # plugins are pinned); without one the SDK's volume step fails with a traceback.
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or (syntax.is_transfer_syntax and not syntax.is_encapsulated):
        return None
    try:
        available = get_decoder(syntax).is_available
    except (NotImplementedError, ValueError):
        available = False
    if available:
        return None
    what = f"transfer syntax {syntax.name} ({syntax})" if syntax.name != syntax else f"unknown transfer syntax {syntax}"
    return f"pixel data of {_file_name(ds)} is stored in {what}, which no installed decoder reads: send the series uncompressed"


def reconstruction_problem(series: DICOMSeries) -> str | None:
    """Why the slices of ``series`` do not form a regular volume, or ``None`` when they do."""
    datasets = _datasets(series)
    with_pixels = [ds for ds in datasets if "PixelData" in ds]
    if not with_pixels:
        return "not an image series"
    if len(with_pixels) < len(datasets):
        damaged = next(ds for ds in datasets if "PixelData" not in ds)
        return f"{_file_name(damaged)} has no pixel data (a damaged or truncated file?)"
    multi_frame = [ds for ds in datasets if int(ds.get("NumberOfFrames", 1) or 1) > 1]
    if multi_frame:
        return f"multi-frame image {_file_name(multi_frame[0])} (only single-frame slice series are read)"
    if any(int(ds.get("SamplesPerPixel", 1)) != 1 for ds in datasets):
        return "colour images"
    for keyword in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
        lacking = [ds for ds in datasets if keyword not in ds]
        if lacking:
            return f"{keyword} missing ({_file_name(lacking[0])})"
    for ds in datasets:
        problem = _undecodable(ds) or _truncated_pixel_data(ds) or _bad_rescale(ds) or _bad_spacing(ds)
        if problem:
            return problem
    # The SEG references each source instance by its UID: two slices with one UID would make
    # that reference ambiguous (one of them is a copy under another position, or damaged).
    first_with_uid: dict[str, Dataset] = {}
    for ds in datasets:
        other = first_with_uid.setdefault(str(ds.SOPInstanceUID), ds)
        if other is not ds:
            return f"{_file_name(other)} and {_file_name(ds)} have the same SOPInstanceUID {ds.SOPInstanceUID} at different positions: each slice needs its own"
    sizes = [(int(ds.Rows), int(ds.Columns)) for ds in datasets]
    if len(set(sizes)) > 1:
        odd = next(ds for ds, size in zip(datasets, sizes) if size != sizes[0])
        return f"slices of different sizes ({_file_name(datasets[0])} {sizes[0][0]}x{sizes[0][1]}, {_file_name(odd)} {odd.Rows}x{odd.Columns})"
    # The grid is built from the first slice's spacing: another slice's would be misplaced.
    spacings = np.asarray([[float(v) for v in ds.PixelSpacing] for ds in datasets])
    spread = np.abs(spacings / spacings[0] - 1).max(axis=1)
    if spread.max() > 1e-3:
        odd = datasets[int(np.argmax(spread))]
        first_spacing, odd_spacing = ("\\".join(str(v) for v in ds.PixelSpacing) for ds in (datasets[0], odd))
        return f"slices of different pixel spacings ({_file_name(datasets[0])} {first_spacing} mm, {_file_name(odd)} {odd_spacing} mm)"
    orientations = np.asarray([[float(v) for v in ds.ImageOrientationPatient] for ds in datasets])
    deviation = np.abs(orientations - orientations[0]).max(axis=1)
    if deviation.max() > 1e-3:
        return f"slices of different orientations ({_file_name(datasets[int(np.argmax(deviation))])})"
    try:
        normal = slice_normal(datasets[0])
    except ValueError as error:
        return f"{_file_name(datasets[0])}: {error}"
    if len(datasets) > 1:
        distances = np.asarray([float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])) for ds in datasets])
        order = np.argsort(distances, kind="stable")
        gaps = np.diff(distances[order])
        median = float(np.median(gaps))
        if median <= 1e-3:
            return "slices at the same position"
        worst = int(np.argmax(np.abs(gaps - median)))
        if abs(gaps[worst] - median) > SPACING_TOLERANCE * median:
            before, after = (_file_name(datasets[i]) for i in order[worst : worst + 2])
            return (
                f"irregular slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm, {gaps[worst]:.2f} mm between {before} and {after}: missing or extra slices)"
            )
    return None


def modality_problem(series: DICOMSeries) -> str | None:
    """Why the pipeline cannot segment the series' modality, or ``None`` (CT and MR)."""
    modality = str(getattr(series, "Modality", "") or "?")
    if modality.upper() in SUPPORTED_MODALITIES:
        return None
    return f"modality {modality} is not supported (DiffuGTS segments {' and '.join(SUPPORTED_MODALITIES)})"


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
        UserError: at construction for a bad rules file; at compute when no series qualifies.
    """

    def __init__(self, fragment: Fragment, *args, rules_file: str | os.PathLike | None = None, **kwargs) -> None:
        rules_text, self.rules = load_rules(rules_file)
        self.rules_source = str(rules_file) if rules_file else "default"
        super().__init__(fragment, *args, rules=rules_text, all_matched=True, sort_by_sop_instance_count=True, **kwargs)

    @stage("series selection")
    def filter(self, selection_rules, dicom_study_list, all_matched: bool = False, sort_by_sop_instance_count: bool = False) -> list[StudySelectedSeries]:
        studies = list(dicom_study_list or [])
        all_series = [(study, series) for study in studies for series in study.get_all_series()]
        if not all_series:
            raise UserError("the input holds no DICOM series")
        problems = {id(series): reconstruction_problem(series) for _, series in all_series}
        reasons: dict[int, str] = {}
        for rule in self.rules:
            candidates = []
            for study in studies:
                for series in self._matching(rule, study):
                    reason = modality_problem(series) or problems[id(series)] or self._extension_problem(rule, series)
                    if reason:
                        reasons.setdefault(id(series), reason)
                    else:
                        candidates.append((study, series))
            if candidates:
                study, series = max(candidates, key=lambda pair: len(pair[1].get_sop_instances()))
                logger.info(
                    "selected series %s (%s, %d slices, '%s') by rule '%s'",
                    series.SeriesInstanceUID,
                    series.Modality,
                    len(series.get_sop_instances()),
                    getattr(series, "SeriesDescription", "") or "",
                    rule.name,
                )
                selection = StudySelectedSeries(study)
                selection.add_selected_series(SelectedSeries(rule.name, series, None))
                return [selection]
        details = "; ".join(
            f"{series.SeriesInstanceUID} ({getattr(series, 'Modality', '?')}, {len(series.get_sop_instances())} image(s) "
            f"in {series_folder(series)}): "
            f"{reasons.get(id(series)) or modality_problem(series) or problems[id(series)] or self._unmatched(study, series)}"
            for study, series in all_series
        )
        raise UserError(f"no usable series in the input ({len(all_series)} found; rules: {self.rules_source}): {details}")

    def _matching(self, rule: SelectionRule, study, conditions: dict[str, Any] | None = None) -> list[DICOMSeries]:
        """The series of ``study`` that the SDK's matching finds for ``conditions`` (default: the
        rule's), through its public ``filter`` on a one-selection rules object."""
        rules = {"selections": [{"name": rule.name, "conditions": conditions or rule.conditions}]}
        try:
            found = DICOMSeriesSelectorOperator.filter(self, rules, [study], all_matched=True)
        except (NotImplementedError, AttributeError, TypeError, ValueError, IndexError) as error:
            raise UserError(f"series rule '{rule.name}' cannot be applied: {error}") from None
        return [selected.series for selection in found for selected in selection.selected_series]

    def _unmatched(self, study, series: DICOMSeries) -> str:
        """Why no rule matches ``series``: the conditions it fails of the nearest rule (the one
        it fails the fewest conditions of; the first of those in the rules' order)."""
        nearest: tuple[SelectionRule, list[str]] | None = None
        for rule in self.rules:
            failing = [
                keyword for keyword, value in rule.conditions.items() if not any(found is series for found in self._matching(rule, study, {keyword: value}))
            ]
            if nearest is None or len(failing) < len(nearest[1]):
                nearest = (rule, failing)
        if nearest is None or not nearest[1]:
            return "matches no selection rule"
        rule, failing = nearest
        shown = "; ".join(f"{keyword} is {_attribute_text(series, keyword)}, the rule wants {rule.conditions[keyword]!r}" for keyword in failing)
        return f"matches no selection rule (nearest: '{rule.name}', {shown})"

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
    return [{"name": r.name, "conditions": r.conditions, "min_slices": r.min_slices, "orientation": r.orientation} for r in rules]
