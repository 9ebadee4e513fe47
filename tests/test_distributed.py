"""Data-parallel training's building blocks on CPUs: BatchNorm synchronized across
processes (gloo) trains the model one process trains at the same global batch."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fashionbench import distributed
from fashionbench.config import ConfigError, load_config
from fashionbench.data import load_fashion_mnist
from fashionbench.distributed import SyncBatchNorm, World, convert_sync_batchnorm
from fashionbench.runs import load_torch
from fashionbench.training import Trainer

from conftest import epochs_saved, small_config, wait_until

STEPS, BATCH = 3, 16


def small_net() -> nn.Module:
    """Both kinds of BatchNorm the models use (2d after a convolution, 1d after a dense
    layer), and no dropout: the processes must compute one model."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(8 * 13 * 13, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 1, 28, 28, generator=g) * 2 + 0.5, torch.randint(0, 10, (BATCH,), generator=g))
            for _ in range(STEPS)]


def train(model: nn.Module, shard: slice, world: int) -> tuple[list[float], dict]:
    """STEPS steps of SGD on this process's shard of each global batch: the global
    batch's mean loss per step, and the final state."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for x, y in batches():
        loss = F.cross_entropy(model(x[shard]), y[shard])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        mean = loss.detach().clone()
        if world > 1:
            dist.all_reduce(mean)
            mean /= world
        losses.append(mean.item())
    module = model.module if isinstance(model, DistributedDataParallel) else model
    return losses, {k: v.clone() for k, v in module.state_dict().items()}


def end_spawned_rank() -> None:
    """A spawned rank whose work succeeded ends here, without the interpreter's teardown.
    Freeing a DistributedDataParallel's reducer after the group is left destroys the gloo
    process group while this thread holds the GIL, and joins gloo's worker thread, which
    may still be freeing the last collective's work, a tensor decref that needs the GIL:
    a deadlock, seen once in CI (py-spy: ~ProcessGroupGloo in std::thread::join under
    pybind11 dealloc; the worker in gil_scoped_acquire under ~AsyncBarrierWork)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def rank_main(rank: int, world: int, init: str, sync: bool, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model = small_net()
        if sync:
            model = convert_sync_batchnorm(model)
        share = BATCH // world
        result = train(DistributedDataParallel(model), slice(rank * share, (rank + 1) * share), world)
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()
    end_spawned_rank()


def two_processes(tmp_path, sync: bool) -> tuple[list[float], dict]:
    out = tmp_path / f"result-{sync}.pt"
    mp.spawn(rank_main, args=(2, f"file://{tmp_path}/init-{sync}", sync, str(out)), nprocs=2)
    return torch.load(out)


@pytest.mark.slow  # starts two interpreters
def test_two_processes_with_sync_batchnorm_train_the_one_process_model(tmp_path):
    losses, state = train(small_net(), slice(None), 1)
    sync_losses, sync_state = two_processes(tmp_path, sync=True)
    assert sync_losses == pytest.approx(losses, rel=1e-5)
    assert state.keys() == sync_state.keys()
    for key in state:  # weights, and the running statistics of the global batches
        assert torch.allclose(sync_state[key].float(), state[key].float(), rtol=1e-4, atol=1e-6), key
    # Without it each process normalizes its own half-batch: another model.
    plain_losses, _ = two_processes(tmp_path, sync=False)
    assert plain_losses[1:] != pytest.approx(losses[1:], rel=1e-3)


def test_sync_batchnorm_is_batchnorm_in_one_process_and_in_eval():
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_()
        bn.running_mean.uniform_()
    sync = convert_sync_batchnorm(nn.Sequential(bn))[0]
    assert isinstance(sync, SyncBatchNorm) and sync.state_dict().keys() == bn.state_dict().keys()
    x = torch.randn(6, 4, 5, 5)
    for mode in (True, False):
        bn.train(mode), sync.train(mode)
        assert torch.equal(sync(x), bn(x))
    assert torch.equal(sync.running_mean, bn.running_mean)


def test_world_from_torchrun_environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert World.from_env() == World(0, 1, 0) and not World.from_env().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = World.from_env()
    assert (world.rank, world.size, world.local_rank, world.distributed, world.is_main) == (3, 4, 1, True, False)
    assert world.backend(torch.device("cpu")) == "gloo" and world.backend(torch.device("cuda", 1)) == "nccl"


def test_a_global_batch_the_processes_do_not_divide_is_refused_before_anything_starts(tmp_path):
    """Checked first, before the data or the process group are touched: one line."""
    cfg = load_config("basic_cnn")
    with pytest.raises(ConfigError, match=r"^batch_size 128 does not split evenly over 3 processes; "
                                          r"batch_size is the global batch: make it a multiple of them$"):
        Trainer(cfg, None, tmp_path / "run", World(rank=0, size=3, local_rank=0))
    assert not (tmp_path / "run").exists()


# -- the trainer in two processes ---------------------------------------------------------

class RecordingTrainer(Trainer):
    """Records every step's loss over the global batch (the processes' mean) and the
    weights and optimizer state it started from; given ``starts``, begins every step
    from those instead (teacher forcing: each step compared on its own)."""
    starts: list | None = None

    def train_step(self, images, labels, flips=None):
        self.records = getattr(self, "records", [])
        if self.starts is not None:
            model, optimizer = self.starts[len(self.records)]
            self.model.load_state_dict(model)
            self.optimizer.load_state_dict(optimizer)
        start = (copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.optimizer.state_dict()))
        loss, logits = super().train_step(images, labels, flips)
        self.records.append(((distributed.all_sum(loss.detach().clone()) / self.world.size).item(), start))
        return loss, logits


