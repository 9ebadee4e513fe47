import json
import math
import re
import signal
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import fashionbench as fb
from fashionbench.hooks import StochasticWeightAveraging
from fashionbench.inference import (
    FlipTTA,
    ShiftTTA,
    evaluate,
    for_evaluation,
    load_model,
    load_run,
    with_flip_tta,
)
from fashionbench.rundir import finished
from fashionbench.runs import load_torch
from fashionbench.splits import MEAN, STD
from fashionbench.training import Trainer, train_or_resume

from conftest import epochs_saved, run_main, small_config, wait_until


class SnapshotTrainer(Trainer):
    """Records the weights at every epoch end, where SWA snapshots under a constant LR."""

    def train_epoch(self):
        row = super().train_epoch()
        self.snapshots = getattr(self, "snapshots", [])
        self.snapshots.append({k: v.clone() for k, v in self.model.state_dict().items()})
        return row


def test_swa_is_the_mean_of_snapshots_with_recomputed_batchnorm(data, tmp_path):
    cfg = small_config("epochs=3", "schedule.name=constant", "optim.name=sgd", "optim.lr=0.05",
                       "swa.start=1")
    trainer = SnapshotTrainer(cfg, data, tmp_path / "run")
    summary = trainer.fit()
    assert summary.extra["swa_snapshots"] == 3 and summary.weights == "swa"
    swa = trainer.hook(StochasticWeightAveraging).averaged.module
    averaged = swa.state_dict()
    for name, _ in trainer.model.named_parameters():
        mean = torch.stack([s[name] for s in trainer.snapshots]).mean(0)
        assert torch.allclose(averaged[name], mean, atol=1e-6), name
    # BatchNorm statistics are those of the averaged weights on the training images:
    # the first BN sees conv1's output, so its running mean is that output's mean.
    train = trainer.splits["train"]
    x = (train.images.float() / 255 - MEAN) / STD
    conv1 = swa[0]
    with torch.no_grad():
        expected = F.conv2d(x, conv1.weight, conv1.bias, padding=1).mean((0, 2, 3))
    bn1 = swa[1]
    assert torch.allclose(bn1.running_mean, expected, atol=1e-4)
    assert not torch.allclose(bn1.running_mean, trainer.model[1].running_mean, atol=1e-3)
    # model.pt holds the averaged weights.
    saved = load_torch(tmp_path / "run" / "model.pt")
    assert saved["weights"] == "swa" and torch.equal(saved["state_dict"]["1.running_mean"],
                                                     bn1.running_mean.cpu())


