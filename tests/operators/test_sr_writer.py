"""The lesion measurement SR (TID 1500) on a phantom series with known lesions.

The run is built by hand (no network is run): two balls of known radius in the first prompt's
mask, one in the second's, on the grid of the phantom CT series, so the SR's numbers can be
checked against the geometry of the series itself.
"""

import highdicom as hd
import numpy as np
import pytest
from operator_helpers import loaded_series
from pydicom import dcmread
from pydicom.sr.codedict import codes
from test_seg_writer import dciodvfy_errors

from operators import SegmentationRun
from operators.seg_writer import DiffuGTSSegWriterOperator
from operators.sr_writer import (
    AOVA_CODE,
    CENTROID_CODE,
    PRIVATE_SCHEME,
    PROBABILITY_CODE,
    SR_FILE_NAME,
    DiffuGTSSrWriterOperator,
    build_measurement_report,
    run_lesions,
)
from operators.volume_geometry import series_affine, slices_to_xyz
from scripts import Modality, SegmentationResult
from scripts.lesion_measurements import measure_lesions
from scripts.text import PromptSet

#: (prompt index, centre voxel (x, y, z), radius in voxels).
BALLS = [(0, (10, 12, 8), 4), (0, (28, 26, 15), 2), (1, (20, 30, 6), 3)]


def _ball(shape, centre, radius):
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    return np.linalg.norm(grid - np.asarray(centre), axis=-1) <= radius


def _centre_lps(datasets, centre):
    """LPS of voxel (column x, row y, slice z), read off the slices' own geometry."""
    x, y, z = centre
    ds = datasets[z]
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    return np.asarray(ds.ImagePositionPatient, dtype=float) + x * column_spacing * orientation[:3] + y * row_spacing * orientation[3:]


@pytest.fixture(scope="module")
def known_run(fragment, phantom_ct):
    selection, datasets, volume, affine = loaded_series(fragment, phantom_ct.folder)
    shape = slices_to_xyz(volume).shape
    masks = [np.zeros(shape, bool), np.zeros(shape, bool)]
    for prompt, centre, radius in BALLS:
        masks[prompt] |= _ball(shape, centre, radius)
    rng = np.random.default_rng(0)
    prompts = [
        PromptSet(prompt="liver tumor", finding="liver tumor", organ="liver", abnormal=(), normal=()),
        PromptSet(prompt="bright round blob", finding=None, organ=None, abnormal=(), normal=()),
    ]
    results = [
        SegmentationResult(
            prompt=p,
            mask=m.astype(np.uint8),
            probability=rng.random(shape).astype(np.float32),
            aova_map=rng.random(shape).astype(np.float32),
            pseudo_healthy=None,
            tumor_volume_ml=float(m.sum()) * abs(np.linalg.det(affine[:3, :3])) / 1000,
        )
        for p, m in zip(prompts, masks)
    ]
    return SegmentationRun(
        study_selected_series=selection,
        source_datasets=datasets,
        modality=Modality.CT,
        volume=volume,
        affine=affine,
        results=results,
        profile="mini",
        weights={"autoencoder": "sha256:0", "diffusion_unet": "sha256:1"},
        weights_source="test",
        pipeline_config={"num_steps": 1, "seed": 0, "threshold": 0.5},
    )


