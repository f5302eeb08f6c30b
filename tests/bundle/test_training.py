"""Each training config runs a few iterations on tiny data and its loss falls; the multi-process
override runs under torchrun with 2 CPU processes (gloo) and the ranks end with equal weights."""

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


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    entries = []
    for index in range(2):
        image = rng.normal(-900, 15, (48, 48, 48)).astype(np.float32)
        image[8:40, 8:40, 8:40] = rng.normal(40, 15, (32, 32, 32))
        label = np.zeros(image.shape, dtype=np.uint8)
        label[18:28, 20:30, 16:26] = 1
        image[label > 0] -= 60
        nib.save(nib.Nifti1Image(image, np.diag([2.0, 2.0, 2.0, 1.0])), folder / f"kidney{index}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.diag([2.0, 2.0, 2.0, 1.0])), folder / f"kidney{index}_label.nii.gz")
        entries.append({"image": f"kidney{index}.nii.gz", "label": f"kidney{index}_label.nii.gz", "prompt": "kidney tumor", "modality": "CT"})
    mr = np.abs(rng.normal(300, 30, (48, 48, 48))).astype(np.float32)
    nib.save(nib.Nifti1Image(mr, np.diag([1.5, 1.5, 1.5, 1.0])), folder / "brain.nii.gz")
    healthy = [{"image": "brain.nii.gz", "modality": "MR"}]
    (folder / "foundation.json").write_text(json.dumps({"training": entries + healthy}))
    (folder / "heads.json").write_text(json.dumps({"training": entries}))
    return folder


def _run(configs, tmp_path, **override):
    settings = {"models_dir": str(tmp_path / "models"), "log_dir": str(tmp_path / "logs"), "patch_size": [32, 32, 32], "log_every": 100, **override}
    workflow = ConfigWorkflow(config_file=[str(CONFIGS / c) for c in configs], workflow_type="train", bundle_root=str(BUNDLE), **settings)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    stage = workflow.parser.get_parsed_content("stage")
    return json.loads((tmp_path / "logs" / f"{stage}_loss.json").read_text())["loss"]


#: Four iterations in epochs of two, validated after each: two validation records.
VALIDATE_TWICE = {"iterations": 4, "checkpoint_every": 2, "val_interval": 1}


def _falls(losses, window=3):
    return np.mean(losses[-window:]) < np.mean(losses[:window])


@pytest.mark.slow
def test_every_stage_trains_and_its_loss_falls(tiny_corpus, tmp_path):
    foundation, heads = str(tiny_corpus / "foundation.json"), str(tiny_corpus / "heads.json")
    # The VAE's gate validation needs the corpus's foundation_validation list, which this tiny
    # folder lacks: validated in test_the_vae_stage_validates_its_gate instead.
    losses = _run(["train.json", "train_vae.json"], tmp_path, datalist=foundation, iterations=12, learning_rate=2e-3, validation_handlers=[])
    assert _falls(losses), losses
    assert (tmp_path / "models" / "autoencoder.pt").is_file()

    cache = tmp_path / "latents"
    losses = _run(
        ["train.json", "train_diffusion.json"],
        tmp_path,
        datalist=foundation,
        iterations=12,
        learning_rate=2e-3,
        batch_size=3,
        latent_cache_root=str(cache),
        validation_handlers=[],
    )
    assert _falls(losses, window=4), losses
    checkpoint = torch.load(tmp_path / "models" / "diffusion_unet.pt", weights_only=True)
    assert set(checkpoint) == {"unet_state_dict", "scale_factor"} and float(checkpoint["scale_factor"]) > 0
    # One cached latent per volume, in the folder of these VAE weights; a second sitting reuses them.
    (folder,) = cache.iterdir()
    cached = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert len(cached) == 3
    _run(
        ["train.json", "train_diffusion.json"],
        tmp_path / "again",
        datalist=foundation,
        iterations=2,
        batch_size=3,
        latent_cache_root=str(cache),
        models_dir=str(tmp_path / "models"),
        validation_handlers=[],
    )
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == cached

    losses = _run(["train.json", "train_aova.json"], tmp_path, datalist=heads, iterations=10, learning_rate=5e-3, misleading_rate=0.0, validation_handlers=[])
    assert _falls(losses), losses

    before = torch.load(tmp_path / "models" / "diffugts_heads.pt", weights_only=True)
    losses = _run(
        ["train.json", "train_aova.json", "train_refiner.json"], tmp_path, datalist=heads, iterations=8, learning_rate=5e-3, misleading_rate=0.0, num_steps=1
    )
    assert _falls(losses), losses
    after = torch.load(tmp_path / "models" / "diffugts_heads.pt", weights_only=True)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("aova.")), "the AOVA head stays frozen"
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("refiner."))


