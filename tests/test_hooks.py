"""The trainer's hooks (hooks.py): the interface as a caller's hook sees it, each hook's
state under its own key of the checkpoint, and checkpoints written before hooks (their
states at the checkpoint's top level) resumed to the numbers of an uninterrupted run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from fashionbench.config import ConfigError
from fashionbench.hooks import DIVERGED, BestOnTest, Diverged, DivergenceWatch, Hook, StochasticWeightAveraging
from fashionbench.plan import training_plan
from fashionbench.schedule import SchedulePlan
from fashionbench.training import Trainer, train_or_resume

from conftest import small_config

# 10 steps an epoch, two epochs: SWA averages from epoch 1's end (small_config's
# swa.start); or, without SWA, the best epoch on the test split, evaluated every epoch.
SMALL = ("data.train_subset=500", "data.val_size=200", "data.test_subset=200", "batch_size=50")
LEAKY = (*SMALL, "swa.enabled=false", "eval.select_on=test")
# The weights' moving average from the middle of the run (step 11 of 20), every 2 steps.
EMA = (*SMALL, "swa.enabled=false", "ema.enabled=true", "ema.decay=0.8", "ema.every=2", "ema.start=0.5")


class Stop(Exception):
    """Raised after a checkpoint: the run stops there, as a kill would stop it."""


class Recorder(Hook):
    """A caller's hook: counts steps, adds a key to every row, keeps its count in the
    checkpoint, and stops the run after the checkpoint of epoch ``stop_after``."""
    key = "recorder"

    def __init__(self, stop_after: int | None = None):
        self.stop_after, self.steps, self.calls = stop_after, 0, []

    def on_step(self, trainer, step, loss, logits):
        self.steps += 1
        assert loss.device == trainer.device and loss.dim() == 0 and not loss.requires_grad

    def on_sync(self, trainer, step):
        self.calls.append(("sync", step))

    def on_epoch_end(self, trainer, row):
        self.calls.append(("epoch_end", row["epoch"]))
        row["steps_seen"] = self.steps

    def on_checkpoint(self, trainer, row):
        self.calls.append(("checkpoint", row["epoch"]))
        if row["epoch"] == self.stop_after:
            raise Stop

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def rows(run_dir):
    """metrics.jsonl without its timings."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if "seconds" not in k and k != "images_per_s"}
            for line in lines]


def weights(run_dir):
    return load(run_dir / "model.pt")["state_dict"]


def assert_same_state(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_state(a[key], b[key])
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


def assert_same_run(a, b):
    assert rows(a) == rows(b)
    summary_a, summary_b = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for key in ("weights", "results", "val_acc", "test_acc", "swa_snapshots", "best_epoch"):
        assert summary_a.get(key) == summary_b.get(key), key
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_callers_hook_sees_every_step_epoch_and_checkpoint_and_keeps_its_state(data, tmp_path):
    cfg = small_config(*LEAKY)
    first = Recorder(stop_after=1)
    with pytest.raises(Stop):
        train_or_resume(cfg, data, tmp_path / "run", hooks=[first])
    # Syncs every 20 steps and at an epoch's last (here, step 10), then the epoch's end, then its checkpoint.
    assert first.calls == [("sync", 10), ("epoch_end", 1), ("checkpoint", 1)]
    checkpoint = load(tmp_path / "run" / "checkpoint.pt")
    assert set(checkpoint["hooks"]) == {"divergence", "swa", "best_on_test", "recorder"}
    assert checkpoint["hooks"]["recorder"] == {"steps": 10}
    assert not {"swa_model", "loss_start", "best_on_test"} & set(checkpoint)  # the layout before hooks
    resumed = Recorder()
    summary = train_or_resume(cfg, data, tmp_path / "run", hooks=[resumed])
    assert resumed.calls == [("sync", 20), ("epoch_end", 2), ("checkpoint", 2)]
    assert [row["steps_seen"] for row in rows(tmp_path / "run")] == [10, 20]
    # The row's keys in the order metrics.jsonl has always had them; the hook's last.
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[1])
    assert list(row) == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                         "seconds", "val_seconds", "images_per_s", "swa_snapshots", "steps_seen"]
    assert summary.weights == "best_on_test" and list(summary.results) == ["last", "best_on_test"]


def old_layout(checkpoint: dict) -> dict:
    """``checkpoint`` as fashionbench wrote it before hooks (up to 13501e8): each hook's
    state an entry of its own at the top level, no "hooks"."""
    old = {k: v for k, v in checkpoint.items() if k != "hooks"}
    hooks = checkpoint["hooks"]
    return old | {"swa_model": hooks["swa"], "loss_start": hooks["divergence"]["loss_start"],
                  "best_on_test": hooks.get("best_on_test")}


