"""The bad-input corpus: every way a user's input can be wrong, and what must happen.

One table, :data:`BAD_INPUTS`. Each entry builds its input from the phantom CT of
:class:`Sources` (a 32x32x24 liver-tumor phantom of ``corpus``, also written as a DICOM
series with ``tools.demo.write_ct_series``) and says which command runs it and what is expected:
``"ok"`` (a correct result) or a piece of the one-line error. Each error must also name the
file, folder or variable at fault (``Invocation.names``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import torch
from pydicom.encaps import encapsulate
from pydicom.fileset import FileSet
from runners import Invocation

from tools.demo import write_ct_series

OK = "ok"
APP_OUTPUTS = ["diffugts_montage.png", "diffugts_provenance.json", "diffugts_report.html", "diffugts_seg.dcm", "diffugts_sr.dcm"]


@dataclass(frozen=True)
class Sources:
    """What the builders start from (built once per test session, never modified)."""

    image: np.ndarray  # (x, y, z) HU
    affine: np.ndarray  # RAS
    series: Path  # the image as a DICOM CT series, CT000001.dcm ... CT000024.dcm
    app_config: Path  # fast application configuration
    weights: Path  # the embedded mini weights


@dataclass(frozen=True)
class BadInput:
    name: str
    build: Callable[[Sources, Path], Invocation]
    expect: str


# -- helpers -----------------------------------------------------------------------------------


def _app(src: Sources, tmp: Path, folder: Path, *, runner="app", names=(), app_args=(), env=None, inputs=(), marker=None, check=None) -> Invocation:
    return Invocation(
        runner=runner,
        output=tmp / "out",
        input_folder=folder,
        inputs=[folder, src.app_config, *inputs],
        names=names,
        app_args=app_args,
        env={"DIFFUGTS_APP_CONFIG": str(src.app_config), **(env or {})},
        marker=marker,
        check=check,
    )


def _bundle(tmp: Path, image: Path | None, *, runner="bundle", names=(), inputs=(), marker=None, check=None, output=None, **args) -> Invocation:
    bundle_args = {"prompt": "liver tumor", "modality": "CT", **args}
    if image is not None:
        bundle_args["input_image"] = str(image)
    return Invocation(
        runner=runner,
        output=output or tmp / "out",
        inputs=[p for p in (image, *inputs) if p is not None],
        names=names,
        bundle_args=bundle_args,
        marker=marker,
        check=check,
    )


def _copy_series(src: Sources, tmp: Path) -> Path:
    folder = tmp / "input"
    shutil.copytree(src.series, folder)
    return folder


def _edit_slices(folder: Path, edit: Callable[[pydicom.Dataset, int], None]) -> None:
    for index, path in enumerate(sorted(folder.glob("*.dcm"))):
        dataset = pydicom.dcmread(path)
        edit(dataset, index)
        dataset.save_as(path)


def _nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(array), affine), path)
    return path


def _ct_nifti(src: Sources, tmp: Path, name="case") -> Path:
    return _nifti(tmp / f"{name}.nii.gz", src.image, src.affine)


def _rotation_x(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])


class _OpenOnUnpickle:
    """Pickles to ``open(marker, "w")``: loading it without ``weights_only`` creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A weights file whose unpickling runs code (it creates ``marker``)."""
    torch.save({"encoder.weight": torch.zeros(1), "payload": _OpenOnUnpickle(marker)}, path)
    return path


def _models_folder(tmp: Path, src: Sources, **replace: Callable[[Path], None]) -> Path:
    """A copy of the mini weights (``mini/``) with files replaced by ``replace[stem](path)``."""
    folder = tmp / "models" / "mini"
    folder.mkdir(parents=True)
    for source in sorted(src.weights.glob("*.pt")):
        target = folder / source.name
        if source.stem in replace:
            replace[source.stem](target)
        else:
            target.symlink_to(source)  # read-only use: no need to copy 20 MB per case
    return folder


def _truncated_copy(source: Path) -> Callable[[Path], None]:
    return lambda target: target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])


def _wrong_profile_heads(target: Path) -> None:
    from scripts.foundation import PROFILES
    from scripts.heads import heads_for_profile

    torch.save(heads_for_profile(PROFILES["maisi"]).state_dict(), target)


# -- checks of successful runs ---------------------------------------------------------------


def _seg_of(output: Path) -> hd.seg.Segmentation:
    return hd.seg.segread(output / "diffugts_seg.dcm")


def _seg_frames(count: int) -> Callable[[Path], None]:
    def check(output: Path) -> None:
        assert int(_seg_of(output).NumberOfFrames) == count

    return check


def _seg_references(series_file: Path, count: int) -> Callable[[Path], None]:
    def check(output: Path) -> None:
        seg = _seg_of(output)
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(series_file).SeriesInstanceUID
        assert int(seg.NumberOfFrames) == count

    return check


def _mask_on_input_grid(image: Path, stem: str) -> Callable[[Path], None]:
    def check(output: Path) -> None:
        source, mask = nib.load(image), nib.load(output / f"{stem}_seg.nii.gz")
        assert mask.shape == source.shape and mask.get_data_dtype() == np.uint8
        np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)

    return check


# -- the app: DICOM folders ------------------------------------------------------------------


def empty_folder(src, tmp):
    folder = tmp / "input"
    folder.mkdir()
    return _app(src, tmp, folder, names=[str(folder)])


def non_dicom_among_dicom(src, tmp):
    folder = _copy_series(src, tmp)
    (folder / "notes.txt").write_text("reported by phone")
    return _app(src, tmp, folder, names=["notes.txt"])


def truncated_pixel_data(src, tmp, runner="app"):
    folder = _copy_series(src, tmp)
    path = folder / "CT000006.dcm"
    path.write_bytes(path.read_bytes()[:-700])
    return _app(src, tmp, folder, runner=runner, names=["CT000006.dcm", str(folder)])


def truncated_header(src, tmp):
    folder = _copy_series(src, tmp)
    path = folder / "CT000006.dcm"
    path.write_bytes(path.read_bytes()[:300])
    return _app(src, tmp, folder, names=["CT000006.dcm"])


def missing_slice(src, tmp):
    folder = _copy_series(src, tmp)
    (folder / "CT000010.dcm").unlink()
    return _app(src, tmp, folder, names=["CT000009.dcm", "CT000011.dcm"])


def irregular_spacing(src, tmp):
    folder = _copy_series(src, tmp)

    def shift(dataset, index):  # 1 mm more between slices 12 and 13, then regular again
        if index >= 12:
            position = [float(v) for v in dataset.ImagePositionPatient]
            position[2] += 1.0
            dataset.ImagePositionPatient = position

    _edit_slices(folder, shift)
    return _app(src, tmp, folder, names=["CT000012.dcm", "CT000013.dcm"])


def two_series_in_one_folder(src, tmp):
    folder = _copy_series(src, tmp)
    study = pydicom.dcmread(folder / "CT000001.dcm").StudyInstanceUID
    files = write_ct_series(src.image[:, :, :18], src.affine, tmp / "other", seed=11, series_description="second series")
    for path in files:
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID = study  # the same study: a thin and a thick reconstruction, say
        dataset.save_as(folder / f"B{path.name}")
    return _app(src, tmp, folder, check=_seg_references(folder / "CT000001.dcm", 24))


def duplicate_slice(src, tmp):
    folder = _copy_series(src, tmp)
    dataset = pydicom.dcmread(folder / "CT000007.dcm")
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    dataset.save_as(folder / "CT000007_copy.dcm")
    return _app(src, tmp, folder, check=_seg_frames(24))


def enhanced_multi_frame(src, tmp):
    folder = tmp / "input"
    folder.mkdir()
    slices = [pydicom.dcmread(path) for path in sorted(src.series.glob("*.dcm"))]
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(slices, series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(), instance_number=1)
    enhanced.save_as(folder / "enhanced_ct.dcm")
    return _app(src, tmp, folder, names=["enhanced_ct.dcm"])


def single_slice(src, tmp):
    folder = tmp / "input"
    folder.mkdir()
    shutil.copy(src.series / "CT000012.dcm", folder)
    return _app(src, tmp, folder, names=[str(folder)])


def oblique_series(src, tmp):
    folder = tmp / "input"
    write_ct_series(src.image, _rotation_x(25) @ src.affine, folder, seed=12)
    return _app(src, tmp, folder, check=_seg_frames(24))


def gantry_tilt(src, tmp):
    folder = _copy_series(src, tmp)

    def tilt(dataset, index):  # slices shift along y as they advance: a 14 degree gantry tilt
        position = [float(v) for v in dataset.ImagePositionPatient]
        position[1] += 0.5 * index
        dataset.ImagePositionPatient = position

    _edit_slices(folder, tilt)
    return _app(src, tmp, folder, check=_seg_frames(24))


def unsupported_modality(src, tmp):
    folder = _copy_series(src, tmp)
    _edit_slices(folder, lambda dataset, index: setattr(dataset, "Modality", "PT"))
    return _app(src, tmp, folder, names=[str(folder)])


def infinite_rescale(src, tmp):
    folder = _copy_series(src, tmp)
    _edit_slices(folder, lambda dataset, index: setattr(dataset, "RescaleSlope", "inf") if index == 8 else None)
    return _app(src, tmp, folder, names=["CT000009.dcm", str(folder)])


def over_memory_budget_app(src, tmp):
    folder = _copy_series(src, tmp)
    config = tmp / "config.json"
    config.write_text(src.app_config.read_text().replace('"pipeline": {', '"pipeline": {"memory_budget_gb": 0.001, '))
    return _app(src, tmp, folder, env={"DIFFUGTS_APP_CONFIG": str(config)}, inputs=[config], names=[str(folder)])


def empty_prompt_app(src, tmp):
    return _app(src, tmp, src.series, env={"DIFFUGTS_PROMPTS": '{"CT": ["   "]}'}, names=["DIFFUGTS_PROMPTS"])


def absurd_prompt_app(src, tmp):
    return _app(src, tmp, src.series, env={"DIFFUGTS_PROMPTS": '{"CT": ["' + "tumor " * 80 + '"]}'}, names=["DIFFUGTS_PROMPTS"])


def organ_not_in_scan_app(src, tmp):
    return _app(src, tmp, src.series, env={"DIFFUGTS_PROMPTS": '{"CT": ["brain tumor"]}'}, check=_seg_frames(24))


def truncated_weights_app(src, tmp):
    models = _models_folder(tmp, src, diffugts_heads=_truncated_copy(src.weights / "diffugts_heads.pt"))
    return _app(src, tmp, src.series, app_args=["-m", str(models)], inputs=[models], names=[str(models / "diffugts_heads.pt")])


def wrong_profile_weights_app(src, tmp):
    models = _models_folder(tmp, src, diffugts_heads=_wrong_profile_heads)
    return _app(src, tmp, src.series, app_args=["-m", str(models)], inputs=[models], names=[str(models / "diffugts_heads.pt")])


def malicious_weights_app(src, tmp):
    marker = tmp / "pwned"
    models = _models_folder(tmp, src, autoencoder=lambda target: malicious_checkpoint(target, marker))
    return _app(src, tmp, src.series, app_args=["-m", str(models)], inputs=[models], names=[str(models / "autoencoder.pt")], marker=marker)


def output_is_a_file_app(src, tmp):
    invocation = _app(src, tmp, src.series, names=[str(tmp / "out")])
    invocation.output.write_text("an existing file")
    invocation.inputs = [*invocation.inputs, invocation.output]
    return invocation


def output_under_a_file_app(src, tmp):
    (tmp / "results.txt").write_text("an existing file")
    invocation = _app(src, tmp, src.series, names=[str(tmp / "results.txt")])
    invocation.output = tmp / "results.txt" / "out"
    invocation.inputs = [*invocation.inputs, tmp / "results.txt"]
    return invocation


# -- the bundle: NIfTI files, prompts, weights, output folders --------------------------------


def nan_voxels(src, tmp):
    image = src.image.copy()
    image[10, 10, 10] = np.nan
    path = _nifti(tmp / "nan.nii.gz", image, src.affine)
    return _bundle(tmp, path, names=[str(path)])


def infinite_voxels(src, tmp):
    image = src.image.copy()
    image[5:7, 5, 5] = np.inf
    path = _nifti(tmp / "inf.nii.gz", image, src.affine)
    return _bundle(tmp, path, names=[str(path)])


def four_d_nifti(src, tmp, runner="bundle"):
    path = _nifti(tmp / "dynamic.nii.gz", np.stack([src.image] * 3, axis=-1), src.affine)
    return _bundle(tmp, path, runner=runner, names=[str(path)])


def two_d_nifti(src, tmp):
    path = _nifti(tmp / "slice.nii.gz", src.image[:, :, 12], src.affine)
    return _bundle(tmp, path, names=[str(path)])


def one_slice_volume(src, tmp):
    path = _nifti(tmp / "one_slice.nii.gz", src.image[:, :, 12:13], src.affine)
    return _bundle(tmp, path, check=_mask_on_input_grid(path, "one_slice"))


def zero_size_dimension(src, tmp):
    path = _nifti(tmp / "zero.nii.gz", np.zeros((32, 32, 0), np.float32), src.affine)
    return _bundle(tmp, path, names=[str(path)])


def over_memory_budget(src, tmp):
    # A header that claims 2048^3 voxels (16 GB as int16) and holds none: refused from the header.
    header = nib.Nifti1Header()
    header.set_data_shape((2048, 2048, 2048))
    header.set_data_dtype(np.int16)
    header.set_zooms((0.5, 0.5, 0.5))
    header.set_sform(np.diag([0.5, 0.5, 0.5, 1.0]), code=1)  # a placed volume: only its size is wrong
    path = tmp / "huge.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4)
    return _bundle(tmp, path, names=[str(path)], memory_budget_gb=4)


def not_an_image(src, tmp):
    path = tmp / "report.nii.gz"
    path.write_text("this is a radiology report, not an image")
    return _bundle(tmp, path, names=[str(path)])


def truncated_nifti(src, tmp):
    path = _ct_nifti(src, tmp)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return _bundle(tmp, path, names=[str(path)])


def empty_prompt(src, tmp):
    return _bundle(tmp, _ct_nifti(src, tmp), prompt="   ", names=["prompt"])


def absurd_prompt(src, tmp):
    return _bundle(tmp, _ct_nifti(src, tmp), prompt="liver tumor " * 40, names=["prompt"])


def prompt_without_letters(src, tmp):
    return _bundle(tmp, _ct_nifti(src, tmp), prompt="12 ?? !!", names=["prompt"])


def gibberish_prompt(src, tmp):
    path = _ct_nifti(src, tmp)
    return _bundle(tmp, path, prompt="zorblax quintessence of the flibber", check=_mask_on_input_grid(path, "case"))


def organ_not_in_scan(src, tmp):
    path = _ct_nifti(src, tmp)
    return _bundle(tmp, path, prompt="brain tumor", check=_mask_on_input_grid(path, "case"))


def unknown_modality(src, tmp):
    return _bundle(tmp, _ct_nifti(src, tmp), modality="PET", names=["PET"])


def truncated_weights(src, tmp):
    weights = tmp / "diffugts_heads.pt"
    _truncated_copy(src.weights / "diffugts_heads.pt")(weights)
    return _bundle(tmp, _ct_nifti(src, tmp), heads_weights=str(weights), inputs=[weights], names=[str(weights)])


def garbage_weights(src, tmp):
    weights = tmp / "autoencoder.pt"
    weights.write_bytes(np.random.default_rng(0).bytes(4096))
    return _bundle(tmp, _ct_nifti(src, tmp), vae_weights=str(weights), inputs=[weights], names=[str(weights)])


def wrong_profile_weights(src, tmp):
    weights = tmp / "diffugts_heads.pt"
    _wrong_profile_heads(weights)
    return _bundle(tmp, _ct_nifti(src, tmp), heads_weights=str(weights), inputs=[weights], names=[str(weights)])


def malicious_weights(src, tmp):
    marker = tmp / "pwned"
    weights = malicious_checkpoint(tmp / "autoencoder.pt", marker)
    return _bundle(tmp, _ct_nifti(src, tmp), vae_weights=str(weights), inputs=[weights], names=[str(weights)], marker=marker)


def output_is_a_file(src, tmp):
    output = tmp / "out"
    output.write_text("an existing file")
    return _bundle(tmp, _ct_nifti(src, tmp), output=output, inputs=[output], names=[str(output)])


def output_under_a_file(src, tmp):
    (tmp / "results.txt").write_text("an existing file")
    output = tmp / "results.txt" / "out"
    return _bundle(tmp, _ct_nifti(src, tmp), output=output, inputs=[tmp / "results.txt"], names=[str(output)])


def bad_case_late_in_a_datalist(src, tmp, runner="bundle"):
    # The first case is fine and the second has a NaN voxel: the run fails, naming the second,
    # and the first case's outputs do not stay behind as if the batch had been done.
    good = _ct_nifti(src, tmp, "good")
    image = src.image.copy()
    image[3, 3, 3] = np.nan
    bad = _nifti(tmp / "bad.nii.gz", image, src.affine)
    datalist = tmp / "datalist.json"
    datalist.write_text('{"test": [{"image": "good.nii.gz"}, {"image": "bad.nii.gz"}]}')
    return _bundle(tmp, None, runner=runner, datalist=str(datalist), inputs=[good, bad, datalist], names=[str(bad)])


def output_would_replace_an_input(src, tmp):
    # BraTS-style names: the label of case.nii.gz is case_seg.nii.gz, in the folder given as output.
    image = _ct_nifti(src, tmp)
    label = _nifti(tmp / "case_seg.nii.gz", np.zeros(src.image.shape, np.uint8), src.affine)
    datalist = tmp / "datalist.json"
    datalist.write_text('{"test": [{"image": "case.nii.gz", "label": "case_seg.nii.gz"}]}')
    return _bundle(tmp, None, datalist=str(datalist), output=tmp, inputs=[image, label, datalist], names=[str(label)])


def oblique_affine(src, tmp):
    path = _nifti(tmp / "oblique.nii.gz", src.image, _rotation_x(25) @ src.affine)
    return _bundle(tmp, path, check=_mask_on_input_grid(path, "oblique"))


# -- round 2: DICOM input --------------------------------------------------------------------


def _config_with(src: Sources, tmp: Path, **settings) -> Path:
    """The fast configuration with top-level ``settings`` (``pipeline`` merged into its knobs)."""
    data = json.loads(src.app_config.read_text())
    data["pipeline"] = {**data["pipeline"], **settings.pop("pipeline", {})}
    config = tmp / "config.json"
    config.write_text(json.dumps({**data, **settings}))
    return config


def _app_with_config(src, tmp, config: Path, names=()):
    return _app(src, tmp, src.series, env={"DIFFUGTS_APP_CONFIG": str(config)}, inputs=[config], names=[str(config), *names])


def _longer_series(src: Sources, folder: Path, *, seed: int, patient_id: str = "DIFFUGTS-PHANTOM") -> list[Path]:
    """30 slices (the source has 24): the larger series, which the selector prefers."""
    image = np.concatenate([src.image, src.image[:, :, :6]], axis=2)
    return write_ct_series(image, src.affine, folder, seed=seed, patient_id=patient_id, series_description="other")


def two_patients(src, tmp, runner="app"):
    # Another patient's larger series in a sub-folder (a wrong drag and drop): it would win.
    folder = _copy_series(src, tmp)
    _longer_series(src, folder / "other", seed=21, patient_id="OTHER-PATIENT")
    return _app(src, tmp, folder, runner=runner, names=["'DIFFUGTS-PHANTOM'", "'OTHER-PATIENT'", "in other", str(folder)])


def series_without_patient_id(src, tmp):
    # An anonymiser that blanked PatientID in one series: it cannot be told to be the same patient.
    folder = _copy_series(src, tmp)
    _longer_series(src, folder / "anonymous", seed=22, patient_id="")
    return _app(src, tmp, folder, names=["'DIFFUGTS-PHANTOM'", "no PatientID in anonymous"])


def two_studies_of_one_patient(src, tmp):
    # A prior and a current exam of one patient: allowed; the SEG goes into the selected series' study.
    folder = _copy_series(src, tmp)
    other = _longer_series(src, folder / "prior", seed=23)

    def check(output: Path) -> None:
        seg, chosen = pydicom.dcmread(output / "diffugts_seg.dcm"), pydicom.dcmread(other[0])
        assert seg.StudyInstanceUID == chosen.StudyInstanceUID != pydicom.dcmread(folder / "CT000001.dcm").StudyInstanceUID
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == chosen.SeriesInstanceUID
        assert int(seg.NumberOfFrames) == 30

    return _app(src, tmp, folder, check=check)


def shared_sop_instance_uid(src, tmp):
    folder = _copy_series(src, tmp)
    uid = pydicom.dcmread(folder / "CT000007.dcm").SOPInstanceUID

    def share(dataset, index):
        if index == 7:
            dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = uid

    _edit_slices(folder, share)
    return _app(src, tmp, folder, names=["CT000007.dcm", "CT000008.dcm", uid])


def identical_copy_of_a_slice(src, tmp):
    # The same file twice (same UID, same position): one instance, referenced once.
    folder = _copy_series(src, tmp)
    shutil.copy(folder / "CT000007.dcm", folder / "CT000007 (copy).dcm")

    def check(output: Path) -> None:
        seg = pydicom.dcmread(output / "diffugts_seg.dcm")
        uids = [item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
        assert len(uids) == len(set(uids)) == 24 == int(seg.NumberOfFrames)

    return _app(src, tmp, folder, check=check)


def _edited(src, tmp, index: int | None, **values):
    """A copy of the series with ``values`` set on slice ``index`` (every slice when ``None``)."""
    folder = _copy_series(src, tmp)

    def edit(dataset, i):
        if index is None or i == index:
            for keyword, value in values.items():
                setattr(dataset, keyword, value)

    _edit_slices(folder, edit)
    return folder


def zero_rescale_slope(src, tmp):
    folder = _edited(src, tmp, 8, RescaleSlope="0")
    return _app(src, tmp, folder, names=["CT000009.dcm", str(folder)])


def negative_pixel_spacing(src, tmp):
    folder = _edited(src, tmp, None, PixelSpacing=["-0.9", "0.9"])
    return _app(src, tmp, folder, names=["CT000001.dcm", str(folder)])


def zero_pixel_spacing(src, tmp):
    folder = _edited(src, tmp, None, PixelSpacing=["0", "0"])
    return _app(src, tmp, folder, names=["CT000001.dcm"])


def one_value_pixel_spacing(src, tmp):
    folder = _edited(src, tmp, 4, PixelSpacing="0.9")
    return _app(src, tmp, folder, names=["CT000005.dcm"])


def pixel_spacing_differs(src, tmp):
    spacing = [float(v) for v in pydicom.dcmread(src.series / "CT000001.dcm").PixelSpacing]
    folder = _edited(src, tmp, 4, PixelSpacing=[f"{1.5 * spacing[0]:.6f}", f"{1.5 * spacing[1]:.6f}"])
    return _app(src, tmp, folder, names=["CT000001.dcm", "CT000005.dcm"])


def negative_slice_thickness(src, tmp):
    folder = _edited(src, tmp, None, SliceThickness="-2")
    return _app(src, tmp, folder, names=["CT000001.dcm"])


def _seg_texts(labels: list[str], charset: str, patient_name: str | None = None) -> Callable[[Path], None]:
    """The SEG read back (pydicom and highdicom) holds ``labels`` whole, in ``charset``."""

    def check(output: Path) -> None:
        raw = pydicom.dcmread(output / "diffugts_seg.dcm")
        assert raw.SpecificCharacterSet == charset
        assert [item.SegmentLabel for item in raw.SegmentSequence] == labels  # one value each, no '?'
        seg = _seg_of(output)
        for number, label in enumerate(labels, 1):
            description = seg.get_segment_description(number)
            assert description.segment_label == label
            assert description.algorithm_identification.parameters["profile"] == "mini"  # highdicom parses them
        if patient_name is not None:
            assert str(raw.PatientName) == patient_name

    return check


def _prompts_env(*prompts: str) -> dict[str, str]:
    return {"DIFFUGTS_PROMPTS": json.dumps({"CT": list(prompts)})}


def prompt_with_dicom_delimiters(src, tmp):
    # '\' separates DICOM values; ',' and '=' separate highdicom's algorithm parameters.
    env = _prompts_env("liver\\kidney tumor, segment=4")
    return _app(src, tmp, src.series, env=env, check=_seg_texts(["liver/kidney tumor, segment=4"], "ISO_IR 100"))


def prompts_outside_latin_1(src, tmp):
    # A Latin-1 source (ISO_IR 100, a German patient name) and prompts Latin-1 cannot hold.
    folder = _edited(src, tmp, None, PatientName="Müller^Jürgen")
    prompts = ["guz wątroby", "liver tumor (肝臓腫瘍)"]
    return _app(src, tmp, folder, env=_prompts_env(*prompts), check=_seg_texts(prompts, "ISO_IR 192", "Müller^Jürgen"))


def latin_1_prompt(src, tmp):
    # What the source's character set holds stays in it.
    return _app(src, tmp, src.series, env=_prompts_env("tumeur hépatique"), check=_seg_texts(["tumeur hépatique"], "ISO_IR 100"))


def _media_export(src, tmp) -> Path:
    """The series as a media export: DICOMDIR and PT*/ST*/SE*/IM* files (pydicom's FileSet)."""
    folder = tmp / "input"
    file_set = FileSet()
    for path in sorted(src.series.glob("*.dcm")):
        file_set.add(pydicom.dcmread(path))
    file_set.write(folder)
    return folder


def dicomdir_beside_the_files(src, tmp):
    folder = _media_export(src, tmp)
    assert (folder / "DICOMDIR").is_file()
    return _app(src, tmp, folder, check=_seg_frames(24))


def dicomdir_alone(src, tmp):
    folder = _media_export(src, tmp)
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
    return _app(src, tmp, folder, names=["DICOMDIR", str(folder)])


def non_latin_prompt_app(src, tmp):
    return _app(src, tmp, src.series, env=_prompts_env("肝臓腫瘍"), names=["DIFFUGTS_PROMPTS", "肝臓腫瘍"])


def non_latin_prompt(src, tmp, runner="bundle", prompt="肝臓腫瘍"):
    return _bundle(tmp, _ct_nifti(src, tmp), runner=runner, prompt=prompt, names=["prompt", prompt])


def working_spacing_a_number(src, tmp):
    return _app_with_config(src, tmp, _config_with(src, tmp, pipeline={"working_spacing": 3}), names=["working_spacing"])


def strength_as_text(src, tmp):
    return _app_with_config(src, tmp, _config_with(src, tmp, pipeline={"strength": "high"}), names=["strength", "'high'"])


def pipeline_not_an_object(src, tmp):
    config = tmp / "config.json"
    config.write_text(json.dumps({"prompts": {"CT": ["liver tumor"]}, "pipeline": ["num_steps", 1]}))
    return _app_with_config(src, tmp, config, names=["pipeline"])


def cuda_without_a_gpu(src, tmp):
    # A device this machine lacks: "cuda" here; on a machine with N GPUs, "cuda:N".
    device = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    return _app_with_config(src, tmp, _config_with(src, tmp, device=device), names=[repr(device)])


def _rules_file(tmp: Path, selections) -> Path:
    rules = tmp / "rules.json"
    rules.write_text(json.dumps({"selections": selections}))
    return rules


def _app_with_rules(src, tmp, rules: Path, names=()):
    return _app(src, tmp, src.series, env={"DIFFUGTS_SERIES_RULES": str(rules)}, inputs=[rules], names=[str(rules), *names])


def rules_selections_are_strings(src, tmp):
    return _app_with_rules(src, tmp, _rules_file(tmp, ["CT", "MR"]), names=["selection 1", "'CT'"])


def rules_bad_regular_expression(src, tmp):
    rules = _rules_file(tmp, [{"name": "CT", "conditions": {"Modality": "(CT"}}])
    return _app_with_rules(src, tmp, rules, names=["Modality", "'(CT'"])


def rules_min_slices_true(src, tmp):
    rules = _rules_file(tmp, [{"name": "CT", "conditions": {"Modality": "CT"}, "min_slices": True}])
    return _app_with_rules(src, tmp, rules, names=["'CT'"])


def _transcoded(src, tmp, command: list[str]) -> Path:
    """The series with every slice transcoded by a DCMTK tool (installed by tools/setup.sh)."""
    assert shutil.which(command[0]), f"{command[0]} is missing: install dcmtk (bash tools/setup.sh)"
    folder = tmp / "input"
    folder.mkdir()
    for path in sorted(src.series.glob("*.dcm")):
        subprocess.run([*command, str(path), str(folder / path.name)], check=True, capture_output=True)
    return folder


def _seg_on_transfer_syntax(folder: Path, syntax: str) -> Callable[[Path], None]:
    def check(output: Path) -> None:
        assert pydicom.dcmread(folder / "CT000001.dcm").file_meta.TransferSyntaxUID == syntax
        _seg_references(folder / "CT000001.dcm", 24)(output)

    return check


def jpeg_lossless(src, tmp):
    folder = _transcoded(src, tmp, ["dcmcjpeg", "--encode-lossless-sv1"])
    return _app(src, tmp, folder, check=_seg_on_transfer_syntax(folder, pydicom.uid.JPEGLosslessSV1))


def rle_lossless(src, tmp):
    folder = _transcoded(src, tmp, ["dcmcrle"])
    return _app(src, tmp, folder, check=_seg_on_transfer_syntax(folder, pydicom.uid.RLELossless))


def undecodable_transfer_syntax(src, tmp):
    # Pixel data under a transfer syntax no installed decoder reads (MPEG-2, a video syntax).
    folder = _copy_series(src, tmp)
    path = folder / "CT000005.dcm"
    dataset = pydicom.dcmread(path)
    dataset.PixelData = encapsulate([dataset.PixelData])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    dataset.save_as(path)
    return _app(src, tmp, folder, names=["CT000005.dcm", "MPEG2", pydicom.uid.MPEG2MPML])


# -- round 2: where outputs go, settings as text -------------------------------------------------


def output_is_a_symlink_to_the_input(src, tmp, runner="app"):
    folder = _copy_series(src, tmp)
    (tmp / "results").symlink_to(folder, target_is_directory=True)
    invocation = _app(src, tmp, folder, runner=runner, names=[str(tmp / "results")])
    invocation.output = tmp / "results"
    return invocation


def output_is_a_dotdot_path_into_the_input(src, tmp):
    folder = _copy_series(src, tmp)
    (tmp / "elsewhere").mkdir()
    invocation = _app(src, tmp, folder, names=["must not be inside the input folder"])
    invocation.output = tmp / "elsewhere" / ".." / "input" / "seg"
    return invocation


def output_symlink_would_replace_a_label(src, tmp):
    # The output folder is a symlink to the data folder, where the BraTS-style label lives.
    image = _ct_nifti(src, tmp)
    label = _nifti(tmp / "case_seg.nii.gz", np.zeros(src.image.shape, np.uint8), src.affine)
    datalist = tmp / "datalist.json"
    datalist.write_text('{"test": [{"image": "case.nii.gz", "label": "case_seg.nii.gz"}]}')
    (tmp / "results").symlink_to(tmp, target_is_directory=True)
    return _bundle(tmp, None, datalist=str(datalist), output=tmp / "results", inputs=[image, label, datalist], names=["case_seg.nii.gz"])


def code_in_a_prompt(src, tmp, runner="bundle"):
    # MONAI would evaluate a setting that starts with "$": the prompt must stay text.
    marker = tmp / "executed"
    path = _ct_nifti(src, tmp)
    prompt = f"$__import__('pathlib').Path({str(marker)!r}).touch() or 'liver tumor'"
    return _bundle(tmp, path, runner=runner, prompt=prompt, marker=marker, check=_mask_on_input_grid(path, "case"))


def code_in_a_path_setting(src, tmp):
    marker = tmp / "executed"
    path = _ct_nifti(src, tmp)
    code = f"$__import__('pathlib').Path({str(marker)!r}).touch() or None"
    return _bundle(tmp, path, heads_weights=code, marker=marker, names=[code])


def bundle_setting(name, value, runner="bundle"):
    def build(src, tmp):
        return _bundle(tmp, _ct_nifti(src, tmp), runner=runner, names=[name], **{name: value})

    return build


def misspelt_setting(src, tmp, runner="bundle"):
    invocation = _bundle(tmp, _ct_nifti(src, tmp), runner=runner, names=["treshold", "threshold"])
    invocation.bundle_args = {**invocation.bundle_args, "treshold": 0.3}
    return invocation


def nifti_header(name, edit):
    """A NIfTI of the phantom whose header ``edit(header)`` changes (sform, qform ...)."""

    def build(src, tmp):
        header = nib.Nifti1Image(src.image, src.affine).header.copy()
        edit(header)
        path = tmp / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(src.image, None, header=header), path)  # no affine: the header as edited
        return _bundle(tmp, path, names=[str(path)])

    return build


