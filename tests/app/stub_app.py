"""A stand-in for ``python app`` in the DIMSE listener's tests: a run in a blink, with the same
command line and the same kinds of output.

    python stub_app.py [--fail] [--sleep S] -i INPUT -o OUTPUT [-m MODELS]

Writes into OUTPUT a SEG-like and an SR-like DICOM file that reference the input's series, plus
a PNG and a JSON (which the listener must not send). ``--fail``: one ``error:`` line and exit
status 1, as the application ends a series it cannot use; ``--sleep``: a long run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SegmentationStorage, generate_uid

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _derived(source: Dataset, sop_class: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, generate_uid(), modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID = source.StudyInstanceUID, generate_uid()
    ds.ReferencedSeriesSequence = [Dataset()]
    ds.ReferencedSeriesSequence[0].SeriesInstanceUID = source.SeriesInstanceUID
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-i", type=Path, required=True)
    parser.add_argument("-o", type=Path, required=True)
    parser.add_argument("-m")
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    time.sleep(args.sleep)
    if args.fail:
        print("diffugts: error: no CT or MR series in the input folder matches the series rules", file=sys.stderr)
        return 1
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(args.i.iterdir())]
    args.o.mkdir(parents=True, exist_ok=True)
    _derived(sources[0], SegmentationStorage, "SEG").save_as(args.o / "diffugts_seg.dcm", enforce_file_format=True)
    _derived(sources[0], COMPREHENSIVE_3D_SR, "SR").save_as(args.o / "diffugts_sr.dcm", enforce_file_format=True)
    (args.o / "diffugts_montage.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (args.o / "diffugts_provenance.json").write_text(json.dumps({"instances": len(sources), "models": args.m}))
    print(f"SEG: {args.o / 'diffugts_seg.dcm'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
