"""The cases a bundle run segments: from one image or a decathlon datalist, as a MONAI ``Dataset``.

Every case is checked before any model is loaded (files present, prompts valid, labels present
when evaluating), and every header before any voxel is read (:func:`check_header`), so a bad case
late in a datalist fails in seconds. A user mistake is a ``UserError`` naming the file.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import nibabel as nib
import numpy as np
from monai.data import Dataset, load_decathlon_datalist
from monai.transforms import LoadImage

from .errors import UserError, exit_on_user_error
from .preprocessing import Modality, plausibility_warnings
from .text import validate_prompt

if TYPE_CHECKING:
    from .pipeline import DiffuGTSPipeline

__all__ = ["Case", "build_cases", "CaseDataset", "ReadCase", "check_header", "slug"]

logger = logging.getLogger(__name__)

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
    """Cases from one image (``input_image``) or a decathlon datalist; ``UserError`` names the problem.

    Datalist entries may carry their own ``prompt``, ``modality`` and ``category``; ``label`` is
    the reference mask (needed for evaluation), or ``"expect_empty": true`` says the prompt names
    something absent (healthy scans, misleading prompts) so the reference is empty.
    """
    if bool(input_image) == bool(datalist):
        raise UserError("give either --input_image or --datalist (one of them)")
    default_prompts = _prompt_list(prompt)
    default_modality = Modality.parse(modality)
    if input_image:
        path = Path(input_image)
        if not path.is_file():
            raise UserError(f"input image not found: {path}")
        if not default_prompts:
            raise UserError("the prompt is empty: name a finding, e.g. --prompt 'liver tumor'")
        if require_labels:
            raise UserError("evaluation needs a --datalist with labels")
        return [Case(_case_name(path), path, default_prompts, default_modality)]
    path = Path(datalist)
    if not path.is_file():
        raise UserError(f"datalist not found: {path}")
    try:
        entries = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key=datalist_key)
    except (ValueError, KeyError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read datalist {path} (key '{datalist_key}'): {error}") from None
    cases: list[Case] = []
    for entry in entries:
        image = Path(entry["image"])
        if not image.is_file():
            raise UserError(f"image listed in {path} not found: {image}")
        try:
            prompts = _prompt_list(entry.get("prompt")) or default_prompts
        except UserError as error:
            raise UserError(f"datalist {path}, entry {image.name}: {error}") from None
        if not prompts:
            raise UserError(f"no prompt for {image}: give --prompt or a 'prompt' in the datalist")
        expect_empty = bool(entry.get("expect_empty", False))
        label = Path(entry["label"]) if entry.get("label") and not expect_empty else None
        if require_labels and not expect_empty and (label is None or not label.is_file()):
            raise UserError(f"reference label for {image} not found: {label}")
        modality_value = Modality.parse(entry.get("modality", default_modality))
        name = _unique_name(_case_name(image), prompts[0], {c.name for c in cases})
        cases.append(Case(name, image, prompts, modality_value, label, entry.get("category"), expect_empty))
    if not cases:
        raise UserError(f"datalist {path} has no entries under '{datalist_key}'")
    return cases


def slug(text: str) -> str:
    """``text`` as a file-name part: lower-case letters, digits and hyphens, at most 40 characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def _unique_name(name: str, prompt: str, taken: set[str]) -> str:
    """``name``, or with the prompt and then a counter appended: a datalist may list one image
    several times (other prompts, or repeats) and every case keeps its own outputs."""
    if name not in taken:
        return name
    candidate, counter = f"{name}_{slug(prompt)}", 2
    while candidate in taken:
        candidate, counter = f"{name}_{slug(prompt)}_{counter}", counter + 1
    return candidate


