"""Per-lesion measurements as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report).

Each prompt's mask is split into its connected lesions by
:func:`scripts.lesion_measurements.measure_lesions` (the same function that fills the bundle's
``<name>_report.json``), measured on the pipeline's ``(x, y, z)`` grid with its RAS affine, the
image being the series volume on that grid. Every lesion becomes one TID 1411 group
(``VolumetricROIMeasurementsAndQualitativeEvaluations``) holding:

* a tracking identifier: a fresh UID and ``lesion N of segment M`` (N: 1 is the largest);
* the SEG segment of its prompt (``referenced_segment``, with the source series), the segment's
  property type as finding type, its category as finding category, its anatomic region (the
  host organ) as finding site;
* the lesion's centroid (mean voxel centre) as a SCOORD3D ``POINT`` "Center of Mass"
  (DCM 128138) in DICOM patient coordinates (LPS, the SEG's and the series' frame of reference),
  a CONTAINS child of the group (highdicom refuses ``CoordinatesForMeasurement3D`` on the
  measurements of a volumetric group);
* Volume (SCT 118565006, mL);
* Long axis (SCT 103339001, mm): the RECIST longest axial diameter;
* the mean and SD (derivation SCT 373098007 / 386136009) of the attenuation coefficient
  (DCM 112031, ``[hnsf'U]``) for CT or of the MR signal intensity (DCM 110852, no units) for MR;
* the mean AOVA (anomaly-aware attention) and the mean tumor probability inside the lesion,
  coded in the private scheme ``99DIFFUGTS`` (declared in the Coding Scheme Identification
  Sequence): ``AOVA`` "Anomaly-aware attention (AOVA)" and ``TUMPROB`` "Tumor probability",
  both unitless (UCUM ``1``), in [0, 1].

A prompt whose mask is empty gets one group referencing its segment, ``no lesion in segment M``,
with a Volume of 0 mL only (so a run without any lesion is still a valid TID 1500 report, which
needs at least one group).

The algorithm (DiffuGTS, version and weights profile, the sha256 of each weights file as its
parameters) is identified on each group and each measurement, and the report's observer is the
device DiffuGTS (a UID derived from the version). The SR is research use only, as its Series
Description says.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from monai.deploy.core import ConditionType, Fragment, Operator, OperatorSpec
from pydicom import Dataset, dcmread
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from scripts.lesion_measurements import LesionMeasurement, measure_lesions

from . import __version__
from .output_files import atomic_path
from .seg_writer import _LO_MAX, MANUFACTURER
from .segmentation_run import SegmentationRun
from .stages import stage
from .volume_geometry import slices_to_xyz

__all__ = [
    "AOVA_CODE",
    "PRIVATE_SCHEME",
    "PROBABILITY_CODE",
    "SR_FILE_NAME",
    "SR_SERIES_NUMBER",
    "DiffuGTSSrWriterOperator",
    "build_measurement_report",
    "run_lesions",
]

logger = logging.getLogger(__name__)

SR_FILE_NAME = "diffugts_sr.dcm"
#: Series number of the SR: after the SEG's (9001).
SR_SERIES_NUMBER = 9002
#: Private coding scheme of the DiffuGTS-specific quantities (``99`` prefix: local, PS3.16 8.2).
PRIVATE_SCHEME = "99DIFFUGTS"
AOVA_CODE = hd.sr.CodedConcept("AOVA", PRIVATE_SCHEME, "Anomaly-aware attention (AOVA)")
PROBABILITY_CODE = hd.sr.CodedConcept("TUMPROB", PRIVATE_SCHEME, "Tumor probability")
#: The centroid: the mean of the lesion's voxel centres (uniform mass), DCM 128138.
CENTROID_CODE = codes.DCM.CenterOfMass
MILLILITER = hd.sr.CodedConcept("mL", "UCUM", "milliliter")
NO_UNITS = codes.UCUM.NoUnits


def run_lesions(run: SegmentationRun, index: int) -> list[LesionMeasurement]:
    """The lesions of prompt ``index`` of ``run``, measured on the ``(x, y, z)`` grid (RAS affine).

    The mask, AOVA and probability of a result are on the pipeline's grid already; the volume is
    ``(slice, row, column)`` and is transposed to it. ``centroid_lps_mm`` is in DICOM patient
    coordinates.
    """
    result = run.results[index]
    return measure_lesions(
        result.mask,
        run.affine,
        slices_to_xyz(run.volume),
        aova_map=result.aova_map,
        probability=result.probability,
        host_organ=result.prompt.organ,
    )


def _algorithm(run: SegmentationRun) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name="DiffuGTS",
        version=f"{__version__} {run.profile}"[:_LO_MAX],
        parameters=[f"{name}: {value}" for name, value in sorted(run.weights.items())] or None,
        family=codes.DCM.ArtificialIntelligence,
        manufacturer=MANUFACTURER,
    )


def _referenced_segment(run: SegmentationRun, seg_dataset: Dataset, number: int) -> hd.sr.ReferencedSegment:
    return hd.sr.ReferencedSegment(
        sop_class_uid=seg_dataset.SOPClassUID,
        sop_instance_uid=seg_dataset.SOPInstanceUID,
        segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(run.source_datasets[0].SeriesInstanceUID),
    )


def _segment(seg_dataset: Dataset, number: int) -> Dataset:
    for item in seg_dataset.SegmentSequence:
        if int(item.SegmentNumber) == number:
            return item
    raise ValueError(f"the SEG {seg_dataset.SOPInstanceUID} has no segment {number}")


def _coded(item: Dataset, keyword: str) -> hd.sr.CodedConcept | None:
    sequence = item.get(keyword)
    return hd.sr.CodedConcept.from_dataset(sequence[0]) if sequence else None


def _lesion_group(
    run: SegmentationRun,
    seg_dataset: Dataset,
    number: int,
    lesion: LesionMeasurement,
    algorithm: hd.sr.AlgorithmIdentification,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    segment = _segment(seg_dataset, number)
    frame_of_reference = seg_dataset.FrameOfReferenceUID
    centroid = hd.sr.Scoord3DContentItem(
        name=CENTROID_CODE,
        graphic_type=hd.sr.GraphicTypeValues3D.POINT,
        graphic_data=np.asarray([lesion.centroid_lps_mm], dtype=np.float64),
        frame_of_reference_uid=frame_of_reference,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    if run.modality.value == "CT":
        intensity, unit = codes.DCM.AttenuationCoefficient, codes.UCUM.HounsfieldUnit
    else:
        intensity, unit = codes.DCM.MRSignalIntensity, NO_UNITS

    def measurement(name, value, unit, derivation=None):
        return hd.sr.Measurement(
            name=name,
            value=float(value),
            unit=unit,
            derivation=derivation,
            algorithm_id=algorithm,
        )

    measurements = [
        measurement(codes.SCT.Volume, lesion.volume_ml, MILLILITER),
        measurement(codes.SCT.LongAxis, lesion.longest_axial_diameter_mm, codes.UCUM.Millimeter),
        measurement(intensity, lesion.intensity_mean, unit, codes.SCT.Mean),
        measurement(intensity, lesion.intensity_sd, unit, codes.SCT.StandardDeviation),
    ]
    if lesion.aova_mean is not None:
        measurements.append(measurement(AOVA_CODE, lesion.aova_mean, NO_UNITS, codes.SCT.Mean))
    if lesion.probability_mean is not None:
        measurements.append(measurement(PROBABILITY_CODE, lesion.probability_mean, NO_UNITS, codes.SCT.Mean))
    site = _coded(segment, "AnatomicRegionSequence")
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"lesion {lesion.index} of segment {number}"),
        referenced_segment=_referenced_segment(run, seg_dataset, number),
        finding_type=_coded(segment, "SegmentedPropertyTypeCodeSequence"),
        finding_category=_coded(segment, "SegmentedPropertyCategoryCodeSequence"),
        finding_sites=[hd.sr.FindingSite(site)] if site is not None else None,
        algorithm_id=algorithm,
        measurements=measurements,
    )
    # highdicom refuses coordinates on a measurement of a volumetric group (TID 1411 has none in
    # TID 300): the centroid is a SCOORD3D item of the group itself (TID 1411 is extensible).
    group[0].ContentSequence.append(centroid)
    return group


def _empty_segment_group(
    run: SegmentationRun,
    seg_dataset: Dataset,
    number: int,
    algorithm: hd.sr.AlgorithmIdentification,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    """An empty segment: one group with a volume of 0 mL, so the report says the prompt found
    nothing (and a run without any lesion is still a TID 1500 report, which needs a group)."""
    segment = _segment(seg_dataset, number)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"no lesion in segment {number}"),
        referenced_segment=_referenced_segment(run, seg_dataset, number),
        finding_type=_coded(segment, "SegmentedPropertyTypeCodeSequence"),
        finding_category=_coded(segment, "SegmentedPropertyCategoryCodeSequence"),
        algorithm_id=algorithm,
        measurements=[hd.sr.Measurement(name=codes.SCT.Volume, value=0.0, unit=MILLILITER, algorithm_id=algorithm)],
    )


def _series_description(run: SegmentationRun) -> str:
    if run.untrained:
        return f"DiffuGTS lesions UNTRAINED {'+'.join(run.untrained)}: research only"[:_LO_MAX]
    return "DiffuGTS lesion measurements: research use only"


def build_measurement_report(run: SegmentationRun, seg_dataset: Dataset, source_datasets: Sequence[Dataset]) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report of ``run``: one measurement group per lesion of each prompt.

    Args:
        run: the model step's output (prompt ``i`` is segment ``i + 1`` of the SEG).
        seg_dataset: the SEG written from ``run`` (its header is enough: no pixel data needed).
        source_datasets: the series' slices, as evidence (their headers are enough).
    """
    algorithm = _algorithm(run)
    groups = []
    for index in range(len(run.results)):
        lesions = run_lesions(run, index)
        for lesion in lesions:
            groups.append(_lesion_group(run, seg_dataset, index + 1, lesion, algorithm))
        if not lesions:
            groups.append(_empty_segment_group(run, seg_dataset, index + 1, algorithm))
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["DiffuGTS-Deploy", __version__, run.profile]),
            name="DiffuGTS",
            manufacturer_name=MANUFACTURER,
            model_name=f"DiffuGTS {run.profile}"[:_LO_MAX],
        ),
    )
    procedure = codes.LN.CTUnspecifiedBodyRegion if run.modality.value == "CT" else codes.LN.MRIUnspecifiedBodyRegion
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=procedure,
        imaging_measurements=groups,
    )
    now = datetime.datetime.now()
    return hd.sr.Comprehensive3DSR(
        evidence=[*source_datasets, seg_dataset],
        content=report,
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=f"DiffuGTS {run.profile}"[:_LO_MAX],
        software_versions=__version__,
        device_serial_number="0",
        series_description=_series_description(run),
        coding_schemes=[
            hd.coding_schemes.CodingSchemeIdentificationItem(
                designator=PRIVATE_SCHEME,
                name="DiffuGTS-Deploy private codes",
                responsible_organization=MANUFACTURER,
            )
        ],
        content_date=now.date(),
        content_time=now.time(),
        series_date=now.date(),
        series_time=now.time(),
    )