def test_one_epoch_on_10k_learns(data, tmp_path):
    """The reference recipe at its default precision, one epoch on 10,000 examples."""
    cfg = small_config("data.train_subset=10000", "data.val_size=5000", "epochs=1",
                       "batch_size=128", "precision=auto")
    summary = train_or_resume(cfg, data, tmp_path / "run")
    assert summary.accuracy("last", "val") >= 0.80
    assert summary.accuracy("swa", "val") >= 0.80
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and set(rows[0]) >= {"epoch", "lr", "train_loss", "train_acc", "val_loss",
                                               "val_acc", "seconds", "val_seconds", "images_per_s"}
    # Validation is timed apart from training: "seconds" and s/epoch are training steps only.
    assert summary.train_seconds == rows[0]["seconds"] == summary.seconds_per_epoch
    assert summary.val_seconds == rows[0]["val_seconds"] > 0
    assert rows[0]["images_per_s"] == 10000 // 128 * 128 / rows[0]["seconds"]
    written = set(p.name for p in (tmp_path / "run").iterdir())
    assert written == {"config.yaml", "metrics.jsonl", "checkpoint.pt", "model.pt", "summary.json"}
    summary_file = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary_file["data_md5"]["train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert {"python", "torch", "seed", "device", "train_seconds", "val_seconds", "git_commit"} <= set(summary_file)
    # The machine and the command behind the figures (hardware.machine, runs.command_line).
    assert {"cpu", "cpu_cores", "cpu_bf16", "gpu", "command", "cpu_threads"} <= set(summary_file)
    assert summary_file["cpu_cores"] >= 1 and summary_file["cpu_threads"]
    assert summary_file["schema"] == 2 and summary_file["kind"] == "run"
    assert train_or_resume(cfg, data, tmp_path / "run") == summary  # finished: read back, not retrained


def results_without_timing(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        del row["seconds"], row["val_seconds"], row["images_per_s"]
    return rows, json.loads((run_dir / "summary.json").read_text())["results"]


def test_same_seed_same_metrics(data, tmp_path):
    for name in ("a", "b"):
        train_or_resume(small_config("augment.translate=2", "augment.erase=0.5", "data.train_subset=1000"), data,
              tmp_path / name)
    assert results_without_timing(tmp_path / "a") == results_without_timing(tmp_path / "b")


def cli(*args):
    return [sys.executable, "-m", "fashionbench", "train", *args]


def test_resume_after_kill_matches_uninterrupted(data_dir, tmp_path):
    # On the CPU: the kill's timing is a CPU's (a GPU finishes first), and exact repeats are.
    args = ["basic_cnn", "--device", "cpu", "--out", str(tmp_path), "--data-dir", str(data_dir), "--epochs", "3",
            "--train-subset", "2000", "--set", "data.val_size=500", "--set", "data.test_subset=500",
            "--set", "swa.start=2",
            "--set", "schedule.cycle_epochs=1", "--set", "precision=fp32", "--set", "swa.lr=2e-3"]
    subprocess.run(cli(*args, "--name", "whole"), check=True, capture_output=True, timeout=600)
    # Kill -9 inside epoch 3, after two checkpoints. The event: epoch 2's checkpoint whole
    # (metrics.jsonl is written after it), so the process is past it and into epoch 3,
    # which writes nothing until its own checkpoint, seconds later. Where in epoch 3 the
    # kill lands changes nothing the resumed run sees; that it lands in epoch 3 is
    # checked: the checkpoint left is epoch 2's.
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli(*args, "--name", "killed"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_until(lambda: epochs_saved(killed) >= 2, proc, "the checkpoint of epoch 2")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert load_torch(killed / "checkpoint.pt")["epoch"] == 2 and epochs_saved(killed) == 2
    assert not (killed / "summary.json").exists()
    done = subprocess.run(cli("--resume", str(tmp_path / "killed"), "--data-dir", str(data_dir)),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert results_without_timing(tmp_path / "killed") == results_without_timing(tmp_path / "whole")


def test_flip_tta_averages_the_logits_of_an_image_and_its_mirror():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10)).eval()
    x = torch.randn(4, 1, 28, 28)
    cfg = small_config("eval.tta=true")
    wrapped = for_evaluation(model, cfg)
    assert isinstance(wrapped, FlipTTA) and wrapped.state_dict().keys() == {f"model.{k}" for k in model.state_dict()}
    assert torch.allclose(wrapped(x), (model(x) + model(x.flip(-1))) / 2)
    assert not torch.allclose(wrapped(x), model(x))  # the mirror image is another input
    assert for_evaluation(model, small_config()) is model  # off by default
    # The one TTA of predict --tta and ensemble --tta: the same wrapper, never twice.
    assert with_flip_tta(wrapped) is wrapped and torch.equal(with_flip_tta(model)(x), wrapped(x))


def test_shift_tta_averages_the_image_with_its_two_shifted_copies():
    """eval.tta_shift 1: the image's logits and the mean of its copies shifted one pixel
    up-left and down-right, black filling the border, half and half; with eval.tta each
    view is mirrored too (six views), and predict --tta adds no second mirroring."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10)).eval()
    x = torch.randn(4, 1, 28, 28)
    black = (0 - MEAN) / STD
    up_left = torch.full_like(x, black)
    up_left[..., :27, :27] = x[..., 1:, 1:]
    down_right = torch.full_like(x, black)
    down_right[..., 1:, 1:] = x[..., :27, :27]
    shifted = for_evaluation(model, small_config("eval.tta_shift=1"))
    assert isinstance(shifted, ShiftTTA) and not shifted.flips
    assert torch.allclose(shifted(x), (model(x) + (model(up_left) + model(down_right)) / 2) / 2, atol=1e-6)
    both = for_evaluation(model, small_config("eval.tta=true", "eval.tta_shift=1"))
    assert isinstance(both.model, FlipTTA) and both.flips and with_flip_tta(both) is both
    flip = FlipTTA(model)
    assert torch.allclose(both(x), (flip(x) + (flip(up_left) + flip(down_right)) / 2) / 2, atol=1e-6)
    assert both.state_dict().keys() == {f"model.model.{k}" for k in model.state_dict()}


def test_a_shift_tta_run_is_served_and_exported_with_it(data, tmp_path):
    """A run with eval.tta and eval.tta_shift: its figures are of the six-view model, the
    model loaded back is that one, and its ONNX export (checked against torch by the
    export itself) serves it."""
    cfg = small_config("eval.tta=true", "eval.tta_shift=1", "epochs=1", "swa.enabled=false",
                       "data.train_subset=500", "data.val_size=500")
    summary = train_or_resume(cfg, data, tmp_path / "run")
    run = finished(tmp_path / "run")
    loaded = load_model(run)
    assert isinstance(loaded.model, ShiftTTA) and isinstance(loaded.model.model, FlipTTA)
    assert load_run(run, data).evaluate("val")["acc"] == summary.accuracy("last", "val")
    exported = fb.export(tmp_path / "run", "onnx", tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").stat().st_size > 0 and exported


def test_a_tta_run_is_evaluated_and_served_with_tta(data, tmp_path):
    """eval.tta: every figure of the run is of the flip-averaged model, the weights saved
    are the network's own, and the model loaded back (predict, export, evaluate) is the
    one the figures describe."""
    summary = train_or_resume(small_config("eval.tta=true", "epochs=1", "swa.enabled=false",
                                           "data.train_subset=500", "data.val_size=500"), data, tmp_path / "run")
    saved = load_torch(tmp_path / "run" / "model.pt")
    assert not any(k.startswith("model.") for k in saved["state_dict"])
    run = finished(tmp_path / "run")
    loaded = load_model(run)
    assert isinstance(loaded.model, FlipTTA)
    assert load_run(run, data).evaluate("val")["acc"] == summary.accuracy("last", "val")
    plain = evaluate(loaded.model.model, load_run(run, data).splits["val"], loaded.precision,
                     loaded.cfg.channels_last)
    assert plain["loss"] != summary.results["last"]["val"]["loss"]  # the figures are TTA's, not the plain model's


def test_speedrun_trains_each_seed_and_times_it_apart_from_the_one_off_costs(data_dir, tmp_path):
    """The command end to end on a tiny budget (its timing is not tested): two seeds,
    each an ordinary finished run, and speedrun.json with the mean, the spread, the
    median time, and the untimed costs beside it."""
    result = run_main("speedrun", "--seeds", "2", "--epochs", "1", "--train-subset", "1000", "--set",
                      "data.val_size=500", "--set", "data.test_subset=500", "--target", "50", "--out", str(tmp_path),
                      "--name", "s", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "s" / "speedrun.json").read_text())
    seeds = report["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1] and report["epochs"] == 1 and report["model"] == "speedrun_net"
    for s in seeds:
        summary = json.loads((tmp_path / "s" / f"seed-{s['seed']}" / "summary.json").read_text())
        assert s["test_acc"] == summary["test_acc"] and summary["test_size"] == 500 and summary["seed"] == s["seed"]
        assert s["seconds"] == summary["train_seconds"] + summary["swa_bn_seconds"] > 0
        assert s["val_seconds"] == summary["val_seconds"] > 0
    accs = [100 * s["test_acc"] for s in seeds]
    assert report["test_acc_mean"] == pytest.approx(sum(accs) / 2)
    assert report["test_acc_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
    assert report["median_seconds"] == pytest.approx(sum(s["seconds"] for s in seeds) / 2)
    assert report["reached_target"] == (report["test_acc_mean"] >= 50)
    assert report["data_seconds"] > 0 and report["warmup_seconds"] > 0 and not report["full_training_set"]
    losses = [json.loads((tmp_path / "s" / f"seed-{k}" / "summary.json").read_text())["results"]["last"]["test"]["loss"]
              for k in (0, 1)]
    assert losses[0] != losses[1]  # two seeds, two trainings
    assert "over 2 seed(s); target 50.00%" in result.stdout and "not a speedrun figure" in result.stdout


def test_speedrun_budget_trains_the_epochs_its_warm_up_says_fit(data_dir, tmp_path):
    """--budget S: the epochs are chosen from the warm-up's measured step cost and the
    training split's steps per epoch, said before training, and every seed trains them."""
    small = ["--train-subset", "1000", "--set", "data.val_size=500", "--set", "data.test_subset=500"]
    # The budget from this machine's own step cost, measured by a dry run: about four epochs
    # of 3 steps, so that the run's own measurement, noisier by far, still fits one.
    dry = run_main("speedrun", "--seeds", "1", "--budget", "1000", *small, "--data-dir", str(data_dir), "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    step_ms = int(re.search(r"(\d+) ms a step measured", dry.stdout).group(1))
    budget = max(2, math.ceil(4 * 3 * step_ms / 1000))
    result = run_main("speedrun", "--seeds", "1", "--budget", str(budget), *small, "--out", str(tmp_path),
                      "--name", "b", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "b" / "speedrun.json").read_text())
    assert report["budget_seconds"] == budget and report["steps_per_epoch"] == 1000 // 256
    expected = int(budget / (report["steps_per_epoch"] * report["seconds_per_step"]))
    assert report["epochs"] == expected >= 1
    assert json.loads((tmp_path / "b" / "seed-0" / "summary.json").read_text())["epochs"] == expected
    assert f"budget {budget} s: {expected} epoch(s)" in result.stdout
    both = run_main("speedrun", "--budget", "1", "--epochs", "2", "--out", str(tmp_path), "--data-dir", str(data_dir))
    assert both.returncode != 0 and "--budget S chooses the epochs" in both.stderr
