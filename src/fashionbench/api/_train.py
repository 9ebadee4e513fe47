"""Training from the API: a new run from a recipe, one-vs-all, an interrupted one
resumed, and the plan of either (--dry-run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import distributed
from ..config import Config, load_config, read_yaml
from ..data import FashionMNIST
from ..distributed import ONE_PROCESS, World
from ..errors import UsageError
from ..hardware import resolve_device
from ..models import MODELS
from ..plan import run_plan
from ..rundir import Kind, RunDir, State
from ..tasks.one_vs_all import check_one_vs_all_config, one_vs_all_plan, train_one_vs_all
from ..tasks.report import NOT_REPORTED, REPORTED, report_run
from ..tracking import Tracking, track
from ..training import train_or_resume
from ._run import PathLike, Run, as_finished, as_path, config_overrides, dataset


def prepare_run(kind: Kind | str, model: str | None = None, config_file: PathLike | None = None,
                overrides: list[dict] | None = None, out: PathLike = "runs", name: str | None = None,
                resume: PathLike | None = None, start: bool = True,
                world: World = ONE_PROCESS) -> tuple[Config, Path, bool]:
    """(config, run folder, resuming?) of a run of ``kind`` (Kind.RUN or Kind.ONE_VS_ALL,
    or the command's name, "train" or "one-vs-all"): a new folder from the recipe and
    overrides, or ``resume``'s own. ``start`` joins the process group under torchrun
    (not for a plan), where rank 0 names a new run's folder."""
    kind = Kind.of_command(kind)
    overrides = overrides or []
    if resume is not None:  # exactly as configured: the overrides are not looked at
        folder = RunDir(resume)
        cfg = folder.config
        if model and model != cfg.model:
            raise UsageError(f"{folder.path} trains {cfg.model}, not {model}")
        folder.resumable(kind)  # complete, or the other command's: one line
        if start:
            distributed.start(world, world.device(resolve_device(cfg.device)))
        return cfg, folder.path, folder.state is State.INTERRUPTED  # killed before epoch 1 ended: start over
    written = read_yaml(config_file) if config_file else {}
    if not model and "model" not in written:
        raise UsageError(f"name a MODEL to train (or a --config file that names one): "
                         f"{', '.join(sorted(MODELS))}")
    if written.get("one_vs_all") and kind is Kind.RUN:  # a run's config of before the command existed
        raise UsageError(f"{config_file} trains ten one-vs-all networks (one_vs_all: true), which is a "
                         f"command of its own now: fashionbench one-vs-all --config {config_file}")
    # A config file names its model (a run's config does); ``model`` overrides it.
    cfg = load_config(model, config_file, overrides)
    if kind is Kind.ONE_VS_ALL:
        check_one_vs_all_config(cfg)
    if world.distributed and start:
        distributed.start(world, world.device(resolve_device(cfg.device)))
    # Rank 0 alone: the others would find the folder it made, or name theirs a second later.
    run_dir = RunDir.create(out, name, cfg.model).path if world.is_main else None
    return cfg, distributed.share(run_dir), False


def fit(kind: Kind, cfg: Config, run_dir: Path, data: FashionMNIST | None, data_dir: PathLike | None,
        on_start: Callable[[Path], None] | None, world: World, tracking: Tracking | None = None,
        report: bool = False) -> Run:
    """Train (or resume) a prepared run, logged where ``tracking`` says (rank 0 alone),
    and write its report if asked (one-vs-all always writes its own); the data load after
    the config has been checked."""
    data = dataset(data, data_dir)
    if on_start is not None:
        on_start(run_dir)
    if kind is Kind.ONE_VS_ALL:
        return Run(run_dir, train_one_vs_all(cfg, data, run_dir, tracking))
    with track(tracking, run_dir, run_dir.name, main=world.is_main) as tracked:
        summary = train_or_resume(cfg, data, run_dir, world=world, hooks=tracked.hooks)
        if world.distributed:
            distributed.stop()  # every rank done: leave the group together
        run = Run(run_dir, summary)
        if report and world.is_main:
            report_run(as_finished(run, REPORTED, NOT_REPORTED), data)
        tracked.finish(summary, run_dir)
    return run


def train(model: str | None = None, *, config_file: PathLike | None = None,
          overrides: dict[str, Any] | Sequence[str] | None = None, out: PathLike = "runs",
          name: str | None = None, data: FashionMNIST | None = None, data_dir: PathLike | None = None,
          report: bool = False, on_start: Callable[[Path], None] | None = None,
          track: str | Sequence[str] | None = None, tensorboard_dir: PathLike | None = None,
          tracking_uri: str | None = None, experiment: str | None = None, **options) -> Run:
    """Train ``model`` with its recipe (recipes/MODEL.yaml, or ``config_file``) into a new
    folder ``out``/``name`` (default MODEL-YYYYmmdd-HHMMSS) and return the finished run.

    Options: ``epochs``, ``batch_size``, ``lr``, ``seed``, ``device``, ``train_subset``,
    ``compile``, ``head``; any other key through ``overrides`` (``{"swa.start": 0.5}``).
    ``report=True`` also writes its test report; ``on_start`` is called with the run's
    folder before the first step. ``track`` ("tensorboard", "mlflow" or both) logs the
    run as it trains (``tensorboard_dir``: TensorBoard's folder; ``tracking_uri`` and
    ``experiment``: MLflow's), checked before anything is made. Interrupted (Ctrl-C),
    the folder keeps its last epoch's checkpoint: ``resume(folder)`` continues it. Under
    torchrun every process calls it and trains its share (rank 0 alone logs)."""
    world = World.from_env()  # several processes when started by torchrun
    cfg, run_dir, _ = prepare_run(Kind.RUN, model, config_file, config_overrides(overrides, **options),
                                  out, name, world=world)
    tracking = Tracking.of(track, tensorboard_dir, tracking_uri, experiment)
    return fit(Kind.RUN, cfg, run_dir, data, data_dir, on_start, world, tracking, report)


def one_vs_all(model: str | None = None, *, config_file: PathLike | None = None,
               overrides: dict[str, Any] | Sequence[str] | None = None, out: PathLike = "runs",
               name: str | None = None, data: FashionMNIST | None = None, data_dir: PathLike | None = None,
               on_start: Callable[[Path], None] | None = None, track: str | Sequence[str] | None = None,
               tensorboard_dir: PathLike | None = None, tracking_uri: str | None = None, experiment: str | None = None,
               **options) -> Run:
    """Ten binary networks of ``model``, one per class, calibrated on validation and
    combined into one ten-class model with its report (``fashionbench one-vs-all``);
    ``track`` as for ``train`` (in MLflow, the ten runs nested under the combined one)."""
    cfg, run_dir, _ = prepare_run(Kind.ONE_VS_ALL, model, config_file, config_overrides(overrides, **options),
                                  out, name)
    tracking = Tracking.of(track, tensorboard_dir, tracking_uri, experiment)
    return fit(Kind.ONE_VS_ALL, cfg, run_dir, data, data_dir, on_start, ONE_PROCESS, tracking)


def resume(run: Run | PathLike, *, model: str | None = None, kind: Kind | str | None = None,
           data: FashionMNIST | None = None, data_dir: PathLike | None = None,
           on_start: Callable[[Path], None] | None = None, report: bool = False,
           track: str | Sequence[str] | None = None, tensorboard_dir: PathLike | None = None,
           tracking_uri: str | None = None, experiment: str | None = None) -> Run:
    """Continue an interrupted run (train or one-vs-all) from its last checkpoint, exactly
    as configured; ``model``, if given, must be the run's, and ``kind`` (a Kind, or
    "train" or "one-vs-all"), if given, its kind (a command resumes only its own runs).
    ``report`` and ``track`` as for ``train``: logged to MLflow before, it continues the
    same MLflow run (its id is in the folder) where the tracking URI is the same."""
    run_dir = as_path(run)
    if kind is None:
        kind = Kind.ONE_VS_ALL if RunDir(run_dir).kind is Kind.ONE_VS_ALL else Kind.RUN
    kind = Kind.of_command(kind)
    world = World.from_env() if kind is Kind.RUN else ONE_PROCESS
    cfg, run_dir, _ = prepare_run(kind, model, resume=run_dir, world=world)
    tracking = Tracking.of(track, tensorboard_dir, tracking_uri, experiment)
    return fit(kind, cfg, run_dir, data, data_dir, on_start, world, tracking, report)


def train_plan(model: str | None = None, *, kind: Kind | str = Kind.RUN, config_file: PathLike | None = None,
               overrides: dict[str, Any] | Sequence[str] | None = None, out: PathLike = "runs",
               name: str | None = None, resume: PathLike | None = None, world: World = ONE_PROCESS,
               **options) -> str:
    """What ``train`` (or ``one_vs_all``, or ``resume``) would do, as text: the config
    resolved and checked, parameters, steps, SWA snapshots, the run folder; nothing written."""
    kind = Kind.of_command(kind)
    cfg, run_dir, resuming = prepare_run(kind, model, config_file, config_overrides(overrides, **options),
                                         out, name, resume, start=False, world=world)
    return run_plan(cfg, run_dir, resuming) if kind is Kind.RUN else one_vs_all_plan(cfg, run_dir)