@pytest.fixture(scope="module")
def written(fragment, known_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sr")
    seg_path = DiffuGTSSegWriterOperator(fragment, output_folder=folder, name="sr_test_seg").write(known_run)
    sr_path = DiffuGTSSrWriterOperator(fragment, output_folder=folder, name="sr_test_sr").write(known_run, seg_path)
    return seg_path, sr_path


def _groups(sr_path):
    sr = hd.sr.srread(sr_path)
    return sr, sr.content.get_volumetric_roi_measurement_groups()


def _value(group, name, derivation=None):
    for m in group.get_measurements(name=name):
        if derivation is None or (m.derivation is not None and m.derivation == derivation):
            return m
    raise AssertionError(f"no {name} ({derivation})")


def _centroid(group):
    (point,) = [item for item in group[0].ContentSequence if item.name == CENTROID_CODE]
    return point


def test_sr_passes_dciodvfy(written):
    assert written[1].name == SR_FILE_NAME
    assert dciodvfy_errors(written[1]) == []


def test_one_group_per_known_lesion_with_matching_measurements(written, known_run):
    _, sr_path = written
    _, groups = _groups(sr_path)
    assert len(groups) == len(BALLS)
    expected = {(i + 1, lesion.index): lesion for i in range(2) for lesion in run_lesions(known_run, i)}
    assert len(expected) == len(BALLS)
    voxel = 2.0  # mm: the phantom's spacing
    for group in groups:
        number = group.referenced_segment.referenced_segment_numbers[0]
        identifier = group.tracking_identifier
        assert identifier.startswith("lesion ") and identifier.endswith(f" of segment {number}")
        index = int(identifier.split()[1])
        lesion = expected[(number, index)]
        volume = _value(group, codes.SCT.Volume)
        assert volume.value == pytest.approx(lesion.volume_ml, abs=1e-4)
        assert volume.unit.value == "mL"
        long_axis = _value(group, codes.SCT.LongAxis)
        assert long_axis.value == pytest.approx(lesion.longest_axial_diameter_mm, abs=1e-2)
        assert _value(group, codes.DCM.AttenuationCoefficient, codes.SCT.Mean).value == pytest.approx(lesion.intensity_mean, abs=1e-2)
        assert _value(group, codes.DCM.AttenuationCoefficient, codes.SCT.StandardDeviation).unit == codes.UCUM.HounsfieldUnit
        assert _value(group, AOVA_CODE, codes.SCT.Mean).value == pytest.approx(lesion.aova_mean, abs=1e-4)
        assert _value(group, PROBABILITY_CODE, codes.SCT.Mean).value == pytest.approx(lesion.probability_mean, abs=1e-4)
        # Against the known ball: volume, long axis within a voxel, centroid in LPS.
        ((_, centre, radius),) = [
            b for b in BALLS if b[0] == number - 1 and np.allclose(_centre_lps(known_run.source_datasets, b[1]), lesion.centroid_lps_mm, atol=0.5)
        ]
        ball_voxels = int(_ball(known_run.results[0].mask.shape, centre, radius).sum())
        assert volume.value == pytest.approx(ball_voxels * voxel**3 / 1000, rel=1e-3)
        assert abs(long_axis.value - (2 * radius + 1) * voxel) <= voxel
        point = _centroid(group)
        assert point.GraphicType == "POINT" and point.ValueType == "SCOORD3D"
        np.testing.assert_allclose(point.value, [_centre_lps(known_run.source_datasets, centre)], atol=0.05)
        assert point.ReferencedFrameOfReferenceUID == known_run.source_datasets[0].FrameOfReferenceUID


def test_measurements_match_measure_lesions_of_the_seg_mask(written, known_run):
    # What a reader of the SEG would compute: the SEG's pixels, on the series grid, LPS affine.
    seg_path, sr_path = written
    seg = hd.seg.segread(seg_path)
    uids = [ds.SOPInstanceUID for ds in known_run.source_datasets]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2])
    lps = series_affine(known_run.source_datasets, space="LPS")
    _, groups = _groups(sr_path)
    for number in (1, 2):
        reference = measure_lesions(slices_to_xyz(pixels[..., number - 1]), lps, slices_to_xyz(known_run.volume))
        mine = sorted((g for g in groups if g.referenced_segment.referenced_segment_numbers[0] == number), key=lambda g: g.tracking_identifier)
        assert len(mine) == len(reference)
        for group, lesion in zip(mine, reference):
            assert _value(group, codes.SCT.Volume).value == pytest.approx(lesion.volume_ml, abs=1e-4)
            assert _value(group, codes.SCT.LongAxis).value == pytest.approx(lesion.longest_axial_diameter_mm, abs=1e-2)
            # measure_lesions was given an LPS affine here: its "RAS" centroid is the LPS one.
            np.testing.assert_allclose(_centroid(group).value[0], lesion.centroid_ras_mm, atol=0.02)