def test_liver_and_brain_prompts_are_refused_in_training():
    from scripts.training import _PromptSampler

    class Encoder:  # the sampler refuses before it encodes anything
        pass

    sampler = _PromptSampler(Encoder(), misleading_rate=0.0)
    batch = {"prompt": ["liver tumor"], "image": torch.zeros(1, 1, 4, 4, 4), "label": torch.zeros(1, 1, 4, 4, 4)}
    with pytest.raises(ValueError, match="never enter training"):
        sampler.sample(batch, torch.device("cpu"))


@pytest.mark.slow
def test_multi_process_override_runs_two_ranks_with_equal_weights(tiny_corpus, tmp_path):
    # Every rank saves its own copy here (the shipped override saves on rank 0 only).
    override = tmp_path / "save_every_rank.json"
    override.write_text(
        json.dumps(
            {
                "output_weights": f"$os.path.join('{tmp_path}', 'vae_rank' + os.environ['RANK'] + '.pt')",
                "run": ["$@trainer.run()", "$@save_weights()"],
            }
        )
    )
    config_files = [str(CONFIGS / "train.json"), str(CONFIGS / "train_vae.json"), str(CONFIGS / "multi_gpu_train.json"), str(override)]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        json.dumps(config_files),
        "--bundle_root",
        str(BUNDLE),
        "--datalist",
        str(tiny_corpus / "foundation.json"),
        "--patch_size",
        "[32,32,32]",
        "--iterations",
        "3",
        "--log_dir",
        str(tmp_path / "logs"),
        "--models_dir",
        str(tmp_path / "models"),
        "--validation_handlers",
        "[]",  # the tiny folder has no foundation_validation list
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = torch.load(tmp_path / "vae_rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "vae_rank1.pt", weights_only=True)
    assert set(rank0) == set(rank1)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)


def test_dice_counts_only_for_patches_with_a_tumor():
    from monai.losses import DiceLoss

    from scripts.training import _dice_where_positive

    dice = DiceLoss(smooth_nr=1e-3, smooth_dr=1e-3)
    prediction = torch.full((1, 1, 4, 4, 4), 0.3, requires_grad=True)
    empty = torch.zeros(1, 1, 4, 4, 4)
    assert _dice_where_positive(dice, prediction, empty).item() == 0.0
    tumor = empty.clone()
    tumor[..., :2, :2, :2] = 1
    assert _dice_where_positive(dice, prediction, tumor).item() == pytest.approx(dice(prediction, tumor).item())


def test_the_aova_bce_weights_tumor_voxels_by_the_positive_weight():
    from scripts.training import AOVAIteration

    logits = torch.logit(torch.tensor([0.2, 0.2]))
    target = torch.tensor([1.0, 0.0])
    plain = AOVAIteration(torch.nn.Identity(), None, positive_weight=1.0).bce(logits, target)
    weighted = AOVAIteration(torch.nn.Identity(), None, positive_weight=10.0).bce(logits, target)
    miss, false_alarm = -np.log(0.2), -np.log(0.8)
    assert plain.item() == pytest.approx((miss + false_alarm) / 2, rel=1e-5)
    assert weighted.item() == pytest.approx((10 * miss + false_alarm) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="positive_weight"):
        AOVAIteration(torch.nn.Identity(), None, positive_weight=0.5)


