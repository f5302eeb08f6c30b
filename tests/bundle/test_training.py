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
    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / c) for c in configs],
        workflow_type="train",
        bundle_root=str(BUNDLE),
        models_dir=str(tmp_path / "models"),
        log_dir=str(tmp_path / "logs"),
        patch_size=[32, 32, 32],
        log_every=100,
        **override,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    stage = workflow.parser.get_parsed_content("stage")
    return json.loads((tmp_path / "logs" / f"{stage}_loss.json").read_text())["loss"]


def _falls(losses, window=3):
    return np.mean(losses[-window:]) < np.mean(losses[:window])


@pytest.mark.slow
def test_every_stage_trains_and_its_loss_falls(tiny_corpus, tmp_path):
    foundation, heads = str(tiny_corpus / "foundation.json"), str(tiny_corpus / "heads.json")
    losses = _run(["train.json", "train_vae.json"], tmp_path, datalist=foundation, iterations=12, learning_rate=2e-3)
    assert _falls(losses), losses
    assert (tmp_path / "models" / "autoencoder.pt").is_file()

    losses = _run(["train.json", "train_diffusion.json"], tmp_path, datalist=foundation, iterations=12, learning_rate=2e-3, batch_size=3)
    assert _falls(losses, window=4), losses
    checkpoint = torch.load(tmp_path / "models" / "diffusion_unet.pt", weights_only=True)
    assert set(checkpoint) == {"unet_state_dict", "scale_factor"} and float(checkpoint["scale_factor"]) > 0

    losses = _run(["train.json", "train_aova.json"], tmp_path, datalist=heads, iterations=10, learning_rate=5e-3, misleading_rate=0.0)
    assert _falls(losses), losses

    before = torch.load(tmp_path / "models" / "diffugts_heads.pt", weights_only=True)
    losses = _run(["train.json", "train_aova.json", "train_refiner.json"], tmp_path, datalist=heads, iterations=8, learning_rate=5e-3, misleading_rate=0.0, num_steps=1)
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
    override.write_text(json.dumps({
        "output_weights": f"$os.path.join('{tmp_path}', 'vae_rank' + os.environ['RANK'] + '.pt')",
        "run": ["$@trainer.run()", "$@save_weights()"],
    }))
    config_files = [str(CONFIGS / "train.json"), str(CONFIGS / "train_vae.json"), str(CONFIGS / "multi_gpu.json"), str(override)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        "-m", "monai.bundle", "run", "--config_file", json.dumps(config_files), "--bundle_root", str(BUNDLE),
        "--datalist", str(tiny_corpus / "foundation.json"), "--patch_size", "[32,32,32]", "--iterations", "3",
        "--log_dir", str(tmp_path / "logs"), "--models_dir", str(tmp_path / "models"),
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


def test_clamped_map_still_gets_a_gradient_below_the_clamp():
    from scripts.training import _clamp_keep_gradient

    probability = torch.tensor([1e-9, 0.5], requires_grad=True)
    clamped = _clamp_keep_gradient(probability)
    assert clamped[0].item() == pytest.approx(1e-6)
    clamped.sum().backward()
    assert probability.grad.tolist() == [1.0, 1.0]
