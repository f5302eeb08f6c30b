"""The MONAI Model Zoo's checks (its ci/verify_bundle.py), run on this bundle.

The exemptions this bundle takes, as the Zoo grants them to maisi_ct_generative, are named in the
model card (docs/README.md, "Model Zoo checks").
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_net_in_out

from scripts.foundation import PROFILES
from scripts.heads import DiffuGTSHeads, heads_for_profile, load_heads_weights
from scripts.residual import pixel_residual

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
CONFIGS = BUNDLE / "configs"
META, INFERENCE = str(CONFIGS / "metadata.json"), str(CONFIGS / "inference.json")
HEADS_WEIGHTS = BUNDLE / "models" / "mini" / "diffugts_heads.pt"
#: The Zoo's maisi_ct_generative/large_files.yml gives this md5 for the same URL.
MAISI_AUTOENCODER = (
    "https://developer.download.nvidia.com/assets/Clara/monai/tutorials/model_zoo/model_maisi_autoencoder_epoch273_alternative.pt",
    "917cfb1e49631c8a713e3bb7c758fbca",
)


def _network_def():
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.read_meta(META)
    return parser.get_parsed_content("network_def")


def _stack(size=16, seed=0):
    """The refiner's inputs for one patch, and the stack network_def's forward takes."""
    generator = torch.Generator().manual_seed(seed)
    image, pseudo_healthy, aova = (torch.rand(1, 1, size, size, size, generator=generator) for _ in range(3))
    residuals = torch.rand(1, 3, size, size, size, generator=generator)
    stack = torch.cat([image, pseudo_healthy, pixel_residual(image, pseudo_healthy), aova, residuals], dim=1)
    return (image, pseudo_healthy, aova, residuals), stack


def test_the_files_the_zoo_requires_and_its_conventions_name_are_there():
    for name in (
        "LICENSE",
        "configs/metadata.json",
        "configs/inference.json",
        "docs/README.md",
        "docs/data_license.txt",
        "configs/multi_gpu_train.json",
        "configs/logging.conf",
        "large_files.yml",
    ):
        assert (BUNDLE / name).is_file(), name
    assert "Apache License" in (BUNDLE / "LICENSE").read_text()
    assert "non-commercial" in (BUNDLE / "docs" / "data_license.txt").read_text().lower()


def test_the_version_is_in_the_changelog():
    metadata = ConfigParser.load_config_file(META)
    assert metadata["version"] in metadata["changelog"]


@pytest.mark.parametrize("n", [1, 2])
def test_verify_net_in_out_passes_with_the_metadata_network_data_format(n):
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=INFERENCE, bundle_root=str(BUNDLE), device="cpu", n=n)


def test_the_network_def_is_the_pipelines_heads_and_its_forward_is_the_refiners_probability():
    network = _network_def().eval()
    assert isinstance(network, DiffuGTSHeads)  # what the pipeline (inferer#heads) takes
    assert list(network.state_dict()) == list(heads_for_profile(PROFILES["mini"]).state_dict())
    load_heads_weights(network, HEADS_WEIGHTS)  # strict: the committed heads file fits it
    (image, pseudo_healthy, aova, residuals), stack = _stack()
    with torch.no_grad():
        torch.testing.assert_close(network(stack), torch.sigmoid(network.refiner(image, pseudo_healthy, aova, residuals)))


def test_ckpt_export_writes_torchscript_that_gives_the_networks_output(tmp_path):
    target = tmp_path / "network.ts"
    ckpt_export(net_id="network_def", filepath=str(target), ckpt_file=str(HEADS_WEIGHTS), meta_file=META, config_file=INFERENCE, bundle_root=str(BUNDLE))
    exported = torch.jit.load(str(target))
    network = _network_def().eval()
    load_heads_weights(network, HEADS_WEIGHTS)
    _, stack = _stack(32, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(exported(stack), network(stack))


@pytest.mark.parametrize("workflow_type", ["infer", "inference"])
def test_check_properties_finds_no_missing_inference_property(workflow_type):
    workflow = ConfigWorkflow(
        config_file=INFERENCE, meta_file=META, logging_file=str(CONFIGS / "logging.conf"), workflow_type=workflow_type, bundle_root=str(BUNDLE)
    )
    workflow.initialize()
    assert workflow.check_properties() == []


def test_large_files_yml_gives_the_zoos_md5_of_the_official_autoencoder():
    entries = yaml.safe_load((BUNDLE / "large_files.yml").read_text())["large_files"]
    by_path = {entry["path"]: entry for entry in entries}
    autoencoder = by_path["models/maisi/autoencoder_v1.pt"]
    assert (autoencoder["url"], autoencoder["hash_val"], autoencoder["hash_type"]) == (*MAISI_AUTOENCODER, "md5")
    for entry in entries:
        assert set(entry) == {"path", "url", "hash_val", "hash_type"} and entry["path"].startswith("models/maisi/")
        # MONAI's download_large_files drops an empty hash and its type together.
        assert bool(entry["hash_val"]) == bool(entry["hash_type"]) and entry["hash_type"] in ("", "md5", "sha256")


def test_the_model_card_names_each_exemption_the_bundle_takes():
    card = (BUNDLE / "docs" / "README.md").read_text()
    for name in ("exclude_verify_preferred_files_list", "exclude_download_large_file_list", "TorchScript"):
        assert name in card, name


@pytest.mark.slow
def test_the_zoo_commands_pass_on_the_command_line(tmp_path):
    # As the Zoo runs them: from the bundle folder, which puts `scripts` on the path.
    common = ["--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json", "--bundle_root", "."]
    commands = [
        ["verify_net_in_out", "network_def", *common, "--device", "cpu"],
        ["ckpt_export", "network_def", "--filepath", str(tmp_path / "network.ts"), "--ckpt_file", "models/mini/diffugts_heads.pt", *common],
    ]
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "monai.bundle", *command], cwd=BUNDLE, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "network.ts").is_file()