def trainer_steps(rank: int, world_size: int, init: str, overrides: list[str], starts: str | None,
                  out: str) -> None:
    """One epoch of ``small_config(*overrides)`` as process ``rank`` of ``world_size``:
    each step's loss, and the state each step started from, saved to ``out``."""
    world = World(rank, world_size, rank)
    if world.distributed:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world_size)
    threads = torch.get_num_threads()  # the one-process side runs in pytest's own process:
    torch.set_num_threads(1)           # restored after, or every later test runs at one thread
    try:
        trainer = RecordingTrainer(small_config(*overrides), load_fashion_mnist(), Path(out).parent / "run", world)
        trainer.starts = None if starts is None else [start for _, start in torch.load(starts)]
        trainer.train_epoch()
        if world.is_main:
            torch.save(trainer.records, out)
    finally:
        torch.set_num_threads(threads)
        distributed.stop()
    if world.distributed:  # a spawned rank; the one-process side runs in pytest's own process
        end_spawned_rank()


# fp32, no dropout, 20 steps of a global batch of 100; contiguous tensors (torch's CPU
# BatchNorm in channels_last is off by 5e-5 relative against float64 on these images'
# first layer, 5e-8 contiguous; SyncBatchNorm 8e-8 either way).
EXACT = ["precision=fp32", "dropout=false", "epochs=1", "batch_size=100", "swa.enabled=false",
         "channels_last=false"]


@pytest.mark.slow  # the real data, and two interpreters
@pytest.mark.parametrize("augmented", [False, True])
def test_two_processes_take_one_process_steps(augmented, data, tmp_path):
    """Each process takes its half of every global batch of the same seeded order and
    augments the whole batch as one process does; with sync_bn, every step of two
    processes, started from the weights and optimizer state one process had before it,
    gives that process's loss (the recipe's AdamW, its cyclic LR, flip and zoom on or off).

    Each step on its own, not a free run: splitting a batch changes the order of fp32
    sums (1e-7), and BasicCNN's early training amplifies such differences step after
    step (free runs drift 1e-7, 6e-7, 9e-7, 8e-5, ... 1e-2 by step 20 even at SGD 1e-3),
    which would measure the network's sensitivity, not the trainer's arithmetic."""
    overrides = EXACT + ([] if augmented else ["augment.flip=0", "augment.zoom=0"])
    trainer_steps(0, 1, "", overrides, None, str(tmp_path / "one.pt"))
    mp.spawn(trainer_steps, args=(2, f"file://{tmp_path}/init", overrides, str(tmp_path / "one.pt"),
                                  str(tmp_path / "two.pt")), nprocs=2)
    one = [loss for loss, _ in torch.load(tmp_path / "one.pt")]
    two = [loss for loss, _ in torch.load(tmp_path / "two.pt")]
    assert len(one) == len(two) == 20
    assert two == pytest.approx(one, rel=1e-4)
    assert two[0] == pytest.approx(one[0], rel=1e-6)  # the first step, from one initialization