def _zero_sform(header):
    for row in ("srow_x", "srow_y", "srow_z"):
        header[row] = 0.0
    header["sform_code"], header["qform_code"] = 1, 0


def _no_sform_no_qform(header):
    header["sform_code"], header["qform_code"] = 0, 0


# -- round 2: what a user meets (app) -----------------------------------------------------------


def models_without_heads(src, tmp, runner="app", research_switch=False):
    # autoencoder.pt and diffusion_unet.pt copied, diffugts_heads.pt forgotten: random heads
    # would give a confident whole-field "tumor" with exit status 0.
    models = _models_folder(tmp, src, diffugts_heads=lambda target: None)
    if not research_switch:
        return _app(src, tmp, src.series, runner=runner, app_args=["-m", str(models)], inputs=[models], names=[str(models / "diffugts_heads.pt")])
    config = _config_with(src, tmp, allow_random_weights=True)

    def says_untrained(output: Path) -> None:
        assert _seg_of(output).SeriesDescription == "DiffuGTS (mini) UNTRAINED heads: research only"
        assert json.loads((output / "diffugts_provenance.json").read_text())["weights"]["heads"].startswith("random-init")

    return _app(src, tmp, src.series, app_args=["-m", str(models)], env={"DIFFUGTS_APP_CONFIG": str(config)}, inputs=[models, config], check=says_untrained)