def _header_geometry(path: Path) -> tuple[tuple[int, ...], tuple[float, ...], str | None] | None:
    """Shape, voxel size and what is wrong with the orientation (``None``: nothing) from a NIfTI
    header, without reading the voxels; ``None`` for other formats or an unreadable header (the
    loader then reports the file)."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    try:
        header = cast(nib.Nifti1Header, nib.load(str(path)).header)  # a .nii/.nii.gz file: NIfTI-1 or NIfTI-2 (a subclass)
        geometry = tuple(int(n) for n in header.get_data_shape()), tuple(float(z) for z in header.get_zooms())
        return (*geometry, _orientation_problem(header))
    except Exception:  # nibabel raises many types for damaged headers
        return None


def _orientation_problem(header: Any) -> str | None:
    """Why the header does not say where the voxels are, or ``None``.

    With no usable sform or qform, readers substitute ``diag(pixdim)`` (MONAI) or a centred grid
    (nibabel): left and right are then a guess, and the mask's header would not match the input's.
    """
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code > 0:
        rotation = header.get_sform()[:3, :3]
        if not np.all(np.isfinite(rotation)) or abs(np.linalg.det(rotation)) < 1e-9:
            return f"its sform (code {sform_code}) is all zeros or singular"
        return None
    if qform_code > 0:
        return None
    return "it has neither an sform nor a qform (both codes are 0)"


def check_header(pipeline: DiffuGTSPipeline, case: Case) -> None:
    """Refuse, from the header alone, a case that cannot run: no orientation, not 3D, or too large
    for the memory budget (``UserError`` naming the file), before any voxel of any case is read."""
    geometry = _header_geometry(case.image)
    if geometry is None:
        return
    shape, spacing, orientation_problem = geometry
    try:
        if orientation_problem:
            raise UserError(
                f"the image has no orientation: {orientation_problem}, so left and right cannot be told "
                "apart; write its orientation into the header (sform or qform) and run again"
            )
        if len(shape) != 3:
            raise UserError(f"expected a 3D volume, got an image of shape {shape}")
        pipeline.check_memory(shape, spacing[:3], case.modality, len(case.prompts))
    except UserError as error:
        raise UserError(f"{case.image}: {error}") from None


class ReadCase:
    """A dataset item ``{"case": Case}`` with its volume read (``image``, a ``MetaTensor``) and
    what looks implausible about it (``warnings``: logged by the caller; a slice, intensities
    that contradict the modality). An unreadable file is a ``UserError`` naming it."""

    def __init__(self) -> None:
        self.loader = LoadImage(image_only=True)

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        case: Case = item["case"]
        try:
            volume = self.loader(str(case.image))
        except Exception as error:  # readers raise many types for damaged files
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise UserError(f"cannot read image {case.image}: {reason}") from None
        # A volume that is not 3D is refused by the pipeline, naming its shape.
        warnings = plausibility_warnings(volume, case.modality) if volume.ndim == 3 else []
        return {**item, "image": volume, "warnings": warnings}


class CaseDataset(Dataset):
    """The cases of a run (:func:`build_cases`, same arguments, or ``cases`` already made), each
    read when it is reached (:class:`ReadCase`).

    The cases are made and checked when first needed (the evaluator's start, before any model is
    loaded), not when the config is read: MONAI's property checks read the config without input.
    """

    def __init__(self, cases: Sequence[Case] | None = None, **options: Any) -> None:
        self._given, self._options = cases, options
        self._cases: list[Case] | None = None
        # Not MONAI's transform argument: its Compose would wrap the reader's UserError (a damaged
        # file) in a RuntimeError with a traceback.
        super().__init__(data=[])
        self.read = ReadCase()

    @property
    def cases(self) -> list[Case]:
        if self._cases is None:
            with exit_on_user_error(logger):
                self._cases = list(self._given) if self._given is not None else build_cases(**self._options)
            self.data = [{"case": case} for case in self._cases]
        return self._cases

    def __len__(self) -> int:
        return len(self.cases)

    def _transform(self, index: int) -> dict[str, Any]:
        return self.read({"case": self.cases[index]})
