"""The bad-input corpus: every way a user's input can be wrong, and what must happen.

One table, :data:`BAD_INPUTS`. Each entry builds its input from the phantom CT of
:class:`Sources` (a 32x32x24 liver-tumor phantom of ``corpus``, also written as a DICOM
series with ``tools.demo.write_ct_series``) and says which command runs it and what is expected:
``"ok"`` (a correct result) or a piece of the one-line error. Each error must also name the
file, folder or variable at fault (``Invocation.names``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import torch

from runners import Invocation
from tools.demo import write_ct_series

OK = "ok"
APP_OUTPUTS = ["diffugts_montage.png", "diffugts_provenance.json", "diffugts_seg.dcm"]


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
        runner=runner, output=tmp / "out", input_folder=folder, inputs=[folder, src.app_config, *inputs], names=names,
        app_args=app_args, env={"DIFFUGTS_APP_CONFIG": str(src.app_config), **(env or {})}, marker=marker, check=check,
    )


def _bundle(tmp: Path, image: Path | None, *, runner="bundle", names=(), inputs=(), marker=None, check=None, output=None, **args) -> Invocation:
    bundle_args = {"prompt": "liver tumor", "modality": "CT", **args}
    if image is not None:
        bundle_args["input_image"] = str(image)
    return Invocation(
        runner=runner, output=output or tmp / "out", inputs=[p for p in (image, *inputs) if p is not None],
        names=names, bundle_args=bundle_args, marker=marker, check=check,
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
    from scripts.heads import heads_for_profile

    torch.save(heads_for_profile("maisi").state_dict(), target)


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
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        slices, series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(), instance_number=1
    )
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
    BadInput("bundle-output-is-a-file", output_is_a_file, "cannot create output folder"),
    BadInput("bundle-output-under-a-file", output_under_a_file, "cannot create output folder"),
    BadInput("bundle-bad-case-late-in-a-datalist", bad_case_late_in_a_datalist, "NaN or infinite voxel values"),
    BadInput("bundle-cli-bad-case-late-in-a-datalist", lambda s, t: bad_case_late_in_a_datalist(s, t, runner="bundle-cli"), "NaN or infinite"),
    BadInput("bundle-output-would-replace-an-input", output_would_replace_an_input, "would replace the input file"),
    BadInput("bundle-oblique-affine", oblique_affine, OK),
]
