"""The supervised baseline's organ auxiliary task: the target it builds, the loss, the network's
two modes, and the baseline config wired with them."""

import pytest
import torch

from scripts.organ_auxiliary import IGNORE_ORGAN, OrganTargetd, TumorWithOrgans, TumorWithOrgansLoss


def _item(source="phantom"):
    label = torch.zeros(1, 4, 4, 4)
    label[0, 1:3, 1:3, 1:3] = 1
    organs = torch.full((1, 4, 4, 4), 7.0)  # kidney
    organs[0, 0] = 16.0  # generic soft tissue, outside a 15-class vocabulary
    return {"label": label, "organs": organs, "source": source}


def test_the_target_stacks_tumor_and_organs_and_ignores_what_the_vocabulary_lacks():
    out = OrganTargetd(organ_classes=15)(_item())
    assert "organs" not in out and tuple(out["label"].shape) == (2, 4, 4, 4)
    assert torch.equal(out["label"][0], _item()["label"][0])
    assert set(out["label"][1, 1:].unique().tolist()) == {7.0}
    assert set(out["label"][1, 0].unique().tolist()) == {float(IGNORE_ORGAN)}


def test_organ_maps_of_other_sources_and_missing_maps_are_ignored():
    real = OrganTargetd(organ_classes=15)(_item("slicerio-ct-chest"))
    assert set(real["label"][1].unique().tolist()) == {float(IGNORE_ORGAN)}
    item = _item()
    del item["organs"]
    missing = OrganTargetd(organ_classes=15)(item)
    assert set(missing["label"][1].unique().tolist()) == {float(IGNORE_ORGAN)}
    with pytest.raises(ValueError, match="organ_classes"):
        OrganTargetd(organ_classes=1)


def test_the_loss_adds_organ_cross_entropy_and_stays_finite_when_no_organ_is_known():
    tumor_loss = torch.nn.BCEWithLogitsLoss()
    loss = TumorWithOrgansLoss(tumor_loss, organ_weight=1.0)
    target = OrganTargetd(organ_classes=15)(_item())["label"][None]
    logits = torch.zeros(1, 16, 4, 4, 4, requires_grad=True)
    tumor_only = tumor_loss(logits[:, :1], target[:, :1])
    total = loss(logits, target)
    # Uniform logits over 15 organs: cross entropy log(15) on every known voxel.
    torch.testing.assert_close(total, tumor_only + torch.log(torch.tensor(15.0)))
    total.backward()
    assert logits.grad[:, 1:].abs().sum() > 0
    unknown = target.clone()
    unknown[:, 1] = IGNORE_ORGAN
    torch.testing.assert_close(loss(logits, unknown), tumor_only)
    with pytest.raises(ValueError, match="organ_weight"):
        TumorWithOrgansLoss(tumor_loss, organ_weight=-1.0)


def test_the_network_gives_every_channel_while_training_and_the_tumor_alone_in_eval():
    network = TumorWithOrgans(torch.nn.Conv3d(1, 16, 1))
    image = torch.rand(2, 1, 4, 4, 4)
    assert tuple(network(image).shape) == (2, 16, 4, 4, 4)
    network.eval()
    out = network(image)
    assert tuple(out.shape) == (2, 1, 4, 4, 4)
    torch.testing.assert_close(out, network.network(image)[:, :1])


def test_the_baseline_config_trains_with_organs_and_evaluates_one_channel():
    from monai.bundle import ConfigParser

    from tests.bundle.test_training import BUNDLE, CONFIGS

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "train_baseline.json")])
    parser["bundle_root"] = str(BUNDLE)
    parser["patch_size"] = [16, 16, 16]
    network = parser.get_parsed_content("network_def")
    classes = parser.get_parsed_content("organ_classes")
    image = torch.rand(1, 1, 16, 16, 16)
    assert network.train()(image).shape[1] == 1 + classes
    assert network.eval()(image).shape[1] == 1
    assert 0.0 < parser.get_parsed_content("threshold") < 1.0


@pytest.mark.slow
def test_the_baseline_trains_on_a_corpus_with_organ_maps_and_its_loss_falls(tmp_path):
    import json

    import nibabel as nib
    import numpy as np

    from tests.bundle.test_training import _falls, _run

    rng = np.random.default_rng(0)
    entries = []
    for index in range(2):
        organs = np.zeros((48, 48, 48), np.uint8)
        organs[8:40, 8:40, 8:40] = 7  # kidney
        image = np.where(organs > 0, rng.normal(40, 15, organs.shape), rng.normal(-900, 15, organs.shape)).astype(np.float32)
        label = np.zeros(organs.shape, np.uint8)
        label[18:28, 20:30, 16:26] = 1
        image[label > 0] -= 60
        for name, array in (("image", image), ("label", label), ("organs", organs)):
            nib.save(nib.Nifti1Image(array, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / f"{name}{index}.nii.gz")
        entries.append(
            {
                "image": f"image{index}.nii.gz",
                "label": f"label{index}.nii.gz",
                "organs": f"organs{index}.nii.gz",
                "category": "kidney tumor",
                "prompt": "kidney tumor",
                "modality": "CT",
                "source": "phantom",
            }
        )
    (tmp_path / "seen.json").write_text(json.dumps({"training": entries}))
    losses = _run(
        ["train.json", "train_baseline.json"],
        tmp_path,
        datalist=str(tmp_path / "seen.json"),
        baseline_dir=str(tmp_path / "logs"),
        patch_size=[16, 16, 16],
        batch_size=2,
        iterations=12,
        warmup_iterations=2,
        learning_rate=5e-3,
        validation_handlers=[],
    )
    assert _falls(losses), losses
    assert (tmp_path / "logs" / "baseline_unet.pt").is_file()


def test_only_the_baseline_moves_organ_maps_with_its_flips_and_rotations():
    # The other stages carry "organs" as an unread path (the VAE's validation reads it): a flip of
    # that string stopped the VAE stage at its first batch when the shared augmentation named it.
    from monai.bundle import ConfigParser

    from tests.bundle.test_training import CONFIGS

    def spatial_keys(*configs):
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / c) for c in configs])
        return [list(t["keys"]) for t in parser.get("augmentation") if t["_target_"] in ("RandFlipd", "RandRotate90d")]

    assert spatial_keys("train.json", "train_baseline.json") == [["image", "label", "organs"]] * 2
    for stage in ("train_vae.json", "train_diffusion.json", "train_aova.json"):
        assert all("organs" not in keys for keys in spatial_keys("train.json", stage)), stage
