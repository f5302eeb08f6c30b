"""Resumable, measured training: checkpoints, curves that survive a restart, gate and time stops."""

import json

import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointSaver

from scripts.training_handlers import LossHistory, ResumeFromLatest, StopAtGate, TimeBudget, ValidationHistory, latest_checkpoint


def _trainer(tmp_path, max_epochs, seed=0):
    torch.manual_seed(seed)
    network = torch.nn.Conv3d(1, 1, 3, padding=1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(1)
    data = [{"image": torch.randn(1, 1, 8, 8, 8, generator=generator), "label": torch.rand(1, 1, 8, 8, 8, generator=generator)} for _ in range(3)]
    history = LossHistory(tmp_path / "toy_loss.json", "toy")
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=data,
        network=network,
        optimizer=optimizer,
        loss_function=torch.nn.MSELoss(),
        epoch_length=3,
        train_handlers=[history],
    )
    resume = ResumeFromLatest(tmp_path / "checkpoints", "toy", {"network": network, "optimizer": optimizer, "trainer": trainer})
    resume.attach(trainer)
    CheckpointSaver(
        save_dir=str(tmp_path / "checkpoints"),
        save_dict={"network": network, "optimizer": optimizer, "trainer": trainer},
        file_prefix="toy",
        save_interval=1,
        epoch_level=True,
        n_saved=1,
    ).attach(trainer)
    return trainer, network, resume


def test_latest_checkpoint_is_the_highest_epoch(tmp_path):
    assert latest_checkpoint(tmp_path / "missing", "vae") is None
    for epoch in (2, 10, 9):
        (tmp_path / f"vae_checkpoint_epoch={epoch}.pt").write_bytes(b"")
    (tmp_path / "aova_checkpoint_epoch=99.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path, "vae").name == "vae_checkpoint_epoch=10.pt"


def test_a_stopped_run_resumes_at_its_next_epoch_with_its_curve(tmp_path):
    trainer, _, resume = _trainer(tmp_path, max_epochs=2)
    assert resume.loaded is None
    trainer.run()
    first = json.loads((tmp_path / "toy_loss.json").read_text())["loss"]
    assert len(first) == 6

    again, network, resume = _trainer(tmp_path, max_epochs=4, seed=5)  # another init: the checkpoint must win
    assert resume.loaded is not None and resume.loaded.name == "toy_checkpoint_epoch=2.pt"
    again.run()
    assert again.state.epoch == 4 and again.state.iteration == 12
    resumed = json.loads((tmp_path / "toy_loss.json").read_text())["loss"]
    assert len(resumed) == 12 and resumed[:6] == first
    assert [p.name for p in (tmp_path / "checkpoints").glob("*.pt")] == ["toy_checkpoint_epoch=4.pt"]

    # The same four epochs in one go give the same weights: resuming loses nothing.
    straight_dir = tmp_path / "straight"
    straight_dir.mkdir()
    straight, straight_network, _ = _trainer(straight_dir, max_epochs=4)
    straight.run()
    for a, b in zip(network.parameters(), straight_network.parameters()):
        torch.testing.assert_close(a, b)


def test_time_budget_stops_after_the_first_epoch_past_it(tmp_path):
    trainer, _, _ = _trainer(tmp_path, max_epochs=50)
    TimeBudget(1e-9).attach(trainer)
    trainer.run()
    assert trainer.state.epoch == 1
    unlimited, _, _ = _trainer(tmp_path / "b", max_epochs=2)
    TimeBudget(0).attach(unlimited)
    unlimited.run()
    assert unlimited.state.epoch == 2


def _items(dice_perfect: bool):
    label = torch.zeros(1, 4, 4, 4)
    label[0, :2] = 1
    pred = label.clone() if dice_perfect else torch.zeros_like(label)
    return [{"pred": pred, "label": label, "category": "kidney tumor"}, {"pred": label.clone(), "label": label, "category": "lung tumor"}]


def test_validation_history_records_per_category_dice_keeps_the_best_and_survives_restarts(tmp_path):
    network = torch.nn.Linear(2, 2)
    history = ValidationHistory(tmp_path / "val.json", network, tmp_path / "best.pt", epoch_length=100)
    engine = Engine(lambda e, batch: [{"pred": batch["pred"], "label": batch["label"]}])
    history.attach(engine)
    engine.run(_items(False), max_epochs=1)
    first = json.loads((tmp_path / "val.json").read_text())["validation"][-1]
    assert first["iteration"] == 100 and first["per_category"] == {"kidney tumor": 0.0, "lung tumor": 1.0}
    assert first["mean"] == 0.5 and first["min"] == 0.0 and first["best"] and (tmp_path / "best.pt").exists()

    restarted = ValidationHistory(tmp_path / "val.json", network, tmp_path / "best.pt", epoch_length=100)
    assert restarted.best == 0.5
    engine = Engine(lambda e, batch: [{"pred": batch["pred"], "label": batch["label"]}])
    restarted.attach(engine)
    engine.state.epoch = 1
    engine.run(_items(True), max_epochs=2)
    records = json.loads((tmp_path / "val.json").read_text())["validation"]
    assert [r["iteration"] for r in records] == [100, 200] and records[-1]["mean"] == 1.0


def test_stop_at_gate_needs_every_category_and_the_patience(tmp_path):
    class Records:
        records = [{"mean": 0.7, "min": 0.5}, {"mean": 0.7, "min": 0.3}]

    engine = Engine(lambda e, b: None)
    gate = StopAtGate(Records, mean=0.6, each=0.4, patience=1)
    gate(engine)
    assert not engine.should_terminate  # the last record has a category under 0.4
    Records.records.append({"mean": 0.65, "min": 0.45})
    StopAtGate(Records, mean=0.6, each=0.4, patience=2)(engine)
    assert not engine.should_terminate  # one passing record is not two in a row
    Records.records.append({"mean": 0.66, "min": 0.41})
    StopAtGate(Records, mean=0.6, each=0.4, patience=2)(engine)
    assert engine.should_terminate


def test_the_loss_curve_is_on_disk_after_every_epoch_not_only_at_the_end(tmp_path):
    engine = Engine(lambda e, b: {"loss": float(e.state.iteration)})
    LossHistory(tmp_path / "l.json", "x").attach(engine)
    seen = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(len(json.loads((tmp_path / "l.json").read_text())["loss"])))
    engine.run([0, 1, 2], max_epochs=2)
    assert seen == [3, 6]
