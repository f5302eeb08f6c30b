"""DICOM SEG writer: one segment per prompt, coded, on the frames of the source slices.

highdicom is used directly rather than through the SDK's ``DICOMSegmentationWriterOperator``,
because that operator takes one label image (so prompts whose masks overlap, e.g. "liver tumor"
and "hepatic vessel tumor", could not both be encoded) and writes in place under a random name.

Each segment carries:

* its prompt as the label, the category "Morphologically Abnormal Structure" and the type
  "Neoplasm" (SNOMED CT 108369006) for a finding of the attribute vocabulary, "Lesion"
  (52988006) for free text;
* the host organ as anatomic region (SNOMED CT, e.g. Liver 10200004) when the prompt names one;
* the algorithm identification (DiffuGTS, version, weights profile, prompt).

Text is written as DICOM reads it back: a ``\\`` in a prompt (the value delimiter of DICOM
strings) becomes ``/`` in the segment label, and ``,`` and ``=`` (the separators of the algorithm
parameters) become ``;`` and ``:`` there. The SEG keeps the source's character set when it can
encode the prompts, and is written in UTF-8 (``ISO_IR 192``) otherwise.

Every source slice gets one frame per segment (empty frames are kept: viewers such as OHIF
misplace SEGs with omitted frames), so the SEG references every source instance and its frames
carry the source slices' positions and orientation.

Series Date and Time are the SEG's creation, equal to its Content Date and Time (highdicom
leaves them out unless given, the SDK's SEG writer sets them; PACS and viewers list and sort
series by them). A run with untrained networks (the
``allow_random_weights`` research switch) says so in its Series and Content Description.
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import highdicom as hd
import numpy as np
from monai.deploy.core import Fragment, Operator, OperatorSpec
from pydicom import Dataset
from pydicom.charset import convert_encodings
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from . import __version__
from .output_files import atomic_path
from .segmentation_run import SegmentationRun
from .stages import stage

__all__ = [
    "SEG_FILE_NAME",
    "SEG_SERIES_NUMBER",
    "DiffuGTSSegWriterOperator",
    "segment_description",
    "organ_code",
    "build_segmentation",
    "seg_character_set",
    "series_description",
]

logger = logging.getLogger(__name__)

SEG_FILE_NAME = "diffugts_seg.dcm"
#: Series number of the SEG: high, so PACS lists it after the acquired series.
SEG_SERIES_NUMBER = 9001
MANUFACTURER = "DiffuGTS-Deploy"
#: LO values hold at most 64 characters.
_LO_MAX = 64
UTF8 = "ISO_IR 192"


def _lo(text: str) -> str:
    """``text`` as one LO value: a backslash would split it into two values."""
    return text.replace("\\", "/")[:_LO_MAX]


def _parameter(text: str) -> str:
    """``text`` as a value of highdicom's ``key=value,key=value`` algorithm parameters."""
    return text.replace(",", ";").replace("=", ":")


def seg_character_set(source: Dataset, texts: list[str]) -> str | list[str] | None:
    """The SEG's ``SpecificCharacterSet``: the source's when it encodes ``texts``, else UTF-8.

    Copying the source's (say ``ISO_IR 100``, Latin-1) would turn a prompt's other characters
    into ``?``; the values copied from the source are text already and encode in UTF-8 too.
    """
    declared = source.get("SpecificCharacterSet")
    if all(text.isascii() for text in texts):
        return declared
    values = [declared] if isinstance(declared, str) else list(declared or [])
    if len(values) == 1 and values[0]:  # one character set (ISO 2022 code extensions: UTF-8)
        codec = convert_encodings(values)[0]
        try:
            for text in texts:
                text.encode(codec)
            return declared
        except (UnicodeError, LookupError):
            pass
    return UTF8