@pytest.mark.parametrize("overrides", [SMALL, LEAKY], ids=["swa", "best_on_test"])
def test_a_checkpoint_written_before_hooks_resumes_to_the_numbers_of_an_uninterrupted_run(overrides, data, tmp_path):
    """Runs in progress when the code changed resume from their checkpoints of the old
    layout. (tests/test_equivalence.py's case resume-old-checkpoint does it with a
    checkpoint of the old code itself, against the old code's uninterrupted run.)"""
    cfg = small_config(*overrides)
    train_or_resume(cfg, data, tmp_path / "whole")

    def stop(row):  # after the checkpoint of epoch 1 (train_or_resume's on_epoch)
        raise Stop

    with pytest.raises(Stop):
        train_or_resume(cfg, data, tmp_path / "old", on_epoch=stop)
    path = tmp_path / "old" / "checkpoint.pt"
    # Every hook gets from the old layout the state it gets from the new one (a
    # checkpoint loaded afresh for each: torch's CyclicLR takes entries out of its state).
    new, old = Trainer(cfg, data, tmp_path / "old"), Trainer(cfg, data, tmp_path / "old")
    new.load_state_dict(load(path))
    old.load_state_dict(old_layout(load(path)))
    for a, b in zip(new.hooks, old.hooks, strict=True):
        assert_same_state(a.state_dict(), b.state_dict())
    assert old.hook(DivergenceWatch).loss_start is not None
    torch.save(old_layout(load(path)), path)
    train_or_resume(cfg, data, tmp_path / "old")
    assert_same_run(tmp_path / "whole", tmp_path / "old")
    assert "hooks" in load(path)  # and its next checkpoints are of the new layout


# -- each hook on its own (fast: no data, no training) ----------------------------------------

def fake_trainer(**kw):
    def diverged(where):
        return Diverged(f"training diverged {where}")
    return SimpleNamespace(world=SimpleNamespace(distributed=False), epoch=1, steps_per_epoch=30,
                           diverged=diverged, **kw)


def test_the_divergence_watch_reads_the_device_only_at_a_sync_and_names_the_first_bad_step():
    watch, trainer = DivergenceWatch(torch.device("cpu")), fake_trainer()
    for step, loss in zip(range(31, 41), [2.0, 1.5, 1.0, DIVERGED * 2.0 + 1, float("nan"), 1.0, 1, 1, 1, 1]):
        watch.on_step(trainer, step, torch.tensor(float(loss)), None)
    assert watch.loss_start.item() == 2.0 and watch.bad_step.item() == 34  # the first, not the NaN after it
    with pytest.raises(Diverged, match=r"^training diverged at epoch 2, step 4 of 30 \(training loss 41, first 2\)$"):
        watch.on_sync(trainer, 40)
    with pytest.raises(Diverged, match=r"at epoch 2's end \(validation loss nan\)"):
        DivergenceWatch(torch.device("cpu")).on_epoch_end(trainer, {"val_loss": float("nan")})


def test_each_hook_reads_its_state_from_a_checkpoint_of_the_old_layout():
    cpu = torch.device("cpu")
    watch = DivergenceWatch(cpu)
    watch.load_state_dict(watch.old_state({"loss_start": 2.5}))
    assert watch.loss_start.item() == 2.5 and watch.state_dict() == {"loss_start": 2.5}
    older = DivergenceWatch(cpu)  # checkpoints before loss_start was kept had none
    older.load_state_dict(older.old_state({}))
    assert older.loss_start is None
    best = BestOnTest()
    kept = {"epoch": 3, "acc": 0.5, "state": {"w": torch.ones(2)}}
    best.load_state_dict(best.old_state({"best_on_test": kept}))
    assert best.state_dict() is kept
    model = torch.nn.Linear(2, 2)
    swa = StochasticWeightAveraging(SchedulePlan(small_config("epochs=2", "swa.start=1"), 10), model)
    averaged = StochasticWeightAveraging(SchedulePlan(small_config("epochs=2", "swa.start=1"), 10), model)
    averaged.averaged.update_parameters(torch.nn.Linear(2, 2))
    swa.load_state_dict(swa.old_state({"swa_model": averaged.state_dict()}))
    assert swa.snapshots == 1 and torch.equal(swa.averaged.module.weight, averaged.averaged.module.weight)
    off = StochasticWeightAveraging(SchedulePlan(small_config("swa.enabled=false"), 10), model)
    off.load_state_dict(off.old_state({"swa_model": None}))
    assert off.averaged is None and off.snapshots == 0 and off.final_models(None) == []


