"""Trainings that share a machine share its cores (threads.py): each of N computing
processes takes cores // N intra-op threads, follows the others as they come and go,
and a count the user fixed is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from fashionbench import threads
from fashionbench.errors import UsageError
from fashionbench.threads import CpuShare, computing_processes, fair_share
from fashionbench.training import train_or_resume

from conftest import small_config


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A private registry, no thread count set by the user, and torch's threads restored."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("FASHIONBENCH_THREADS", raising=False)
    monkeypatch.setattr(threads, "cores", lambda: 4)
    saved = torch.get_num_threads()
    yield threads.registry()
    torch.set_num_threads(saved)


def register(folder, pid: int) -> None:
    """``pid`` as another computing process, as its own CpuShare would have written it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(pid)).write_text(threads._start_time(pid))


def test_each_of_n_processes_takes_an_equal_share_of_the_cores():
    assert [fair_share(n, 4) for n in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
    assert fair_share(0, 2) == 2  # nobody registered (yet): every core


def test_a_process_alone_takes_every_core_and_halves_when_another_trains(registry):
    with CpuShare() as share:
        assert torch.get_num_threads() == 4
        assert computing_processes(registry) == 1
        register(registry, os.getppid())  # another process starts training
        share.rebalance(force=True)
        assert torch.get_num_threads() == 2
        (registry / str(os.getppid())).unlink()  # ... and finishes
        share.rebalance(force=True)
        assert torch.get_num_threads() == 4
        assert share.threads_used == {2, 4}
    assert not (registry / str(os.getpid())).exists()  # leaving unregisters


def test_a_killed_process_is_not_counted(registry):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    registry.mkdir(parents=True)
    (registry / dead.stdout.strip()).write_text("12345")  # its pid, perhaps reused since
    register(registry, os.getppid())
    (registry / str(os.getppid() + 10**7)).write_text("1")  # no such pid
    assert computing_processes(registry) == 1
    assert sorted(p.name for p in registry.iterdir()) == [str(os.getppid())]  # stale files removed


def test_a_thread_count_the_user_set_is_kept(registry, monkeypatch):
    register(registry, os.getppid())
    monkeypatch.setenv("FASHIONBENCH_THREADS", "3")
    with CpuShare() as share:
        share.rebalance(force=True)
        assert torch.get_num_threads() == 3
        assert not (registry / str(os.getpid())).exists()  # a fixed process does not take a share
    monkeypatch.setenv("FASHIONBENCH_THREADS", "0")
    with pytest.raises(UsageError, match="FASHIONBENCH_THREADS must be a whole number"):
        CpuShare()


def test_a_training_beside_another_records_the_threads_it_used(registry, data, tmp_path):
    register(registry, os.getppid())
    summary = train_or_resume(small_config("epochs=1", "data.train_subset=300", "data.val_size=100",
                                           "data.test_subset=100", "swa.enabled=false"), data, tmp_path / "run")
    assert summary.extra["cpu_threads"] == [2]
    assert computing_processes(registry) == 1  # the training left; the other stays