def test_the_aova_loss_supervises_every_level_and_learns_a_patch_where_the_map_loss_stalled():
    # The regression behind it: trained on the averaged mass, two of three levels saturated at 0
    # (no gradient through the softmax) and the map stayed under 0.5 on the very patch it trained on.
    from scripts.foundation import PROFILES
    from scripts.heads import HeadsStage, heads_for_profile
    from scripts.training import AOVAIteration

    torch.manual_seed(0)
    # A 4^3 tumor in a 32^3 patch (the real imbalance), shown in one channel of every level.
    features = [torch.randn(1, c, 32 // 2**i, 32 // 2**i, 32 // 2**i) for i, c in enumerate(PROFILES["mini"].feature_channels)]
    target = torch.zeros(1, 1, 32, 32, 32)
    target[..., 10:14, 12:16, 8:12] = 1
    for feature in features:
        cells = torch.nn.functional.interpolate(target, size=feature.shape[2:], mode="trilinear")
        feature[:, 0] += 2 * cells[:, 0]
    keys, abnormal = torch.randn(6, 384), torch.tensor([True, True, False, False, False, False])
    heads = heads_for_profile(PROFILES["mini"], text_dim=384)
    iteration = AOVAIteration(torch.nn.Identity(), None, positive_weight=10.0)
    optimizer = torch.optim.AdamW(heads.aova.parameters(), 2e-3)
    for _ in range(60):
        loss = iteration.level_loss(heads(HeadsStage.AOVA, features, keys, abnormal, level_logits=True), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        output = heads.aova(features, keys, abnormal)
    # On the map's mass the same head ended with its coarsest level at 0 inside the tumor too and
    # found 67% of it; on the levels' log-odds every level marks it.
    for level_map in output.level_maps:
        assert level_map[target > 0].mean() > 0.5 > level_map[target == 0].mean(), "a level's map saturated"
    assert (output.aova_map[target > 0] > 0.5).float().mean() > 0.9


def test_the_aova_map_of_a_batch_needs_one_prompt_or_one_per_image():
    from scripts.training import AOVAMapOf

    calls = []

    class Heads(torch.nn.Module):
        def forward(self, stage, levels, keys, abnormal):
            calls.append(keys)
            return torch.zeros(1, 1, *levels[0].shape[2:])

    class Keys:
        def __call__(self, prompt, device):
            return prompt, None

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Identity()] * 9)

    vae = torch.nn.Module()
    vae.encoder, vae.quant_conv_mu = Encoder(), torch.nn.Identity()
    network = AOVAMapOf(Heads(), vae, None)
    network.keys = Keys()
    assert network(torch.zeros(2, 1, 4, 4, 4), ["kidney tumor"]).shape == (2, 1, 4, 4, 4)
    assert calls == ["kidney tumor", "kidney tumor"]
    network(torch.zeros(2, 1, 4, 4, 4), ["kidney tumor", "lung tumor"])
    assert calls[2:] == ["kidney tumor", "lung tumor"]
    with pytest.raises(ValueError, match="3 prompts for a batch of 2"):
        network(torch.zeros(2, 1, 4, 4, 4), ["a", "b", "c"])


@pytest.mark.slow
def test_the_vae_stage_validates_its_gate_and_keeps_its_best_weights(tiny_corpus, tmp_path):
    rng = np.random.default_rng(3)
    organs = np.zeros((48, 48, 48), np.uint8)
    organs[8:40, 8:40, 8:40] = 5  # liver: a soft-tissue organ of the gate's error
    image = np.where(organs > 0, rng.normal(110, 15, organs.shape), -1000).astype(np.float32)
    nib.save(nib.Nifti1Image(image, np.diag([2.0, 2.0, 2.0, 1.0])), tiny_corpus / "val_ct.nii.gz")
    nib.save(nib.Nifti1Image(organs, np.diag([2.0, 2.0, 2.0, 1.0])), tiny_corpus / "val_ct_organs.nii.gz")
    validation = [
        # The corpus's healthy entries carry their (empty) lesion mask as "label".
        {"image": "val_ct.nii.gz", "organs": "val_ct_organs.nii.gz", "label": "kidney0_label.nii.gz", "modality": "CT", "category": "healthy CT"},
        {"image": "brain.nii.gz", "organs": "val_ct_organs.nii.gz", "modality": "MR", "category": "healthy MR"},
    ]
    (tiny_corpus / "foundation_validation.json").write_text(json.dumps({"validation": validation}))
    _run(
        ["train.json", "train_vae.json"],
        tmp_path,
        datalist=tiny_corpus / "foundation.json",
        **VALIDATE_TWICE,
        learning_rate=2e-3,
    )
    records = json.loads((tmp_path / "logs" / "vae_validation.json").read_text())["validation"]
    assert [r["iteration"] for r in records] == [2, 4]
    ct = records[-1]["per_modality"]["CT"]
    assert 0 < ct["psnr_db"] < 60 and ct["soft_tissue_mae_hu"] > 0 and "psnr_db" in records[-1]["per_modality"]["MR"]
    assert records[-1]["passed"] is False  # four iterations are far from 32 dB
    best = tmp_path / "logs" / "checkpoints" / "vae_best.pt"
    shipped = torch.load(tmp_path / "models" / "autoencoder.pt", weights_only=True)
    kept = torch.load(best, weights_only=True)
    assert all(torch.equal(shipped[k], kept[k]) for k in kept)


@pytest.mark.parametrize("config", ["train_baseline.json", "train_aova.json"])
def test_tumor_crops_do_not_put_the_tumor_at_the_patch_centre(config):
    # MONAI's RandCropByPosNegLabeld centres a positive crop on a tumor voxel; trained on such
    # crops, a UNet learned to mark the centre of whatever patch it was given (measured: whole-volume
    # Dice 0.000 after 4000 iterations, its foreground at the sliding windows' centres). The configs
    # crop larger and then shift the patch at random.
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / config)])
    parser["patch_size"] = [32, 32, 32]
    crop = Compose([parser.get_parsed_content("crop"), parser.get_parsed_content("shift_crop")])
    crop.set_random_state(seed=0)
    label = torch.zeros(1, 64, 64, 64)
    label[0, 30, 33, 29] = 1
    positions = []
    for _ in range(80):
        out = crop({"image": torch.rand(1, 64, 64, 64), "label": label.clone()})
        out = out[0] if isinstance(out, list) else out
        assert tuple(out["label"].shape) == (1, 32, 32, 32)
        found = torch.nonzero(out["label"][0])
        if len(found):
            positions.append(found[0].float())
    assert len(positions) >= 20
    spread = torch.stack(positions).std(dim=0)
    assert bool((spread > 3.0).all()), spread


