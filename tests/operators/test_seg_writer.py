import dataclasses
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pytest
from pydicom.sr.codedict import codes

from operators.seg_writer import SEG_FILE_NAME, DiffuGTSSegWriterOperator, build_segmentation, organ_code
from scripts.text import AttributeVocabulary


def dciodvfy_errors(path) -> list[str]:
    """``Error`` lines of dicom3tools' validator (it exits 1 on any)."""
    assert shutil.which("dciodvfy"), "dciodvfy is missing: install dicom3tools (bash tools/setup.sh)"
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert (result.returncode == 0) == (not errors), result.stdout + result.stderr
    return errors


@pytest.fixture
def written_seg(fragment, segmentation_run, tmp_path):
    writer = DiffuGTSSegWriterOperator(fragment, output_folder=tmp_path, name="test_seg_writer")
    return writer.write(segmentation_run)


def _with_masks(run, masks_xyz):
    results = [dataclasses.replace(r, mask=m.astype(np.uint8)) for r, m in zip(run.results, masks_xyz)]
    return dataclasses.replace(run, results=results)


def test_seg_passes_dciodvfy(written_seg):
    assert dciodvfy_errors(written_seg) == []


def test_seg_is_written_whole_under_its_name(written_seg, tmp_path):
    assert written_seg == tmp_path / SEG_FILE_NAME
    assert sorted(p.name for p in tmp_path.iterdir()) == [SEG_FILE_NAME]


def test_one_coded_segment_per_prompt(written_seg):
    seg = hd.seg.segread(written_seg)
    first, second = (seg.get_segment_description(n) for n in (1, 2))
    assert first.segment_label == "liver tumor"
    assert first.segmented_property_category == codes.SCT.MorphologicallyAbnormalStructure
    assert first.segmented_property_type == codes.SCT.Neoplasm
    assert [region for region in first.anatomic_regions] == [codes.SCT.Liver]
    assert second.segment_label == "bright round blob"
    assert second.segmented_property_type == codes.SCT.Lesion
    assert len(second.anatomic_regions) == 0
    algorithm = first.algorithm_identification[0]
    assert algorithm.AlgorithmName == "DiffuGTS"
    assert "liver tumor" in algorithm.AlgorithmParameters
    assert seg.Manufacturer == "DiffuGTS-Deploy" and seg.SegmentationType == "BINARY"


def test_seg_references_every_source_instance(written_seg, segmentation_run):
    seg = hd.seg.segread(written_seg)
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == segmentation_run.series.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence} == {ds.SOPInstanceUID for ds in segmentation_run.source_datasets}
    assert seg.StudyInstanceUID == segmentation_run.source_datasets[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == segmentation_run.source_datasets[0].FrameOfReferenceUID


def test_frames_lie_on_the_source_slices(written_seg, segmentation_run):
    seg = hd.seg.segread(written_seg)
    sources = {ds.SOPInstanceUID: ds for ds in segmentation_run.source_datasets}
    assert int(seg.NumberOfFrames) == len(sources) * len(segmentation_run.results)
    shared = seg.SharedFunctionalGroupsSequence[0]
    first = segmentation_run.source_datasets[0]
    np.testing.assert_allclose(shared.PlaneOrientationSequence[0].ImageOrientationPatient, first.ImageOrientationPatient, atol=1e-6)
    np.testing.assert_allclose(shared.PixelMeasuresSequence[0].PixelSpacing, first.PixelSpacing)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        np.testing.assert_allclose(position, sources[source_uid].ImagePositionPatient, atol=1e-4)


def test_seg_pixels_are_the_masks_on_the_source_slices(written_seg, segmentation_run):
    seg = hd.seg.segread(written_seg)
    uids = [ds.SOPInstanceUID for ds in segmentation_run.source_datasets]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2])
    for index in range(2):
        np.testing.assert_array_equal(pixels[..., index], segmentation_run.mask_slices(index))


def test_overlapping_masks_keep_both_segments(fragment, segmentation_run, tmp_path):
    shape = segmentation_run.results[0].mask.shape
    first, second = np.zeros(shape, bool), np.zeros(shape, bool)
    first[5:20, 8:25, 3:12] = True
    second[15:30, 20:35, 10:20] = True
    run = _with_masks(segmentation_run, [first, second])
    path = DiffuGTSSegWriterOperator(fragment, output_folder=tmp_path, name="overlap_writer").write(run)
    seg = hd.seg.segread(path)
    uids = [ds.SOPInstanceUID for ds in run.source_datasets]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2])
    np.testing.assert_array_equal(pixels[..., 0], first.transpose(2, 1, 0))
    np.testing.assert_array_equal(pixels[..., 1], second.transpose(2, 1, 0))
    assert (pixels[..., 0] & pixels[..., 1]).any()


def test_empty_masks_give_a_valid_seg_with_every_frame(fragment, segmentation_run, tmp_path):
    shape = segmentation_run.results[0].mask.shape
    run = _with_masks(segmentation_run, [np.zeros(shape), np.zeros(shape)])
    seg = build_segmentation(run)
    assert int(seg.NumberOfFrames) == 2 * len(run.source_datasets)
    path = DiffuGTSSegWriterOperator(fragment, output_folder=tmp_path, name="empty_writer").write(run)
    assert dciodvfy_errors(path) == []


def test_every_vocabulary_organ_has_a_snomed_code():
    organs = AttributeVocabulary().organs
    assert organs
    for organ in organs:
        code = organ_code(organ)
        assert code is not None and code.scheme_designator == "SCT", organ
    assert organ_code("liver") == codes.SCT.Liver
    assert organ_code(None) is None and organ_code("elbow of the moon") is None