def test_each_group_references_its_segment_and_the_source_series(written, known_run):
    seg_path, sr_path = written
    seg = dcmread(seg_path, stop_before_pixels=True)
    sr, groups = _groups(sr_path)
    source_series = known_run.source_datasets[0].SeriesInstanceUID
    for group in groups:
        segment = group.referenced_segment
        assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        assert segment.referenced_sop_class_uid == seg.SOPClassUID
        assert segment.referenced_segment_numbers in ([1], [2])
        assert segment.source_series_for_segmentation.value == source_series
    liver = [g for g in groups if g.referenced_segment.referenced_segment_numbers[0] == 1]
    assert liver and all(g.finding_type == codes.SCT.Neoplasm for g in liver)
    assert all([site.value for site in g.finding_sites] == [codes.SCT.Liver] for g in liver)
    blob = [g for g in groups if g.referenced_segment.referenced_segment_numbers[0] == 2]
    assert blob and all(g.finding_type == codes.SCT.Lesion for g in blob)
    # Evidence: the SEG and every source slice, in the source's study.
    assert sr.StudyInstanceUID == seg.StudyInstanceUID
    evidence = {
        i.ReferencedSOPInstanceUID
        for s in sr.CurrentRequestedProcedureEvidenceSequence
        for series in s.ReferencedSeriesSequence
        for i in series.ReferencedSOPSequence
    }
    assert evidence == {seg.SOPInstanceUID, *(ds.SOPInstanceUID for ds in known_run.source_datasets)}


def test_report_identifies_the_algorithm_the_device_and_research_use(written):
    _, sr_path = written
    sr, groups = _groups(sr_path)
    assert "research" in sr.SeriesDescription.lower()
    assert sr.Modality == "SR" and sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert any(item.CodingSchemeDesignator == PRIVATE_SCHEME for item in sr.CodingSchemeIdentificationSequence)
    (device,) = sr.content.get_observer_contexts(observer_type=codes.DCM.Device)
    assert device.observer_type == codes.DCM.Device
    for group in groups:
        (algorithm_name,) = [i for i in group[0].ContentSequence if i.name == codes.DCM.AlgorithmName]
        assert algorithm_name.value == "DiffuGTS"


def test_empty_masks_give_a_valid_report_with_a_zero_volume_per_segment(fragment, known_run, tmp_path):
    import dataclasses

    results = [dataclasses.replace(r, mask=np.zeros_like(r.mask)) for r in known_run.results]
    run = dataclasses.replace(known_run, results=results)
    seg_path = DiffuGTSSegWriterOperator(fragment, output_folder=tmp_path, name="empty_sr_seg").write(run)
    sr_path = DiffuGTSSrWriterOperator(fragment, output_folder=tmp_path, name="empty_sr").write(run, seg_path)
    assert dciodvfy_errors(sr_path) == []
    groups = hd.sr.srread(sr_path).content.get_volumetric_roi_measurement_groups()
    assert [g.referenced_segment.referenced_segment_numbers for g in groups] == [[1], [2]]
    for number, group in enumerate(groups, start=1):
        assert group.tracking_identifier == f"no lesion in segment {number}"
        (volume,) = group.get_measurements()
        assert volume.name == codes.SCT.Volume and volume.value == 0


def test_mr_intensity_is_a_unitless_signal_intensity(written, known_run, tmp_path):
    import dataclasses

    seg = dcmread(written[0], stop_before_pixels=True)
    sr = build_measurement_report(dataclasses.replace(known_run, modality=Modality.MR), seg, known_run.source_datasets)
    sr.save_as(tmp_path / "mr_sr.dcm", enforce_file_format=True)
    _, groups = _groups(tmp_path / "mr_sr.dcm")
    assert len(groups) == len(BALLS)
    for group in groups:
        mean = _value(group, codes.DCM.MRSignalIntensity, codes.SCT.Mean)
        assert mean.unit == codes.UCUM.NoUnits
        assert not group.get_measurements(name=codes.DCM.AttenuationCoefficient)