def test_hounsfield_window_rewindows_the_pipelines_ct_intensities():
    from scripts.training import HounsfieldWindow

    seen = []
    window = HounsfieldWindow(lambda x: seen.append(x) or x, low=-200.0, high=300.0)
    pipeline_units = (torch.tensor([-1000.0, -200.0, 50.0, 300.0, 1000.0]) + 1000.0) / 2000.0
    out = window(pipeline_units)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    assert len(seen) == 1
    with pytest.raises(ValueError, match="high must exceed low"):
        HounsfieldWindow(torch.nn.Identity(), low=10.0, high=10.0)


@pytest.mark.slow
def test_the_diffusion_stage_measures_its_inpainting_gate_and_keeps_its_best_weights(tiny_corpus, tmp_path):
    _run(["train.json", "train_vae.json"], tmp_path, datalist=tiny_corpus / "foundation.json", iterations=2, validation_handlers=[])
    organs = np.zeros((48, 48, 48), np.uint8)
    organs[8:40, 8:40, 8:40] = 7  # the kidney the tiny corpus's tumors sit in
    nib.save(nib.Nifti1Image(organs, np.diag([2.0, 2.0, 2.0, 1.0])), tiny_corpus / "kidney_organs.nii.gz")
    validation = [
        {
            "image": "kidney1.nii.gz",
            "label": "kidney1_label.nii.gz",
            "organs": "kidney_organs.nii.gz",
            "modality": "CT",
            "category": "kidney tumor",
            "prompt": "kidney tumor",
        }
    ]
    (tiny_corpus / "validation.json").write_text(json.dumps({"validation": validation}))
    _run(
        ["train.json", "train_diffusion.json"],
        tmp_path,
        datalist=tiny_corpus / "foundation.json",
        **VALIDATE_TWICE,
        batch_size=3,
        latent_cache_root=str(tmp_path / "latents"),
    )
    records = json.loads((tmp_path / "logs" / "diffusion_validation.json").read_text())["validation"]
    assert [r["iteration"] for r in records] == [2, 4]
    assert set(records[-1]["per_category"]) == {"kidney tumor"} and records[-1]["cases"] == 1
    assert all(np.isfinite(r["contrast_drop"]) and r["outside_ratio"] > 0 for r in records)
    best_path = tmp_path / "logs" / "checkpoints" / "diffusion_best.pt"
    assert best_path.exists() == any(r["best"] for r in records)
    if best_path.exists():  # the shipped weights are the best pass's
        best = torch.load(best_path, weights_only=True)
        shipped = torch.load(tmp_path / "models" / "diffusion_unet.pt", weights_only=True)["unet_state_dict"]
        assert all(torch.equal(shipped[k], best[k]) for k in best)


