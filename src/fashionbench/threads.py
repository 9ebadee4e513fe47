"""CPU threads shared fairly between the fashionbench processes of one machine.

torch starts one intra-op OpenMP thread per core in every process, and OpenMP threads
spin while they wait for one another. Two such processes on two cores put four
spinning threads on two cores: each thread of a parallel region waits for a sibling
that is descheduled, and an epoch that takes 60 s alone took 470 to 900 s beside the
test suite. A process cannot know that from torch, so every training process on the
machine says that it computes (a small file named after its pid in a per-user folder),
and each sets its threads to its share of the cores, ``cores // processes`` (at least
one), again every few seconds while it trains: N processes then run at about 1/N of
the machine each, and the first one alone keeps every core.

A thread count the user set wins and is never changed: ``FASHIONBENCH_THREADS`` or
``OMP_NUM_THREADS`` (which torchrun sets for its ranks). Bit-for-bit repeats on the
CPU need a fixed thread count: a run alone keeps all cores from start to end, and runs
that share the machine can fix theirs with ``FASHIONBENCH_THREADS``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import torch

from .errors import UsageError
from .hardware import cores

# How often a training process looks at the others (a directory listing and a stat per
# process: microseconds, but not every step).
RECHECK_SECONDS = 1.0


def fixed_threads() -> int | None:
    """The thread count the user set, if any: FASHIONBENCH_THREADS, else OMP_NUM_THREADS
    (whose other forms, such as OpenMP's nested "4,2", leave torch's own count alone)."""
    text = os.environ.get("FASHIONBENCH_THREADS", "").strip()
    if text:
        if not (text.isdigit() and 1 <= int(text) <= 4096):
            raise UsageError(f"FASHIONBENCH_THREADS must be a whole number of threads from 1 to 4096, "
                              f"got {text!r}")
        return int(text)
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return torch.get_num_threads()  # torch read it at start-up
    return None


def registry() -> Path:
    """The folder where the computing processes of this user leave their pid files."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"fashionbench-{os.getuid() if hasattr(os, 'getuid') else 'user'}" / "computing"


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot, /proc/PID/stat field 22): with the
    pid it names one process for good, so a pid reused after a kill -9 is not counted."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: str) -> bool:
    if Path("/proc").is_dir():
        return _start_time(pid) == start
    try:  # no /proc: the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def computing_processes(folder: Path | None = None) -> int:
    """How many registered processes are alive; stale files (killed processes) are removed."""
    folder = folder or registry()
    count = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    for entry in entries:
        try:
            pid, start = int(entry.name), entry.read_text().strip()
        except (OSError, ValueError):
            continue
        if _alive(pid, start):
            count += 1
        else:
            entry.unlink(missing_ok=True)
    return count


def fair_share(processes: int, available: int | None = None) -> int:
    """Threads for one of ``processes`` computing processes: an equal share of the cores."""
    return max(1, (available or cores()) // max(1, processes))


class CpuShare:
    """This process's membership of the machine's computing processes, and its threads.

    ``with CpuShare():`` around training registers the process and sets its threads;
    ``rebalance()``, called from the training loop's thread (OpenMP's thread count
    belongs to the thread that sets it), follows the others as they come and go, at
    most every ``RECHECK_SECONDS``. Leaving restores the threads it found."""

    def __init__(self, enabled: bool = True, folder: Path | None = None):
        self.enabled = enabled  # off on a GPU: its process barely uses the CPU's cores
        self.folder = folder or registry()
        self.fixed = fixed_threads() if enabled else None
        self.file: Path | None = None
        self.checked = -float("inf")
        self.threads_before = torch.get_num_threads()
        self.threads_used: set[int] = set()

    def __enter__(self) -> CpuShare:
        if not self.enabled:
            return self
        if self.fixed is not None:
            torch.set_num_threads(self.fixed)
        else:
            start = _start_time(os.getpid()) or "0"
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.file = self.folder / str(os.getpid())
                self.file.write_text(start)
            except OSError:  # nowhere to register: compute as torch would, alone
                self.file = None
            self.rebalance(force=True)
        self.threads_used.add(torch.get_num_threads())
        return self

    def rebalance(self, force: bool = False) -> None:
        if self.file is None:
            return
        now = time.monotonic()
        if not force and now - self.checked < RECHECK_SECONDS:
            return
        self.checked = now
        threads = fair_share(computing_processes(self.folder))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.threads_used.add(threads)

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.unlink()
            self.file = None
        torch.set_num_threads(self.threads_before)