def mr_series_of_ct_numbers(src, tmp):
    # A series labelled MR whose values are CT numbers (air at -1000): segmented, with a warning.
    folder = _copy_series(src, tmp)
    _edit_slices(folder, lambda dataset, index: setattr(dataset, "Modality", "MR"))

    def warned(output: Path) -> None:
        (warning,) = json.loads((output / "diffugts_provenance.json").read_text())["input"]["warnings"]
        assert "(MR): the intensities look like CT in Hounsfield units" in warning
        _seg_frames(24)(output)

    return _app(src, tmp, folder, check=warned)


def localizer_only(src, tmp):
    folder = _copy_series(src, tmp)
    _edit_slices(folder, lambda dataset, index: setattr(dataset, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    return _app(src, tmp, folder, names=[str(folder), "'CT axial original primary'", "ImageType"])


BAD_INPUTS: list[BadInput] = [
    # The application (DICOM series in, DICOM SEG out).
    BadInput("app-empty-folder", empty_folder, "is empty"),
    BadInput("app-non-dicom-among-dicom", non_dicom_among_dicom, "non-DICOM file(s)"),
    BadInput("app-truncated-pixel-data", truncated_pixel_data, "is truncated (1348 of 2048 bytes)"),
    BadInput("app-cli-truncated-pixel-data", lambda s, t: truncated_pixel_data(s, t, runner="app-cli"), "is truncated"),
    BadInput("app-truncated-header", truncated_header, "damaged DICOM file(s)"),
    BadInput("app-missing-slice", missing_slice, "irregular slice spacing"),
    BadInput("app-irregular-spacing", irregular_spacing, "irregular slice spacing"),
    BadInput("app-two-series-in-one-folder", two_series_in_one_folder, OK),
    BadInput("app-duplicate-slice", duplicate_slice, OK),
    BadInput("app-enhanced-multi-frame", enhanced_multi_frame, "multi-frame image"),
    BadInput("app-single-slice", single_slice, "1 slice(s), fewer than the 16"),
    BadInput("app-oblique-series", oblique_series, OK),
    BadInput("app-gantry-tilt", gantry_tilt, OK),
    BadInput("app-unsupported-modality", unsupported_modality, "modality PT is not supported"),
    BadInput("app-infinite-rescale-slope", infinite_rescale, "RescaleSlope of CT000009.dcm is not a finite number"),
    BadInput("app-over-memory-budget", over_memory_budget_app, "more than the memory budget"),
    BadInput("app-empty-prompt", empty_prompt_app, "non-empty strings"),
    BadInput("app-absurd-prompt", absurd_prompt_app, "characters long"),
    BadInput("app-organ-not-in-scan", organ_not_in_scan_app, OK),
    BadInput("app-truncated-weights", truncated_weights_app, "cannot read weights file"),
    BadInput("app-wrong-profile-weights", wrong_profile_weights_app, "does not fit the network (wrong profile?)"),
    BadInput("app-malicious-pickle-weights", malicious_weights_app, "cannot read weights file"),
    BadInput("app-output-is-a-file", output_is_a_file_app, "is not a directory"),
    BadInput("app-output-under-a-file", output_under_a_file_app, "cannot create the output folder"),
    # The bundle (NIfTI in, NIfTI out).
    BadInput("bundle-nan-voxels", nan_voxels, "NaN or infinite voxel values"),
    BadInput("bundle-infinite-voxels", infinite_voxels, "NaN or infinite voxel values"),
    BadInput("bundle-4d-nifti", four_d_nifti, "expected a 3D volume"),
    BadInput("bundle-cli-4d-nifti", lambda s, t: four_d_nifti(s, t, runner="bundle-cli"), "expected a 3D volume"),
    BadInput("bundle-2d-nifti", two_d_nifti, "expected a 3D volume"),
    BadInput("bundle-one-slice-volume", one_slice_volume, OK),
    BadInput("bundle-zero-size-dimension", zero_size_dimension, "zero-size dimension"),
    BadInput("bundle-over-memory-budget", over_memory_budget, "more than the memory budget"),
    BadInput("bundle-not-an-image", not_an_image, "cannot read image"),
    BadInput("bundle-truncated-nifti", truncated_nifti, "cannot read image"),
    BadInput("bundle-empty-prompt", empty_prompt, "the prompt is empty"),
    BadInput("bundle-absurd-prompt", absurd_prompt, "characters long"),
    BadInput("bundle-prompt-without-letters", prompt_without_letters, "the prompt is empty"),
    BadInput("bundle-gibberish-prompt", gibberish_prompt, OK),
    BadInput("bundle-organ-not-in-scan", organ_not_in_scan, OK),
    BadInput("bundle-unknown-modality", unknown_modality, "unknown modality 'PET'"),
    BadInput("bundle-truncated-weights", truncated_weights, "cannot read weights file"),
    BadInput("bundle-garbage-weights", garbage_weights, "cannot read weights file"),
    BadInput("bundle-wrong-profile-weights", wrong_profile_weights, "does not fit the network (wrong profile?)"),
    BadInput("bundle-malicious-pickle-weights", malicious_weights, "cannot read weights file"),
    BadInput("bundle-output-is-a-file", output_is_a_file, "cannot write in the output folder"),
    BadInput("bundle-output-under-a-file", output_under_a_file, "cannot write in the output folder"),
    BadInput("bundle-bad-case-late-in-a-datalist", bad_case_late_in_a_datalist, "NaN or infinite voxel values"),
    BadInput("bundle-cli-bad-case-late-in-a-datalist", lambda s, t: bad_case_late_in_a_datalist(s, t, runner="bundle-cli"), "NaN or infinite"),
    BadInput("bundle-output-would-replace-an-input", output_would_replace_an_input, "would replace the input file"),
    BadInput("bundle-oblique-affine", oblique_affine, OK),
    # Round 2: DICOM input (patients, instance UIDs, rescale and spacing, SEG text, DICOMDIR,
    # non-Latin prompts, settings of the wrong type, compressed pixel data).
    BadInput("app-two-patients", two_patients, "holds the images of 2 patients"),
    BadInput("app-cli-two-patients", lambda s, t: two_patients(s, t, runner="app-cli"), "holds the images of 2 patients"),
    BadInput("app-series-without-patient-id", series_without_patient_id, "holds the images of 2 patients"),
    BadInput("app-two-studies-of-one-patient", two_studies_of_one_patient, OK),
    BadInput("app-shared-sop-instance-uid", shared_sop_instance_uid, "have the same SOPInstanceUID"),
    BadInput("app-identical-copy-of-a-slice", identical_copy_of_a_slice, OK),
    BadInput("app-zero-rescale-slope", zero_rescale_slope, "RescaleSlope of CT000009.dcm is 0"),
    BadInput("app-negative-pixel-spacing", negative_pixel_spacing, "PixelSpacing of CT000001.dcm must be two positive numbers"),
    BadInput("app-zero-pixel-spacing", zero_pixel_spacing, "must be two positive numbers"),
    BadInput("app-one-value-pixel-spacing", one_value_pixel_spacing, "must be two positive numbers"),
    BadInput("app-pixel-spacing-differs", pixel_spacing_differs, "slices of different pixel spacings"),
    BadInput("app-negative-slice-thickness", negative_slice_thickness, "SliceThickness of CT000001.dcm must be a positive number"),
    BadInput("app-prompt-with-dicom-delimiters", prompt_with_dicom_delimiters, OK),
    BadInput("app-prompts-outside-latin-1", prompts_outside_latin_1, OK),
    BadInput("app-latin-1-prompt", latin_1_prompt, OK),
    BadInput("app-dicomdir-beside-the-files", dicomdir_beside_the_files, OK),
    BadInput("app-dicomdir-alone", dicomdir_alone, "holds only a DICOMDIR"),
    BadInput("app-non-latin-prompt", non_latin_prompt_app, "has no Latin letters: only English prompts are supported"),
    BadInput("bundle-non-latin-prompt", non_latin_prompt, "has no Latin letters: only English prompts are supported"),
    BadInput("bundle-cli-cyrillic-prompt", lambda s, t: non_latin_prompt(s, t, "bundle-cli", "опухоль печени"), "has no Latin letters"),
    BadInput("app-config-working-spacing-a-number", working_spacing_a_number, "working_spacing must be three voxel sizes"),
    BadInput("app-config-strength-as-text", strength_as_text, "strength must be a number in (0, 1]"),
    BadInput("app-config-pipeline-not-an-object", pipeline_not_an_object, "pipeline must be an object"),
    BadInput("app-config-cuda-without-a-gpu", cuda_without_a_gpu, "is not available on this machine"),
    BadInput("app-rules-selections-are-strings", rules_selections_are_strings, "must be an object"),
    BadInput("app-rules-bad-regular-expression", rules_bad_regular_expression, "is not a valid regular expression"),
    BadInput("app-rules-min-slices-true", rules_min_slices_true, "min_slices must be an integer >= 1"),
    BadInput("app-jpeg-lossless", jpeg_lossless, OK),
    BadInput("app-rle-lossless", rle_lossless, OK),
    BadInput("app-undecodable-transfer-syntax", undecodable_transfer_syntax, "which no installed decoder reads"),
    # Round 2: where outputs go, settings that are code or of the wrong type.
    BadInput("app-output-is-a-symlink-to-the-input", output_is_a_symlink_to_the_input, "must not be inside the input folder"),
    BadInput("app-cli-output-is-a-symlink-to-the-input", lambda s, t: output_is_a_symlink_to_the_input(s, t, "app-cli"), "must not be inside the input folder"),
    BadInput("app-output-is-a-dotdot-path-into-the-input", output_is_a_dotdot_path_into_the_input, "must not be inside the input folder"),
    BadInput("bundle-output-symlink-would-replace-a-label", output_symlink_would_replace_a_label, "would replace the input file"),
    BadInput("bundle-code-in-a-prompt", code_in_a_prompt, OK),
    BadInput("bundle-cli-code-in-a-prompt", lambda s, t: code_in_a_prompt(s, t, "bundle-cli"), OK),
    BadInput("bundle-code-in-a-path-setting", code_in_a_path_setting, "weights file not found: $__import__"),
    BadInput("bundle-code-in-a-number-setting", bundle_setting("threshold", "$__import__('os').getpid() and 0.5"), "threshold must be a number in (0, 1)"),
    BadInput("bundle-cli-strength-with-a-trailing-dot", bundle_setting("strength", "0.8.", "bundle-cli"), "strength must be a number in (0, 1]"),
    BadInput("bundle-working-spacing-zeros", bundle_setting("working_spacing", [0, 0, 0]), "working_spacing must be"),
    BadInput("bundle-cli-working-spacing-zeros", bundle_setting("working_spacing", "[0,0,0]", "bundle-cli"), "working_spacing must be"),
    BadInput("bundle-working-spacing-a-number", bundle_setting("working_spacing", 3), "working_spacing must be three voxel sizes"),
    BadInput("bundle-patch-size-not-a-multiple", bundle_setting("patch_size", [30, 30, 30]), "patch_size must be three multiples of 16, got [30, 30, 30]"),
    BadInput("bundle-seed-as-text", bundle_setting("seed", "abc"), "seed must be an integer >= 0, got 'abc'"),
    BadInput("bundle-progress-as-text", bundle_setting("progress", "maybe"), "progress must be true or false"),
    BadInput("bundle-cuda-without-a-gpu", bundle_setting("device", "cuda:7"), "is not available on this machine"),
    BadInput("bundle-unknown-device", bundle_setting("device", "tpu"), "device must be auto, cpu, cuda or cuda:N"),
    BadInput("bundle-misspelt-setting", misspelt_setting, "unknown setting 'treshold'; did you mean 'threshold'?"),
    BadInput("bundle-cli-misspelt-setting", lambda s, t: misspelt_setting(s, t, "bundle-cli"), "did you mean 'threshold'?"),
    BadInput("bundle-nifti-zero-sform", nifti_header("zero_sform", _zero_sform), "its sform (code 1) is all zeros or singular"),
    BadInput("bundle-nifti-no-orientation", nifti_header("no_orientation", _no_sform_no_qform), "neither an sform nor a qform"),
    # Round 2: what a user meets (app): weights left out, implausible or excluded series.
    BadInput("app-models-without-heads", models_without_heads, "diffugts_heads.pt missing (models path)"),
    BadInput("app-cli-models-without-heads", lambda s, t: models_without_heads(s, t, "app-cli"), "set allow_random_weights"),
    BadInput("app-models-without-heads-research-switch", lambda s, t: models_without_heads(s, t, research_switch=True), OK),
    BadInput("app-mr-series-of-ct-numbers", mr_series_of_ct_numbers, OK),
    BadInput("app-localizer-only", localizer_only, "ImageType is ORIGINAL\\PRIMARY\\LOCALIZER, the rule wants"),
]
