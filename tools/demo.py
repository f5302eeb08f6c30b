"""The README's main command: a phantom CT with a liver tumor, as DICOM, through the application.

    python -m tools.demo --output demo_output

1. Generate a phantom CT case with a liver tumor (``corpus.phantom.generate_case``).
2. Write it as a DICOM CT series (CT Image Storage, one file per axial slice) under
   ``OUTPUT/dicom_ct``.
3. Run the application on it exactly as a user does: ``python app -i OUTPUT/dicom_ct -o
   OUTPUT/app`` (embedded default weights, prompts from ``app/config.json``).
4. Print where the SEG, the PNG montage and the provenance record are, and the Dice overlap of
   the SEG with the phantom's ground-truth tumor.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bundle") not in sys.path:
    sys.path.append(str(ROOT / "bundle"))

import pydicom  # noqa: E402
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

from scripts.metrics import dice_score  # noqa: E402  (the benchmark's DSC, so the demo's figure is the same)

__all__ = ["slice_stack", "write_ct_series", "seg_frames_by_source", "main"]

logger = logging.getLogger("diffugts.demo")

#: LPS <-> RAS: DICOM patient coordinates flip the first two world axes of NIfTI/MONAI.
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def _uid(seed: int, *parts: object) -> UID:
    # Deterministic UIDs: the same seed writes the same series (a reproducible demo input).
    return generate_uid(entropy_srcs=["diffugts-demo", str(seed), *map(str, parts)])


def slice_stack(image: np.ndarray, affine: np.ndarray, *, radiological: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The DICOM slices of an (x, y, z) volume: an array (slice, row, column) and its LPS affine.

    Slice ``k`` is ``image[:, :, k]`` with ``x`` as the column index and ``y`` as the row index.
    With ``radiological`` the in-plane axes are flipped where needed so that columns run towards
    the patient's left and rows towards posterior, as scanners store axial slices (and as PACS
    viewers expect to draw them, anterior up); the slice order is kept.

    Returns:
        ``(slices, lps)`` where ``lps`` maps (column, row, slice, 1) to LPS millimetres.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be 3D (x, y, z), got shape {image.shape}")
    lps = _FLIP @ np.asarray(affine, dtype=np.float64)
    if radiological:
        for axis in (0, 1):
            direction = lps[:3, axis]
            if direction[np.argmax(np.abs(direction))] < 0:
                image = np.flip(image, axis)
                lps[:3, 3] += direction * (image.shape[axis] - 1)
                lps[:3, axis] = -direction
    return np.ascontiguousarray(image.transpose(2, 1, 0)), lps


def write_ct_series(
    image: np.ndarray,
    affine: np.ndarray,
    folder: str | os.PathLike,
    *,
    seed: int = 0,
    radiological: bool = True,
    patient_id: str = "DIFFUGTS-PHANTOM",
    series_description: str = "Phantom CT portal venous",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
) -> list[Path]:
    """Write a volume as a CT Image Storage series, one file per slice (see :func:`slice_stack`).

    Args:
        image: (x, y, z) in HU.
        affine: voxel-to-world RAS affine of those axes (orthogonal directions, any spacing).
        folder: created if needed; files are named ``CT000001.dcm`` ... in slice order.
        seed: makes the UIDs deterministic.
        radiological: store slices the way scanners do (see :func:`slice_stack`).
        patient_id, series_description, image_type: written as such.

    Returns:
        The files written, in slice order.
    """
    slices, lps = slice_stack(image, affine, radiological=radiological)
    column_step, row_step, slice_step = (lps[:3, i] for i in range(3))
    column_spacing, row_spacing, slice_spacing = (float(np.linalg.norm(v)) for v in (column_step, row_step, slice_step))
    orientation = np.concatenate([column_step / column_spacing, row_step / row_spacing])
    if abs(float(np.dot(orientation[:3], orientation[3:]))) > 1e-6:
        raise ValueError("the affine's first two axes are not orthogonal: DICOM slices need orthogonal rows and columns")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, frame_uid = _uid(seed, "study"), _uid(seed, "series"), _uid(seed, "frame")
    now = datetime.datetime(2025, 1, 1, 9, 0, 0)
    stored = np.clip(np.round(slices), -1024, 3071).astype(np.int16)
    paths = []
    for k in range(stored.shape[0]):
        sop_uid = _uid(seed, "instance", k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        path = folder / f"CT{k + 1:06d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = list(image_type)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = now.strftime("%H%M%S")
        ds.AccessionNumber = f"DEMO{seed:06d}"
        ds.Modality = "CT"
        ds.Manufacturer = "DiffuGTS-Deploy phantom"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = "Phantom abdomen CT"
        ds.SeriesDescription = series_description
        ds.PatientName = "Phantom^Liver"
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.BodyPartExamined = "ABDOMEN"
        ds.SliceThickness = f"{slice_spacing:.6g}"
        ds.KVP = "120"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in (lps @ [0.0, 0.0, k, 1.0])[:3]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.PixelSpacing = [f"{row_spacing:.6f}", f"{column_spacing:.6f}"]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def seg_frames_by_source(seg_path: str | os.PathLike, source_files: Sequence[str | os.PathLike], segment_number: int = 1) -> np.ndarray:
    """A SEG segment as (slice, row, column), one slice per source file in the order given.

    Frames are looked up by the source instance they reference, so the result does not depend
    on the order in which the SEG stores them.
    """
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    uids = [pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID for path in source_files]
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[segment_number])
    return np.asarray(frames[..., 0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", "-o", type=Path, default=Path("demo_output"), help="folder for the DICOM input and the results")
    parser.add_argument("--seed", type=int, default=3, help="phantom seed (>= 0); the same seed gives the same series")
    parser.add_argument("--size", type=int, nargs=3, default=(96, 96, 64), metavar=("X", "Y", "Z"), help="phantom size in voxels of 2 mm (each >= 32)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.seed < 0 or min(args.size) < 32:
        parser.error("--seed must be >= 0 and every --size >= 32")

    from corpus.phantom import generate_case

    case = generate_case("liver tumor", args.seed, size=tuple(args.size))
    dicom_folder = args.output / "dicom_ct"
    if dicom_folder.exists():
        for stale in dicom_folder.glob("*.dcm"):
            stale.unlink()
    files = write_ct_series(case.image, case.affine, dicom_folder, seed=args.seed)
    logger.info("phantom %s: %s", case.case_id, case.description)
    logger.info("wrote %d CT slices to %s", len(files), dicom_folder)

    results = args.output / "app"
    command = [sys.executable, str(ROOT / "app"), "-i", str(dicom_folder), "-o", str(results)]
    logger.info("running: %s", " ".join(command))
    start = time.perf_counter()
    status = subprocess.run(command, cwd=ROOT).returncode
    if status != 0:
        print(f"demo: the application failed with exit status {status}", file=sys.stderr)
        return status
    seconds = time.perf_counter() - start
    seg_path = results / "diffugts_seg.dcm"
    predicted = seg_frames_by_source(seg_path, files).astype(bool)
    truth = slice_stack(case.tumor_mask, case.affine)[0].astype(bool)
    overlap = dice_score(predicted, truth)
    print(f"\nDiffuGTS demo ({seconds:.0f} s for the application):")
    print(f"  input DICOM CT series: {dicom_folder.absolute()} ({len(files)} slices)")
    print(f"  DICOM SEG:             {seg_path.absolute()}")
    print(f"  DICOM SR (lesions):    {(results / 'diffugts_sr.dcm').absolute()}")
    print(f"  HTML report (browser): {(results / 'diffugts_report.html').absolute()}")
    print(f"  PNG montage:           {(results / 'diffugts_montage.png').absolute()}")
    print(f"  provenance:            {(results / 'diffugts_provenance.json').absolute()}")
    print(f"  Dice with the phantom's true tumor: {overlap:.3f} ({int(truth.sum())} true voxels, {int(predicted.sum())} segmented)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