def organ_code(organ: str | None) -> Code | None:
    """SNOMED CT code of a host organ of the vocabulary (``liver`` -> 10200004), else ``None``."""
    if not organ:
        return None
    keyword = "".join(part.capitalize() for part in organ.replace("-", " ").split())
    return getattr(codes.SCT, keyword, None)


def segment_description(number: int, run: SegmentationRun, index: int) -> hd.seg.SegmentDescription:
    """Coded description of segment ``number`` (1-based) for the prompt ``index`` of ``run``."""
    prompt = run.results[index].prompt
    finding_type = codes.SCT.Neoplasm if prompt.finding else codes.SCT.Lesion
    site = organ_code(prompt.organ)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="DiffuGTS",
        family=codes.DCM.ArtificialIntelligence,
        version=f"{__version__} {run.profile}"[:_LO_MAX],
        source=MANUFACTURER,
        parameters={
            "prompt": _parameter(prompt.prompt),
            "profile": run.profile,
            "num_steps": str(run.pipeline_config.get("num_steps")),
            "seed": str(run.pipeline_config.get("seed")),
            "threshold": str(run.pipeline_config.get("threshold")),
        },
    )
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=_lo(prompt.prompt),
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=finding_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[site] if site is not None else None,
    )


def series_description(run: SegmentationRun) -> str:
    """The SEG's Series Description: the profile, and which networks are untrained if any."""
    if run.untrained:
        return f"DiffuGTS ({run.profile}) UNTRAINED {'+'.join(run.untrained)}: research only"[:_LO_MAX]
    return f"DiffuGTS ({run.profile}): research use only"[:_LO_MAX]


def build_segmentation(run: SegmentationRun) -> hd.seg.Segmentation:
    """The SEG dataset of ``run``: frames ``(slice, row, column, segment)`` on the source slices."""
    masks = np.stack([run.mask_slices(i) for i in range(len(run.results))], axis=-1).astype(bool)
    descriptions = [segment_description(i + 1, run, i) for i in range(len(run.results))]
    texts = [text for d in descriptions for text in (d.SegmentLabel, d.SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters)]
    now = datetime.datetime.now()
    return hd.seg.Segmentation(
        source_images=run.source_datasets,
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=f"DiffuGTS {run.profile}",
        software_versions=__version__,
        device_serial_number="0",
        series_description=series_description(run),
        content_label="DIFFUGTS",
        content_description="Random weights (allow_random_weights): masks mean nothing" if run.untrained else "Zero-shot text-prompted tumor segmentation",
        omit_empty_frames=False,
        specific_character_set=seg_character_set(run.source_datasets[0], texts),
        content_date=now.date(),
        content_time=now.time(),
        series_date=now.date(),
        series_time=now.time(),
    )


class DiffuGTSSegWriterOperator(Operator):
    """Write the DICOM SEG of a :class:`~operators.segmentation_run.SegmentationRun`.

    Named input:
        segmentation: the model step's output.
    Named output:
        seg_path: path of the written SEG (``<output_folder>/diffugts_seg.dcm``).

    The file is written under a temporary name and renamed, so it appears complete or not at all.
    """

    def __init__(self, fragment: Fragment, *args, output_folder: str | os.PathLike, **kwargs) -> None:
        self.output_folder = Path(output_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("segmentation")
        spec.output("seg_path")

    def compute(self, op_input, op_output, context) -> None:
        run = op_input.receive("segmentation")
        op_output.emit(self.write(run), "seg_path")

    @stage("SEG writing")
    def write(self, run: SegmentationRun) -> Path:
        seg = build_segmentation(run)
        path = self.output_folder / SEG_FILE_NAME
        with atomic_path(path) as partial:
            seg.save_as(partial, enforce_file_format=True)
        logger.info(
            "wrote DICOM SEG %s (%d segment(s), %d frames, SOP instance %s)",
            path,
            len(run.results),
            int(seg.NumberOfFrames),
            seg.SOPInstanceUID,
        )
        return path