class DiffuGTSSrWriterOperator(Operator):
    """Write the lesion measurements of a run as a DICOM SR referencing its SEG.

    Named inputs:
        segmentation: the model step's output.
        seg_path: path of the SEG written from it.
    Named output:
        sr_path: path of the written SR (``<output_folder>/diffugts_sr.dcm``), optional: it may
            be left unconnected.
    """

    def __init__(self, fragment: Fragment, *args, output_folder: str | os.PathLike, **kwargs) -> None:
        self.output_folder = Path(output_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        spec.input("segmentation")
        spec.input("seg_path")
        # Nothing downstream need take it (the app's graph ends here): without ``NONE`` Holoscan
        # would never tick an operator whose output has no receiver.
        spec.output("sr_path").condition(ConditionType.NONE)

    def compute(self, op_input, op_output, context) -> None:
        run = op_input.receive("segmentation")
        seg_path = op_input.receive("seg_path")
        op_output.emit(self.write(run, seg_path), "sr_path")

    @stage("SR writing")
    def write(self, run: SegmentationRun, seg_path: str | os.PathLike) -> Path:
        seg = dcmread(seg_path, stop_before_pixels=True)
        sr = build_measurement_report(run, seg, run.source_datasets)
        path = self.output_folder / SR_FILE_NAME
        with atomic_path(path) as partial:
            sr.save_as(partial, enforce_file_format=True)
        logger.info("wrote DICOM SR %s (SOP instance %s)", path, sr.SOPInstanceUID)
        return path