class Snapshots(Hook):
    """The model's floating-point weights and statistics after each of ``steps``."""

    def __init__(self, steps):
        self.steps, self.states = steps, []

    def on_step(self, trainer, step, loss, logits):
        if step in self.steps:
            self.states.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()
                                if v.is_floating_point()})


def test_the_moving_average_is_reported_and_is_the_average_of_the_weights_at_its_steps(data, tmp_path):
    cfg = small_config(*EMA)
    steps = SchedulePlan(cfg, 10).ema_steps
    assert list(steps) == [11, 13, 15, 17, 19]
    snapshots = Snapshots(range(11, 21))  # the second epoch's steps
    summary = train_or_resume(cfg, data, tmp_path / "run", hooks=[snapshots])
    assert summary.weights == "ema" and list(summary.results) == ["last", "ema"]
    assert summary.extra["ema_updates"] == 5 and [row["ema_updates"] for row in rows(tmp_path / "run")] == [0, 5]
    # average = decay * average + (1 - decay) * weights, the first update a copy; BatchNorm's
    # running statistics averaged alike.
    at = dict(zip(range(11, 21), snapshots.states))
    expected = dict(at[11])
    for step in (13, 15, 17, 19):
        expected = {k: 0.8 * expected[k] + 0.2 * at[step][k] for k in expected}
    saved = weights(tmp_path / "run")
    assert any("running_mean" in k for k in expected)
    for key, value in expected.items():
        torch.testing.assert_close(saved[key], value, rtol=1e-5, atol=1e-6)
    # The model saved and served is the average, not the last step's weights.
    assert any(not torch.allclose(saved[k], at[20][k]) for k in expected)
    assert summary.results["ema"]["val"]["acc"] == summary.val_acc
    assert any(line.startswith("EMA:        the weights' moving average reported, decay 0.8 every 2 steps from step 11 "
                               "(5 updates)") for line in training_plan(cfg))


def test_lookahead_trains_on_from_the_average_and_bn_momentum_sets_every_batchnorm(data, tmp_path):
    """ema.lookahead: right after each update the weights (BatchNorm's statistics too) are
    the average, so the last update's weights are the model reported, and the run's path
    differs from the plain moving average's. bn_momentum: every BatchNorm layer's."""
    cfg = small_config(*EMA, "ema.lookahead=true", "bn_momentum=0.6")
    snapshots = Snapshots(range(11, 21))
    trainer = Trainer(cfg, data, tmp_path / "run", hooks=[snapshots])
    norms = [m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.6 for m in norms)
    summary = trainer.fit()
    assert summary.weights == "ema" and summary.extra["ema_updates"] == 5
    at = dict(zip(range(11, 21), snapshots.states))
    saved = weights(tmp_path / "run")
    for key, value in at[19].items():  # the last update (19): weights and average one
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0)
    plain = Snapshots(range(11, 21))
    train_or_resume(small_config(*EMA, "bn_momentum=0.6"), data, tmp_path / "plain", hooks=[plain])
    assert all(torch.equal(plain.states[0][k], at[11][k]) for k in at[11])  # the first update copies
    assert any(not torch.equal(plain.states[2][k], at[13][k]) for k in at[13])  # then the paths part
    assert any(line.endswith("(5 updates); lookahead: the weights set to it at each") for line in training_plan(cfg))
    with pytest.raises(ConfigError, match="^ema.lookahead sets the weights to their moving average; it needs"):
        small_config(*SMALL, "ema.lookahead=true")


def test_a_moving_average_run_stopped_after_an_epoch_resumes_to_the_numbers_of_an_uninterrupted_one(data, tmp_path):
    cfg = small_config(*EMA)
    train_or_resume(cfg, data, tmp_path / "whole")
    with pytest.raises(Stop):
        train_or_resume(cfg, data, tmp_path / "stopped", hooks=[Recorder(stop_after=1)])
    assert set(load(tmp_path / "stopped" / "checkpoint.pt")["hooks"]) == {"divergence", "swa", "ema", "recorder"}
    train_or_resume(cfg, data, tmp_path / "stopped", hooks=[Recorder()])
    whole = [{k: v for k, v in row.items() if k != "steps_seen"} for row in rows(tmp_path / "whole")]
    assert whole == [{k: v for k, v in row.items() if k != "steps_seen"} for row in rows(tmp_path / "stopped")]
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "stopped")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("other", ["swa.enabled=true", "eval.select_on=test"])
def test_the_moving_average_does_not_combine_with_another_choice_of_weights(other):
    with pytest.raises(ConfigError, match="^ema.enabled reports the weights' moving average; it does not combine"):
        small_config("ema.enabled=true", "swa.enabled=false", other)
