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


def test_seg_is_dated_like_a_series_of_its_own(written_seg):
    # PACS and viewers list and sort series by Series Date and Time (the SDK's writer sets them).
    seg = hd.seg.segread(written_seg)
    assert seg.SeriesDate == seg.ContentDate == seg.InstanceCreationDate
    assert seg.SeriesTime == seg.ContentTime


def test_seg_holds_what_viewers_need_to_place_it(written_seg, segmentation_run):
    # What OHIF's SEG loader (dcmjs / Cornerstone adapters) and 3D Slicer's (dcmqi, highdicom) read
    # to put each frame on its source slice: the source's frame of reference and series, the plane
    # geometry, and per frame its segment and source instance.
    seg = hd.seg.segread(written_seg)
    source = segmentation_run.source_datasets[0]
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "StudyDate"):
        assert seg.get(keyword) == source.get(keyword), keyword
    assert seg.Modality == "SEG" and seg.SeriesInstanceUID != source.SeriesInstanceUID and seg.SeriesNumber
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert shared.PlaneOrientationSequence[0].ImageOrientationPatient and shared.PixelMeasuresSequence[0].PixelSpacing
    assert float(shared.PixelMeasuresSequence[0].SliceThickness) > 0
    assert seg.DimensionOrganizationSequence and len(seg.DimensionIndexSequence) >= 2
    for frame in seg.PerFrameFunctionalGroupsSequence:
        assert frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber in (1, 2)
        assert frame.PlanePositionSequence[0].ImagePositionPatient
        assert frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    for segment in seg.SegmentSequence:
        assert segment.SegmentLabel and segment.SegmentAlgorithmType == "AUTOMATIC" and segment.SegmentAlgorithmName


def test_untrained_networks_are_said_in_the_series_description(fragment, segmentation_run, tmp_path):
    run = dataclasses.replace(segmentation_run, weights={**segmentation_run.weights, "heads": "random-init(seed=0)"})
    seg = build_segmentation(run)
    assert seg.SeriesDescription == "DiffuGTS (mini) UNTRAINED heads: research only"
    assert "masks mean nothing" in seg.ContentDescription
    assert build_segmentation(segmentation_run).SeriesDescription == "DiffuGTS (mini): research use only"


def _ohif_packages() -> str | None:
    # OHIF v3's SEG loader (@cornerstonejs/adapters, with dcmjs) from npm: not a Python dependency,
    # so looked for where `npm install --prefix .cache/npm @cornerstonejs/adapters@5.14.0
    # @babel/runtime` puts it, or in DIFFUGTS_OHIF_NODE_MODULES's parent folder.
    import os
    from pathlib import Path

    candidates = [os.environ.get("DIFFUGTS_OHIF_NODE_MODULES"), Path(__file__).resolve().parents[2] / ".cache" / "npm" / "node_modules"]
    found = [Path(c) for c in candidates if c and (Path(c) / "@cornerstonejs" / "adapters" / "package.json").is_file()]
    return str(found[0].parent) if found and shutil.which("node") else None


@pytest.mark.skipif(
    _ohif_packages() is None, reason="node or @cornerstonejs/adapters missing (npm install --prefix .cache/npm @cornerstonejs/adapters@5.14.0 @babel/runtime)"
)
@pytest.mark.parametrize("by", ["uid", "geometry"])
def test_ohifs_loader_puts_every_frame_on_its_source_slice(fragment, segmentation_run, tmp_path, by):
    import base64
    import json
    from pathlib import Path

    shape = segmentation_run.results[0].mask.shape
    first, second = np.zeros(shape, bool), np.zeros(shape, bool)
    first[5:20, 8:25, 3:9] = True  # not overlapping: one label map, values = segment numbers
    second[15:30, 20:35, 12:20] = True
    run = _with_masks(segmentation_run, [first, second])
    seg_path = DiffuGTSSegWriterOperator(fragment, output_folder=tmp_path, name=f"ohif_writer_{by}").write(run)
    sources = [str(ds.filename) for ds in run.source_datasets]
    script = Path(__file__).with_name("ohif_seg_loader.mjs").read_text()
    result = subprocess.run(
        ["node", "--input-type=module", "-", by, str(seg_path), *sources],
        input=script,
        cwd=_ohif_packages(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout)
    # By geometry the loader first looks the withheld instance UIDs up, and says so for each frame.
    unexpected = [w for w in loaded["warnings"] if not (by == "geometry" and w.startswith("No imageId found for SOPInstanceUID"))]
    assert unexpected == [] and loaded["labelmaps"] == 1
    assert loaded["labels"] == ["liver tumor", "bright round blob"]
    labels = np.frombuffer(base64.b64decode(loaded["labelmap"]), np.uint16).reshape(run.volume.shape)
    np.testing.assert_array_equal(labels, run.mask_slices(0) * 1 + run.mask_slices(1) * 2)
