"""``fashionbench reproduce --deadline``: runs in priority order, started only where
their measured cost fits, stopped after an epoch when they fall behind, continued to
the numbers of an uninterrupted run; and the GPU machine's driver,
benchmarks/gpu_table.py, whose archive brings the finished runs' records back.

Deadlines here run on a fake clock (``EpochClock``) or meet a cost table written by the
test, so that what a deadline stops never depends on this machine's speed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import torch

from fashionbench.config import dump_config
from fashionbench.costs import CostTable
from fashionbench.deadline import Deadline, DeadlineReached
from fashionbench.hardware import device_name
from fashionbench.rundir import State, read_history
from fashionbench.tasks.reproduce import reproduce_plan, train_plan
from fashionbench.training import Trainer

from conftest import run_main, small_config
from test_cli import assert_one_line_error
from test_equivalence import compare_runs

REPO = Path(__file__).resolve().parents[1]
CPU = device_name(torch.device("cpu"))
LARGE = ("shufflenet_v2", "mobilenet_v2", "wide_resnet16_4", "resnet18", "resnet34", "shake_shake34")


def tiny(model: str = "basic_cnn", seed: int = 0, epochs: int = 3):
    """Three epochs of 3 steps, fp32: seconds on one core, exact on a repeat."""
    return small_config("data.train_subset=150", "data.val_size=100", "data.test_subset=100", "batch_size=50",
                        f"epochs={epochs}", f"seed={seed}", model=model)


class EpochClock:
    """A clock on which each epoch the run in ``run_dir`` has trained took ``seconds``
    and nothing else takes any time."""

    def __init__(self, run_dir: Path, seconds: float = 100.0):
        self.run_dir, self.seconds = run_dir, seconds

    def __call__(self) -> float:
        return self.seconds * len(read_history(self.run_dir))


def test_seed_0_of_every_large_model_comes_first_cheapest_first(tmp_path):
    plan = reproduce_plan(list(reversed(LARGE)) + ["basic_cnn"], [0, 1, 2], "full", tmp_path)
    assert [(cfg.model, cfg.seed) for cfg, _, _ in plan] == [
        (model, seed) for seed in (0, 1, 2) for model in ("basic_cnn", *LARGE)]


def test_a_run_stopped_by_the_deadline_continues_to_the_uninterrupted_numbers(data, tmp_path, capsys):
    cfg = tiny()
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    train_plan(data, [(cfg, whole, "train")])
    costs = CostTable(tmp_path / "costs.json")
    clock = EpochClock(stopped)
    # Nothing measured: the first epoch measures 100 s, and two more (with the finish)
    # cannot end within the 50 s left, so the run stops there, its checkpoint written.
    train_plan(data, [(cfg, stopped, "train")], Deadline(150, clock), costs)
    out = capsys.readouterr().out
    assert "stopped after epoch 1 of 3" in out, out
    assert len(read_history(stopped)) == 1 and (stopped / "checkpoint.pt").exists()
    assert not (stopped / "summary.json").exists()
    assert not [p for p in stopped.iterdir() if p.name.startswith(".")]  # no temp files
    measured = json.loads((tmp_path / "costs.json").read_text())["devices"][CPU]
    assert [cost["first_epoch_seconds"] for cost in measured.values()] == [100.0]
    # The same again with time enough: it resumes, and ends as if never stopped.
    train_plan(data, [(cfg, stopped, State.INTERRUPTED)], Deadline(1000, clock), CostTable(tmp_path / "costs.json"))
    assert compare_runs(whole, stopped) == []


def test_a_run_that_cannot_finish_is_not_started_and_a_later_one_that_can_is(data, tmp_path, capsys):
    big, small = tiny("mini_vgg"), tiny(epochs=1)
    costs = CostTable(tmp_path / "costs.json")
    costs.record(CPU, big, first_epoch=300.0, epoch=300.0)
    plan = [(big, tmp_path / "big", "train"), (small, tmp_path / "small", "train")]
    train_plan(data, plan, Deadline(500, lambda: 0.0), costs)
    out = capsys.readouterr().out
    assert "mini_vgg seed 0: not started: needs about 1200 s" in out, out
    assert not (tmp_path / "big").exists()
    assert (tmp_path / "small" / "summary.json").exists()


def test_a_deadline_too_short_for_one_epoch_says_so_and_trains_nothing(data_dir, tmp_path):
    cfg = reproduce_plan(["basic_cnn"], [0], "smoke", tmp_path, "cpu")[0][0]
    CostTable(tmp_path / "costs.json").record(CPU, cfg, first_epoch=1000.0)
    args = ["reproduce", "--models", "basic_cnn", "--seeds", "0", "--budget", "smoke", "--device", "cpu",
            "--out", str(tmp_path), "--data-dir", str(data_dir), "--deadline", "100"]
    result = run_main(*args)
    assert result.returncode == 0, result.stderr
    assert "too short for one epoch of basic_cnn seed 0 (about 1000 s" in result.stdout, result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        "deadline: 0 of 1 runs finished, 0 partial, 1 not started; continue with: fashionbench "
        + " ".join(args))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["costs.json"]


def test_the_hard_stop_interrupts_at_the_deadline_and_is_disarmed_after():
    start = time.monotonic()
    with pytest.raises(DeadlineReached), Deadline(0.2).hard_stop():
        threading.Event().wait(30)
    assert time.monotonic() - start < 10
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with Deadline(30).hard_stop():
        pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.parametrize("cut_in, kept", [(1, None), (2, 1)])
def test_a_run_cut_by_the_hard_stop_keeps_its_last_epoch_or_no_folder(cut_in, kept, data, tmp_path, capsys,
                                                                      monkeypatch):
    """The hard stop (DeadlineReached) arriving during epoch ``cut_in``: as SIGALRM
    would raise it there, but at a known point."""
    train_epoch = Trainer.train_epoch

    def cut(self):
        if self.epoch + 1 == cut_in:
            raise DeadlineReached()
        return train_epoch(self)

    monkeypatch.setattr(Trainer, "train_epoch", cut)
    run_dir = tmp_path / "cut"
    train_plan(data, [(tiny(), run_dir, "train")], Deadline(1000, lambda: 0.0), CostTable(None))
    out = capsys.readouterr().out
    assert "the deadline (1000 s) has passed: stopped" in out, out
    if kept is None:
        assert "basic_cnn seed 0: the deadline came before its first epoch ended; nothing of it is kept" in out, out
        assert not run_dir.exists()
    else:
        assert f"the deadline came during epoch {cut_in}; the checkpoint of epoch {kept} is kept" in out, out
        assert len(read_history(run_dir)) == kept and (run_dir / "checkpoint.pt").exists()


# -- the GPU machine's driver ------------------------------------------------------------

def test_the_driver_packs_the_finished_records_and_the_costs_and_no_weights(data_dir, tmp_path):
    # A bare GPU machine may lack platformdirs: the driver must not need it.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "platformdirs.py").write_text("raise ImportError('not on the GPU machine')\n")
    out, results = tmp_path / "out", tmp_path / "results"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_table.py"), "run", "--out", str(out),
         "--results", str(results), "--data", str(data_dir), "--device", "cpu", "--budget", "smoke",
         "--models", "basic_cnn", "--seeds", "0", "--seconds", "300"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(shadow)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "deadline: 1 of 1 runs finished" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["costs.json", "gpu_table.tar.gz", "reproduce.log"]
    with tarfile.open(out / "gpu_table.tar.gz") as tar:
        names = sorted(tar.getnames())
    sessions = [name for name in names if name.startswith("results/gpu/sessions/")]
    assert len(sessions) == 1 and sessions[0].endswith(".json")
    with tarfile.open(out / "gpu_table.tar.gz") as tar:  # the session names its machine and command
        session = json.loads(tar.extractfile(sessions[0]).read())
    assert session["cpu"] and "gpu" in session and "gpu_table.py run" in session["command"], session
    assert "reproduce --models basic_cnn --seeds 0" in session["reproduce_command"], session  # the run it drove
    assert sorted(set(names) - set(sessions)) == ["results/gpu/costs.json", *(
        f"results/gpu/runs/basic_cnn-s0/{f}" for f in ("config.yaml", "metrics.jsonl", "summary.json"))]
    assert (results / "runs" / "basic_cnn-s0" / "model.pt").exists()  # trained there, not packed
    into = tmp_path / "checkout"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_table.py"), "unpack",
                           str(out / "gpu_table.tar.gz"), "--into", str(into)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "results/gpu/runs/basic_cnn-s0: finished" in done.stdout, done.stdout
    summary = json.loads((into / "results/gpu/runs/basic_cnn-s0/summary.json").read_text())
    assert summary["epochs"] == 2 and summary["device"].startswith("cpu (")
    costs = json.loads((into / "results/gpu/costs.json").read_text())["devices"]
    assert list(costs) == [summary["device"]]
    assert not list(into.rglob("*.pt"))


def test_a_finished_run_is_kept_whatever_device_or_compilation_trained_it(tmp_path):
    """A GPU session with --compile finds the eager runs of earlier ones finished."""
    cfg, run_dir, _ = reproduce_plan(["resnet18"], [0], "full", tmp_path, "cpu")[0]
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    (run_dir / "summary.json").write_text("{}")
    [(_, _, state)] = reproduce_plan(["resnet18"], [0], "full", tmp_path, "cuda", compile=True)
    assert state == "complete"


@pytest.mark.parametrize("text", ["{", '{"devices": {"cpu": {"basic_cnn": {"epoch_second": 1}}}}',
                                  '{"devices": {"cpu": {"basic_cnn": {"epoch_seconds": "1"}}}}'])
def test_a_damaged_cost_table_is_one_line(text, tmp_path):
    (tmp_path / "costs.json").write_text(text)
    assert_one_line_error(run_main("reproduce", "--models", "basic_cnn", "--seeds", "0", "--out", str(tmp_path),
                                   "--budget", "smoke", "--deadline", "100"),
                          f"{tmp_path / 'costs.json'}: not a cost table", status=1)


def test_a_run_whose_last_epoch_is_done_is_finished_not_stopped(data, tmp_path):
    """After the last epoch only the finish is left (seconds): stopping there would lose
    the whole run on a GPU held for a short time, so it finishes, the hard stop its only limit."""
    run_dir = tmp_path / "last"
    train_plan(data, [(tiny(epochs=1), run_dir, "train")], Deadline(150, EpochClock(run_dir)),
               CostTable(tmp_path / "costs.json"))
    assert (run_dir / "summary.json").exists()


def test_a_cost_table_without_a_deadline_is_a_usage_error(tmp_path):
    assert_one_line_error(run_main("reproduce", "--models", "basic_cnn", "--out", str(tmp_path), "--costs",
                                   str(tmp_path / "costs.json")), "--costs plans a --deadline; give both")


def test_unpack_refuses_an_archive_holding_weights(tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")
    with tarfile.open(tmp_path / "gpu_table.tar.gz", "w:gz") as tar:
        tar.add(weights, "results/gpu/runs/resnet18-s0/model.pt")
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_table.py"), "unpack",
                           str(tmp_path / "gpu_table.tar.gz"), "--into", str(tmp_path / "checkout")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "not an archive of gpu_table.py run: it holds results/gpu/runs/resnet18-s0/model.pt" in done.stderr
    assert not (tmp_path / "checkout").exists()
