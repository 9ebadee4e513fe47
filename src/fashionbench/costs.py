"""Measured training costs: wall-clock seconds per epoch of each workload (a model with
its batch, data and compilation) on each device, kept in a JSON file that ``reproduce
--deadline`` reads to plan and updates after every epoch.

On a lent GPU a run that does not finish within the session is lost (its checkpoint
is too large to come back), so a run is started only where its measured cost says it
will end in time; the table travels back with every session's records, and the next
session plans from it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import runs
from .config import Config
from .errors import FashionbenchError

# Estimates are compared with the time left multiplied by this: epochs on one machine
# vary by a few percent, and a run that misses the deadline is lost whole on a lent GPU
# while a run not started is only deferred to the next session.
SAFETY = 1.1


def workload(cfg: Config) -> str:
    """What a run's epoch costs depends on, as a key of the table (the seed, epochs and
    schedule do not change an epoch's cost)."""
    images = "all" if cfg.data.train_subset is None else f"{cfg.data.train_subset}"
    return (f"{cfg.model}: batch {cfg.batch_size}, {images} training images, precision {cfg.precision}, "
            f"{'compiled' if cfg.compile else 'eager'}")


@dataclass
class Cost:
    """One workload's seconds on one device, each a mean over its count of measurements."""
    # From a run's start (or resumption) to its first epoch's checkpoint: the data onto
    # the device, the model built, cuDNN's algorithm search, compilation, one epoch.
    first_epoch_seconds: float | None = None
    first_epoch_count: int = 0
    # Each later epoch: training steps, validation, checkpoint.
    epoch_seconds: float | None = None
    epoch_count: int = 0
    # After the last epoch: SWA's BatchNorm pass, the final evaluation, the model and summary written.
    finish_seconds: float | None = None
    finish_count: int = 0

    @property
    def per_epoch(self) -> float:
        """A later epoch's seconds; until one is measured, the first epoch's (start-up
        included: an overestimate, on the safe side)."""
        return self.epoch_seconds if self.epoch_seconds is not None else self.first_epoch_seconds

    @property
    def finish(self) -> float:
        """The finish's seconds; until measured, an epoch's (a BatchNorm pass and two
        evaluations cost less than a training epoch)."""
        return self.finish_seconds if self.finish_seconds is not None else self.per_epoch

    def to_start(self, epochs_left: int) -> float | None:
        """Seconds a run with ``epochs_left`` epochs to train takes if started now, from
        start-up to its summary; None where nothing is measured."""
        if self.first_epoch_seconds is None:
            return None
        if epochs_left == 0:  # resumed to be evaluated: start-up and the finish
            return max(self.first_epoch_seconds - self.per_epoch, 0.0) + self.finish
        return self.first_epoch_seconds + (epochs_left - 1) * self.per_epoch + self.finish

    def to_end(self, epochs_left: int) -> float:
        """Seconds a run under way takes to train ``epochs_left`` more epochs and finish."""
        return epochs_left * self.per_epoch + self.finish


# What an entry says beside its Cost: when, and with which torch, it was measured.
NOTES = ("torch", "updated")


def as_cost(entry: dict) -> Cost:
    """A table entry's Cost; a ValueError names what is wrong with it."""
    unknown = set(entry) - {f.name for f in fields(Cost)} - set(NOTES)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    cost = Cost(**{f.name: entry.get(f.name, f.default) for f in fields(Cost)})
    for f in fields(Cost):
        value = getattr(cost, f.name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        if not (number if f.name.endswith("_count") else value is None or number):
            raise ValueError(f"{f.name} is {value!r}, not a number of {f.name.rsplit('_', 1)[1]}")
    return cost


class CostTable:
    """The table at ``path`` (empty if there is none yet); ``record`` writes it at once.
    ``path`` None: a table in memory alone."""

    def __init__(self, path: Path | None):
        self.path = None if path is None else Path(path)
        self.devices: dict[str, dict[str, dict]] = {}
        if self.path is not None and self.path.exists():
            try:
                self.devices = json.loads(self.path.read_text())["devices"]
                for entries in self.devices.values():
                    for entry in entries.values():
                        as_cost(entry)
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise FashionbenchError(f"{self.path}: not a cost table of fashionbench reproduce ({e}); "
                                        "remove it to measure anew, or give another --costs") from None

    def get(self, device: str, cfg: Config) -> Cost | None:
        entry = self.devices.get(device, {}).get(workload(cfg))
        return None if entry is None else as_cost(entry)

    def record(self, device: str, cfg: Config, *, first_epoch: float | None = None, epoch: float | None = None,
               finish: float | None = None) -> Cost:
        """Add measured seconds to ``cfg``'s workload on ``device``, write the table."""
        cost = self.get(device, cfg) or Cost()
        for name, seconds in (("first_epoch", first_epoch), ("epoch", epoch), ("finish", finish)):
            if seconds is None:
                continue
            mean, n = getattr(cost, f"{name}_seconds"), getattr(cost, f"{name}_count")
            setattr(cost, f"{name}_seconds", round(seconds if mean is None else (mean * n + seconds) / (n + 1), 3))
            setattr(cost, f"{name}_count", n + 1)
        self.devices.setdefault(device, {})[workload(cfg)] = {
            **asdict(cost), "torch": torch.__version__,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if self.path is None:
            return cost
        runs.write_json(self.path, {
            "about": "wall-clock seconds per epoch of each workload on each device, measured by "
                     "fashionbench reproduce --deadline and read by it to plan (docs/benchmarks.md)",
            "devices": self.devices})
        return cost
