"""Many runs from the API: combined (ensemble, specialists), tabled (leaderboard), and
trained over models and seeds (reproduce)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..costs import CostTable
from ..data import FashionMNIST
from ..deadline import Deadline
from ..errors import UsageError
from ..rundir import RunDir
from ..runs import check_name, check_out_dir
from ..tasks import reproduce as reproducing
from ..tasks.ensemble import ensemble_runs
from ..tasks.leaderboard import Row, collect, find_runs, write_tables
from ..tasks.specialists import GENERALIST, NOT_A_GENERALIST, check_specialists_dir, train_specialists
from ..tracking import Tracking
from ._run import PathLike, Run, as_finished, as_path, dataset


def ensemble(members: Iterable[Run | PathLike], method: str = "mean", *, tta: bool = False,
             out: PathLike = "runs", name: str | None = None, data: FashionMNIST | None = None,
             data_dir: PathLike | None = None, device: str | None = None) -> Run:
    """Combine finished runs by mean probability, majority vote ("vote") or weights fitted
    on validation ("weighted"); ``tta`` also predicts on mirrored images. Writes
    ``out``/``name`` (its summary and report)."""
    if method not in ("mean", "vote", "weighted"):
        raise UsageError(f"method must be mean, vote or weighted, not {method!r}")
    # One run is one member, however its path is written (runs/a, ./runs/a, /abs/runs/a).
    unique: dict[Path, Path] = {}
    for member in members:
        unique.setdefault(as_path(member).resolve(), member)
    if not unique:
        raise UsageError("name the runs to combine")
    finished = [as_finished(member) for member in unique.values()]  # what is wrong, before any data loads
    folder = RunDir.create(out, name, "ensemble", resumable=False).path
    if len(finished) == 1:
        print(f"fashionbench: warning: an ensemble of one run ({finished[0].path}) is that run; "
              "name two or more to combine", file=sys.stderr, flush=True)
    summary = ensemble_runs(finished, dataset(data, data_dir), method, tta, folder, device)
    return Run(folder, summary)


def specialists(run: Run | PathLike, pairs: int = 3, *, epochs: int | None = None, out: PathLike = "runs",
                name: str | None = None, data: FashionMNIST | None = None, data_dir: PathLike | None = None,
                device: str | None = None) -> Run:
    """Binary specialists for the ``pairs`` pairs of classes the run confuses most on
    validation, each taking over where validation says it helps; rerun with the same
    ``name`` to resume."""
    generalist = as_finished(run, GENERALIST, NOT_A_GENERALIST)
    folder = check_out_dir(out) / (f"{generalist.path.name}-specialists" if name is None else check_name(name))
    check_specialists_dir(folder)
    summary = train_specialists(generalist, dataset(data, data_dir), folder, pairs, epochs, device)
    return Run(folder, summary)


def leaderboard(paths: Iterable[PathLike], out: PathLike | None = None,
                title: str | None = None) -> list[Row]:
    """Finished runs under ``paths`` grouped by model and configuration, best first;
    with ``out``, table.md, table.csv and table.html are written there too."""
    rows = collect(find_runs([Path(p) for p in paths]))  # warns about, and leaves out, unusable runs
    if out is not None:
        check_out_dir(out)
        write_tables(rows, Path(out), title or f"fashionbench leaderboard ({sum(len(r.seeds) for r in rows)} runs)")
    return rows


@dataclass
class ReproducePlan:
    """The runs ``reproduce`` trains, resumes or keeps: (config, run folder, label) each."""
    runs: list[tuple[Config, Path, str]]

    def describe(self) -> str:
        """Every run and what is done with it (trained, resumed, kept), for --dry-run."""
        return reproducing.describe_plan(self.runs)

    def outcome(self) -> tuple[str, bool]:
        """What the folders hold now (finished, partial, not started), and whether all are finished."""
        return reproducing.describe_outcome(self.runs)


def check_reproduce(budget: str, protocol: str) -> None:
    if budget not in reproducing.BUDGETS:
        raise UsageError(f"budget must be one of {', '.join(sorted(reproducing.BUDGETS))}, not {budget!r}")
    if protocol not in reproducing.PROTOCOLS:
        raise UsageError(f"protocol must be one of {', '.join(reproducing.PROTOCOLS)}, not {protocol!r}")


def reproduce_plan(models: Sequence[str] | None = None, seeds: Sequence[int] = (0, 1, 2), budget: str = "full", *,
                   protocol: str = "ours", out: PathLike = "results", device: str | None = None,
                   compile: bool = False) -> ReproducePlan:
    """What ``reproduce`` would train, resume or keep, its configs checked; nothing written."""
    check_reproduce(budget, protocol)
    return ReproducePlan(reproducing.reproduce_plan(list(models or reproducing.default_models(protocol)),
                                                    list(seeds), budget, check_out_dir(out), device, protocol,
                                                    compile))


def reproduce(models: Sequence[str] | None = None, seeds: Sequence[int] = (0, 1, 2), budget: str = "full", *,
              protocol: str = "ours", out: PathLike = "results", device: str | None = None,
              data: FashionMNIST | None = None, data_dir: PathLike | None = None,
              deadline: float | None = None, costs: PathLike | None = None, compile: bool = False,
              track: str | Sequence[str] | None = None, tensorboard_dir: PathLike | None = None,
              tracking_uri: str | None = None, experiment: str | None = None) -> list[Path]:
    """Train each model with its recipe for each seed into ``out``/runs (finished runs
    kept, interrupted ones resumed; cheapest model first, seed by seed), then write
    ``out``/table.md, table.csv and table.html. ``protocol="reference"``: the reference
    project's protocol reimplemented (recipes/reference/MODEL.yaml, selected on the test
    set, marked so everywhere), and also ``out``/protocol.md, the best epoch on test
    beside the last. ``deadline``: seconds from now; only runs whose measured cost fits
    are started, a run falling behind stops after an epoch (its checkpoint kept), and the
    tables hold the finished runs (none finished: no tables, [] returned); the costs
    are read from and measured into the JSON file ``costs`` (default ``out``/costs.json).
    ``compile``: torch.compile each run's training step. ``track`` as for ``train``: each
    run it trains (not one read back finished) logged as it trains."""
    limit = Deadline(deadline) if deadline is not None else None  # from the call: loading the data counts
    plan = reproduce_plan(models, seeds, budget, protocol=protocol, out=out, device=device, compile=compile)
    tracking = Tracking.of(track, tensorboard_dir, tracking_uri, experiment)
    table = None if limit is None else CostTable(Path(costs) if costs is not None else Path(out) / "costs.json")
    return reproducing.reproduce(dataset(data, data_dir), plan.runs, budget, Path(out), protocol, limit, table,
                                 tracking)
