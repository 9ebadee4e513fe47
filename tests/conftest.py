"""Shared fixtures. Real-data tests use the Fashion-MNIST files; with
FASHIONBENCH_REQUIRE_DATA=1 (CI) missing data fails the run instead of skipping."""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

from fashionbench.config import load_config, parse_override
from fashionbench.data import load_fashion_mnist, resolve_data_dir
from fashionbench.errors import FashionbenchError

# Under pytest-xdist (`make test`: a worker per core) torch's default of one intra-op
# thread per core, in every worker and in every fashionbench subprocess a test starts,
# puts several OpenMP threads on each core; they spin waiting for one another, and a
# subprocess that trains in 80 s alone took 600 s in the suite. One thread each, unless
# OMP_NUM_THREADS says otherwise; subprocesses inherit it through the environment.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Fixtures that load the real dataset or train: a test using one is in the slow tier.
REAL_DATA_FIXTURES = {"data", "data_dir", "tiny_run", "docs_run", "smoke", "ova_run"}


# Names whose use in a test's body means a new interpreter (seconds of start-up each).
SUBPROCESS_NAMES = {"run_cli", "subprocess"}


# The test files that take longest, longest first. `make test` hands out whole files to
# its workers (--dist loadfile) in the order collected (--no-loadscope-reorder: xdist
# would otherwise hand out the files with the most tests first, which left the Docker
# image's build, 7 tests but the longest file, to start last and run alone at the end);
# these go first, so the long ones overlap with the many short ones.
LONGEST_FIRST = ("test_docker.py", "test_benchmarks.py", "test_equivalence.py", "test_reproduce.py",
                 "test_tracking.py", "test_sweep.py", "test_distributed.py", "test_corruptions.py",
                 "test_ensemble.py", "test_docs.py", "test_train.py", "test_reliability.py",
                 "test_speedrun.py", "test_deadline.py", "test_notebook.py")


def pytest_collection_modifyitems(items):
    """The tiers: a test is slow when it uses a fixture holding the real data or a
    trained run, or starts fashionbench in a subprocess (read from the names its body
    uses); the rest is the fast tier, `make test-fast`. Then the files in the order
    their workers should start them: LONGEST_FIRST, then the rest as collected (a
    stable sort: a file's tests keep their order)."""
    for item in items:
        code = getattr(getattr(item, "function", None), "__code__", None)
        if (REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ()))
                or code is not None and SUBPROCESS_NAMES & set(code.co_names)):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST
               else len(LONGEST_FIRST))


@pytest.fixture(scope="session")
def data():
    try:
        return load_fashion_mnist()
    except FashionbenchError as e:
        message = f"real Fashion-MNIST not available at {resolve_data_dir()}: {e}"
        if os.environ.get("FASHIONBENCH_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def data_dir(data) -> Path:
    return data.root


@pytest.fixture(scope="session")
def tiny_run(data_dir, tmp_path_factory):
    """One quick BasicCNN run through the CLI, with --report; evaluated on a 2,000-image
    test slice, as every command that reads the run (report, ensemble, specialists, ...)
    evaluates it again."""
    out = tmp_path_factory.mktemp("runs")
    result = run_cli("train", "basic_cnn", "--out", str(out), "--name", "tiny", "--report",
                     "--data-dir", str(data_dir), "--epochs", "2", "--train-subset", "2000",
                     "--set", "data.val_size=1000", "--set", "data.test_subset=2000",
                     "--set", "schedule.cycle_epochs=1", "--set", "swa.start=1")
    assert result.returncode == 0, result.stderr
    assert f"report: {out}/tiny/report/report.html" in result.stdout
    return out / "tiny"


def small_config(*overrides: str, **kw):
    """A quick configuration: small train/val/test slices (evaluating the whole test set
    would take most of a run's time), fp32 so results are exact."""
    base = ["data.train_subset=2000", "data.val_size=1000", "data.test_subset=1000", "epochs=2", "batch_size=100",
            "precision=fp32", "swa.start=1", "schedule.cycle_epochs=1"]
    return load_config(kw.get("model", "basic_cnn"),
                       overrides=[parse_override(o) for o in base + list(overrides)])


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashionbench", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def wait_until(event: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float = 300) -> None:
    """Poll for ``event`` (a file appearing, a checkpoint of epoch N): what a test waits
    for before it acts on a running process, never a fixed sleep, whose right length
    depends on the machine. A test failure if ``process`` ends first or ``timeout``
    seconds pass; a poll every 10 ms, so the test acts within about that of the event."""
    deadline = time.monotonic() + timeout
    while not event():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the process ended (status {process.returncode}) before {what}: {(err or '')[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(0.01)


def stop_group(process: subprocess.Popen, timeout: float) -> None:
    """Stop a server started in a session of its own (``start_new_session=True``) with
    every process of its group: SIGTERM, then SIGKILL if it has not exited in ``timeout``."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def epochs_saved(run_dir: Path) -> int:
    """Epochs in the run's metrics.jsonl: written (atomically) after the epoch's checkpoint,
    so N rows means the checkpoint of epoch N is whole."""
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def run_main(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``fashionbench ARGS`` run by main() in this process: no interpreter and torch
    start-up to pay for (seconds a call), and the exit status and output a subprocess's
    would have. For commands that train nothing; ``env`` is set for the call only."""
    from fashionbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), environment(env or {}):
        try:
            status = main(list(args))
        except SystemExit as e:  # argparse: a usage error (2), or --help (0)
            status = e.code
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


@contextmanager
def environment(values: dict):
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write_idx(path: Path, header: bytes, body: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(header + body)
    return path
