"""The bundle as MONAI users run it: ConfigWorkflow (Model Zoo pattern) and `python -m monai.bundle`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
CONFIGS = BUNDLE / "configs"
AFFINE = np.array([[-1.6, 0, 0, 120.0], [0, -1.6, 0, 90.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])
TINY = {"num_steps": 1, "progress": False, "coarse_threshold": 0.3}


def _ct_case(folder: Path, name="case", seed=0):
    rng = np.random.default_rng(seed)
    volume = rng.normal(-900, 30, (36, 40, 20)).astype(np.float32)
    volume[6:30, 8:32, 4:16] = rng.normal(60, 15, (24, 24, 12))
    label = np.zeros(volume.shape, dtype=np.uint8)
    label[14:20, 16:22, 8:12] = 1
    volume[label > 0] = 20
    image_path, label_path = folder / f"{name}.nii.gz", folder / f"{name}_label.nii.gz"
    nib.save(nib.Nifti1Image(volume, AFFINE), image_path)
    nib.save(nib.Nifti1Image(label, AFFINE), label_path)
    return image_path, label_path


def _workflow(config_file, **override):
    workflow = ConfigWorkflow(
        config_file=config_file,
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type="infer",
        bundle_root=str(BUNDLE),
        **override,
    )
    workflow.initialize()
    assert workflow.check_properties() in (None, [])
    return workflow


def _inputs_hash(folder: Path):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.slow
def test_inference_workflow_writes_every_output_on_the_input_grid(tmp_path):
    image, _ = _ct_case(tmp_path)
    before = _inputs_hash(tmp_path)
    out = tmp_path / "out"
    workflow = _workflow(
        str(CONFIGS / "inference.json"),
        input_image=str(image),
        prompt="liver tumor",
        modality="CT",
        output_dir=str(out),
        save_maps="all",
        **TINY,
    )
    workflow.run()
    workflow.finalize()
    names = sorted(p.name for p in out.iterdir())
    assert names == ["case_aova.nii.gz", "case_prob.nii.gz", "case_pseudo_healthy.nii.gz", "case_report.json", "case_seg.nii.gz"]
    seg = nib.load(out / "case_seg.nii.gz")
    assert seg.get_data_dtype() == np.uint8 and seg.shape == (36, 40, 20)
    for name in names[:3] + names[4:]:
        np.testing.assert_allclose(nib.load(out / name).affine, AFFINE, atol=1e-5)
        assert nib.load(out / name).shape == (36, 40, 20)
    report = json.loads((out / "case_report.json").read_text())
    assert report["profile"] == "mini" and report["prompts"][0]["prompt"] == "liver tumor"
    assert report["prompts"][0]["tumor_volume_ml"] == pytest.approx(np.asarray(seg.dataobj).sum() * 1.6 * 1.6 * 2.5 / 1000)
    lesions = report["prompts"][0]["lesions"]  # one per connected component of the mask
    assert sum(lesion["volume_ml"] for lesion in lesions) == pytest.approx(report["prompts"][0]["tumor_volume_ml"], abs=1e-3)
    assert all({"longest_axial_diameter_mm", "centroid_lps_mm", "aova_mean"} <= set(lesion) for lesion in lesions)
    assert {"monai", "torch"} <= set(report["versions"]) and "total" in report["stage_seconds"]
    assert set(report["weights"]) == {"vae", "diffusion", "heads"}
    assert _inputs_hash(tmp_path) == before, "input files must stay byte-identical"


@pytest.mark.slow
def test_several_prompts_write_one_set_of_files_each(tmp_path):
    image, _ = _ct_case(tmp_path)
    out = tmp_path / "out"
    _workflow(str(CONFIGS / "inference.json"), input_image=str(image), prompt=["liver tumor", "kidney tumor"], output_dir=str(out), **TINY).run()
    # The default writes the masks only; the maps are asked for with save_maps.
    assert sorted(p.name for p in out.iterdir()) == ["case_kidney-tumor_seg.nii.gz", "case_liver-tumor_seg.nii.gz", "case_report.json"]
    assert len(json.loads((out / "case_report.json").read_text())["prompts"]) == 2


@pytest.mark.slow
def test_evaluation_override_writes_metrics_per_case_and_category(tmp_path):
    entries = []
    for index in range(2):
        image, label = _ct_case(tmp_path, f"case{index}", seed=index)
        entries.append({"image": image.name, "label": label.name, "prompt": "liver tumor", "category": "liver tumor"})
    misleading = {"image": "case0.nii.gz", "prompt": "brain tumor", "category": "misleading", "expect_empty": True}
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": entries + [misleading]}))
    out = tmp_path / "eval"
    configs = [str(CONFIGS / "inference.json"), str(CONFIGS / "evaluate.json")]
    _workflow(configs, datalist=str(datalist), output_dir=str(out), **TINY).run()
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["case"] for row in metrics["per_case"]] == ["case0", "case1", "case0_brain-tumor"]
    misleading_row = metrics["per_case"][2]
    assert misleading_row["category"] == "misleading" and misleading_row["reference_ml"] == 0.0
    # Against an empty reference DSC is 1 exactly when nothing is predicted.
    assert misleading_row["full"]["dsc"] == (1.0 if misleading_row["full"]["foreground_free"] else 0.0)
    summary = metrics["per_category"]["liver tumor"]
    assert summary["n"] == 2 and metrics["nsd_tolerance_mm"] == 2.0
    for method in ("full", "aova_only"):
        assert 0.0 <= summary[method]["dsc"]["mean"] <= 1.0 and 0.0 <= summary[method]["foreground_free_rate"] <= 1.0
        for row in metrics["per_case"]:
            assert 0 <= row[method]["dsc"] <= 1 and 0 <= row[method]["nsd"] <= 1 and row[method]["false_positive_ml"] >= 0
            assert row[method]["foreground_free"] in (True, False)
    for row in metrics["per_case"][:2]:
        assert row["reference_ml"] == pytest.approx(6 * 6 * 4 * 1.6 * 1.6 * 2.5 / 1000)
    table = (out / "metrics.md").read_text()
    assert "| liver tumor | DiffuGTS | 2 |" in table and "| liver tumor | AOVA map alone | 2 |" in table


@pytest.mark.slow
def test_maisi_profile_runs_official_architectures_from_official_checkpoints(tmp_path):
    from scripts.foundation import PROFILES, build_diffusion_unet, build_vae

    models = tmp_path / "models"
    models.mkdir()
    torch.manual_seed(0)
    torch.save(build_vae(PROFILES["maisi"]).state_dict(), models / "autoencoder_v1.pt")
    unet = build_diffusion_unet(PROFILES["maisi"])
    torch.save({"unet_state_dict": unet.state_dict(), "scale_factor": torch.tensor(0.9)}, models / "diff_unet_3d_rflow-ct.pt")
    del unet
    rng = np.random.default_rng(0)
    image = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(rng.normal(0, 50, (32, 32, 32)).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), image)
    out = tmp_path / "out"
    configs = [str(CONFIGS / "inference.json"), str(CONFIGS / "maisi.json")]
    workflow = _workflow(configs, input_image=str(image), prompt="liver tumor", output_dir=str(out), models_dir=str(models), **TINY)
    workflow.run()
    report = json.loads((out / "small_report.json").read_text())
    assert report["profile"] == "maisi"
    assert report["weights"]["vae"].startswith("autoencoder_v1.pt sha256:")
    assert report["weights"]["diffusion"].startswith("diff_unet_3d_rflow-ct.pt sha256:")
    assert nib.load(out / "small_seg.nii.gz").shape == (32, 32, 32)


def _bundle_cli(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIGS / "inference.json"), "--bundle_root", str(BUNDLE), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arguments,message",
    [
        (["--input_image", "missing.nii.gz", "--prompt", "liver tumor"], "error: input image not found: missing.nii.gz"),
        (["--input_image", "{image}", "--prompt", "liver tumor", "--modality", "PET"], "error: unknown modality 'PET': expected one of CT, MR"),
        (["--input_image", "{image}", "--prompt", " "], "error: the prompt is empty"),
        (["--input_image", "{image}", "--prompt", "liver tumor", "--save_maps", "residual"], "error: save_maps: unknown map(s) residual"),
    ],
    ids=["missing-file", "unknown-modality", "empty-prompt", "unknown-map"],
)
def test_bad_arguments_stop_with_one_line_and_write_nothing(tmp_path, arguments, message):
    image, _ = _ct_case(tmp_path)
    out = tmp_path / "out"
    arguments = [a.replace("{image}", str(image)) for a in arguments]
    result = _bundle_cli(*arguments, "--output_dir", str(out), cwd=tmp_path)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_metadata_verifies_offline_against_the_shipped_schema():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(BUNDLE / "docs" / "meta_schema_20240725.json"))


def test_a_datalist_may_list_one_image_several_times_and_each_case_keeps_its_outputs(tmp_path):
    from scripts.cases import build_cases

    image, _ = _ct_case(tmp_path)
    entries = [{"image": image.name, "prompt": "liver tumor"}] * 3 + [{"image": image.name, "prompt": "kidney tumor"}]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": entries}))
    names = [case.name for case in build_cases(datalist=str(datalist))]
    assert names == ["case", "case_liver-tumor", "case_liver-tumor_2", "case_kidney-tumor"]


def test_a_bad_prompt_in_a_datalist_names_the_datalist_and_the_entry(tmp_path):
    from scripts.cases import build_cases

    image, _ = _ct_case(tmp_path)
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": image.name, "prompt": "  "}]}))
    with pytest.raises(ValueError, match=r"datalist .*datalist\.json, entry case\.nii\.gz: the prompt is empty"):
        build_cases(datalist=str(datalist))