@pytest.mark.slow
def test_the_aova_stage_validates_the_map_alone_and_ships_its_best_weights(tiny_corpus, tmp_path):
    _run(["train.json", "train_vae.json"], tmp_path, datalist=tiny_corpus / "foundation.json", iterations=2, validation_handlers=[])
    validation = [
        {"image": "kidney1.nii.gz", "label": "kidney1_label.nii.gz", "modality": "CT", "category": "kidney tumor", "prompt": "kidney tumor"},
    ]
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in ("kidney0.nii.gz", "kidney0_label.nii.gz", "kidney1.nii.gz", "kidney1_label.nii.gz"):
        (folder / name).write_bytes((tiny_corpus / name).read_bytes())
    (folder / "heads.json").write_text((tiny_corpus / "heads.json").read_text())
    (folder / "validation.json").write_text(json.dumps({"validation": validation}))
    _run(
        ["train.json", "train_aova.json"],
        tmp_path,
        datalist=folder / "heads.json",
        **VALIDATE_TWICE,
        val_per_category=1,
        val_inferer={"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 2},
        map_threshold=0.05,  # an untrained map is low everywhere: a low cut makes its Dice informative
    )
    records = json.loads((tmp_path / "logs" / "aova_validation.json").read_text())["validation"]
    assert [r["iteration"] for r in records] == [2, 4]
    assert set(records[-1]["per_category"]) == {"kidney tumor"}
    assert all(0.0 <= r["mean"] <= 1.0 for r in records)
    best_path = tmp_path / "logs" / "checkpoints" / "aova_best.pt"
    assert best_path.exists()  # the first pass is always the best so far
    best = torch.load(best_path, weights_only=True)
    shipped = torch.load(tmp_path / "models" / "diffugts_heads.pt", weights_only=True)
    assert all(torch.equal(shipped[k], best[k]) for k in best)