def torchrun(*args: str, launcher: str = "torch.distributed.run") -> list[str]:
    return [sys.executable, "-m", launcher, "--standalone", "--nproc-per-node", "2",
            "-m", "fashionbench", "train", *args]


# Two epochs of 2,000 images a process; fp32 and an SWA snapshot at each epoch's end, so a
# run resumed from its first checkpoint must rebuild the averaging exactly.
DDP_RUN = ["basic_cnn", "--epochs", "2", "--train-subset", "4000", "--set", "data.val_size=500",
           "--set", "data.test_subset=500", "--set", "precision=fp32", "--set", "swa.start=1",
           "--set", "schedule.cycle_epochs=1"]


@pytest.fixture(scope="module")
def ddp_run(data_dir, tmp_path_factory):
    """``torchrun --nproc-per-node 2 -m fashionbench train basic_cnn ...`` run once, whole:
    the run folder and torchrun's output."""
    out = tmp_path_factory.mktemp("ddp")
    result = subprocess.run(torchrun(*DDP_RUN, "--out", str(out), "--name", "whole", "--data-dir", str(data_dir)),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "whole", result


@pytest.mark.slow  # torchrun and two training processes
def test_torchrun_trains_one_run_with_two_processes(ddp_run):
    """The command a user types, on CPUs: one run folder, written by rank 0 alone, whose
    summary says how it was trained."""
    run_dir, result = ddp_run
    assert result.stdout.count("run: ") == 1 and result.stdout.count("epoch   2/2") == 1  # rank 0 speaks
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["world_size"], summary["backend"]) == (2, "gloo")
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    assert [p.name for p in run_dir.parent.iterdir()] == ["whole"]


def without_timing(run_dir: Path):
    rows = [{k: v for k, v in json.loads(line).items() if "seconds" not in k and k != "images_per_s"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return rows, json.loads((run_dir / "summary.json").read_text())["results"]


def kill_in_epoch_2(agent: subprocess.Popen, run_dir: Path, signum: int) -> None:
    """``signum`` to one of torchrun's two processes inside epoch 2. The event: epoch 1's
    checkpoint whole (metrics.jsonl, which rank 0 writes after it, once every process
    has given its RNG state to it), so both processes are past it, in epoch 2, which
    writes nothing until its own checkpoint, seconds later; the test checks that the
    checkpoint left is epoch 1's."""
    wait_until(lambda: epochs_saved(run_dir) >= 1, agent, "the checkpoint of epoch 1")
    workers = subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[-1]), signum)


