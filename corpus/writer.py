"""Writing cases to disk: NIfTI volumes with their RAS affine, and a JSON sidecar per case.

Layout under the corpus folder (every file written to a temporary name, then renamed):

* ``images/<id>.nii.gz``: CT as int16 HU (rounded, as scanners store it), MR as float32;
* ``labels/<id>.nii.gz``: uint8 tumor mask (1 = tumor; gliomas include edema);
* ``organs/<id>.nii.gz``: uint8 :class:`~.labels.OrganLabel` map (all 0 where a real volume has none);
* ``parts/<id>.nii.gz``: uint8 :class:`~.labels.TumorPart` map;
* ``metadata/<id>.json``: :meth:`~.phantom.PhantomCase.metadata` plus measured contrast and noise.

The NIfTI sform and qform both hold the affine (code 1, scanner), units are mm.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from scripts.atomic import atomic_write
from scripts.preprocessing import Modality

__all__ = ["save_nifti", "write_json", "write_case", "CASE_FOLDERS"]

CASE_FOLDERS = ("images", "labels", "organs", "parts", "metadata")


def save_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray, dtype: np.dtype | type | None = None) -> Path:
    """Write ``array`` as NIfTI-1 with ``affine`` in both sform and qform, atomically."""
    path = Path(path)
    data = np.asarray(array)
    if dtype is not None:
        target = np.dtype(dtype)
        if np.issubdtype(target, np.integer) and not np.issubdtype(data.dtype, np.integer):
            info = np.iinfo(target)
            data = np.clip(np.rint(data), info.min, info.max)
        data = data.astype(target)
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: nib.save(image, temporary))
    return path


def write_json(path: str | os.PathLike, document: Any) -> Path:
    """Write JSON atomically (temporary name in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: Path(temporary).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8"))
    return path


def write_case(root: str | os.PathLike, case, extra_metadata: dict[str, Any] | None = None) -> dict[str, str]:
    """Write one :class:`~.phantom.PhantomCase` under ``root``; return its relative file paths."""
    root = Path(root)
    name = f"{case.case_id}.nii.gz"
    image_dtype = np.int16 if case.modality is Modality.CT else np.float32
    save_nifti(root / "images" / name, case.image, case.affine, image_dtype)
    save_nifti(root / "labels" / name, case.tumor_mask, case.affine, np.uint8)
    save_nifti(root / "organs" / name, case.organ_labels, case.affine, np.uint8)
    save_nifti(root / "parts" / name, case.tumor_parts, case.affine, np.uint8)
    metadata = case.metadata()
    metadata.update(extra_metadata or {})
    write_json(root / "metadata" / f"{case.case_id}.json", metadata)
    return {folder: f"{folder}/{case.case_id}.json" if folder == "metadata" else f"{folder}/{name}" for folder in CASE_FOLDERS}