@pytest.mark.slow  # torchrun, twice
def test_a_killed_rank_stops_the_run_and_resuming_ends_as_if_uninterrupted(ddp_run, data_dir, tmp_path):
    args = [*DDP_RUN, "--out", str(tmp_path), "--data-dir", str(data_dir)]
    agent = subprocess.Popen(torchrun(*args, "--name", "killed"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    killed = tmp_path / "killed"
    kill_in_epoch_2(agent, killed, signal.SIGKILL)  # one rank, not rank 0 necessarily
    _, err = agent.communicate(timeout=300)
    assert agent.returncode != 0 and ("Signal 9" in err or "SIGKILL" in err), err[-3000:]  # named, not a hang
    assert load_torch(killed / "checkpoint.pt")["epoch"] == 1  # killed inside epoch 2
    assert not (killed / "summary.json").exists()
    resumed = subprocess.run(torchrun("--resume", str(tmp_path / "killed"), "--data-dir", str(data_dir)),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch 1 of 2" not in resumed.stdout  # resumed from the checkpoint, not started over
    assert without_timing(tmp_path / "killed") == without_timing(ddp_run[0])


@pytest.mark.slow  # torchrun
def test_an_error_on_one_rank_stops_every_rank_with_its_message(data_dir, tmp_path):
    """SIGTERM to one process mid-epoch: it stops, the other leaves its collective at once
    rather than waiting at a barrier for ever, saying so and how to resume (under
    torchrun) in one line, and torchrun exits non-zero within seconds."""
    args = ["basic_cnn", "--epochs", "3", "--train-subset", "3000", "--set", "data.val_size=500",
            "--set", "data.test_subset=500", "--out", str(tmp_path), "--name", "x", "--data-dir", str(data_dir)]
    agent = subprocess.Popen(torchrun(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kill_in_epoch_2(agent, tmp_path / "x", signal.SIGTERM)
    try:
        _, err = agent.communicate(timeout=120)  # a barrier-bound process would wait 30 minutes
    except subprocess.TimeoutExpired:
        agent.kill()
        pytest.fail("torchrun did not stop within 120 s of one process's SIGTERM")
    assert agent.returncode != 0
    # The signalled rank (rank 1) leaves quietly; rank 0 says why it stopped and, once, how to continue.
    assert "process 0: another process of this run stopped" in err, err[-3000:]
    assert err.count("continue with:") == 1, err[-3000:]
    assert f"; continue with: torchrun --nproc-per-node 2 -m fashionbench train --resume {tmp_path / 'x'}" in err
    assert "[rank0]: Traceback" not in err and "[rank1]: Traceback" not in err, err[-3000:]  # one line each
    assert load_torch(tmp_path / "x" / "checkpoint.pt")["epoch"] == 1  # stopped inside epoch 2


@pytest.mark.slow  # torchrun
@pytest.mark.parametrize("launcher, status", [("torch.distributed.run", None), ("fashionbench.torchrun", 143)])
def test_sigterm_to_the_launcher_says_how_to_resume_once(launcher, status, data_dir, tmp_path):
    """SIGTERM to the launcher (what scancel, docker stop or a supervisor sends) after
    the first checkpoint: torchrun forwards it to every rank, and rank 0 alone prints the
    command that continues the run, once. torch's own torchrun then raises its
    SignalException (a traceback and status 1: its code, not fashionbench's);
    ``python -m fashionbench.torchrun``, the same launcher, exits 143 without one."""
    args = ["basic_cnn", "--epochs", "3", "--train-subset", "1000", "--set", "data.val_size=200",
            "--set", "data.test_subset=200", "--device", "cpu", "--out", str(tmp_path), "--name", "x",
            "--data-dir", str(data_dir)]
    agent = subprocess.Popen(torchrun(*args, launcher=launcher), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    wait_until((tmp_path / "x" / "checkpoint.pt").exists, agent, "the first epoch's checkpoint")
    agent.send_signal(signal.SIGTERM)
    try:
        _, err = agent.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        agent.kill()
        pytest.fail("torchrun did not stop within 120 s of SIGTERM")
    # The line names the launcher that was used: torch's, or ours again.
    again = "torchrun" if status is None else "python -m fashionbench.torchrun"
    resume = f"continue with: {again} --nproc-per-node 2 -m fashionbench train --resume {tmp_path / 'x'}"
    assert err.count("continue with:") == 1 and resume in err, err[-3000:]
    assert "[rank1]" not in err and "process 1:" not in err, err[-3000:]  # rank 1 leaves quietly
    assert not (tmp_path / "x" / "summary.json").exists()
    if status is None:
        assert agent.returncode != 0
    else:
        assert agent.returncode == status, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
