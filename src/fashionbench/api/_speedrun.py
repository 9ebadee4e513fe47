"""The speedrun from the API: time to accuracy over seeds, planned, run and resumed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import Config, load_config, override
from ..data import FashionMNIST
from ..errors import UsageError
from ..plan import run_plan
from ..rundir import RunDir
from ..tasks import speedrun as speedruns
from ..tracking import Tracking
from ._run import PathLike, config_overrides, dataset


def _recipe(config_file: PathLike | None, overrides: list[dict]) -> Config:
    """``config_file`` (a recipe of any model), else recipes/speedrun_net.yaml, with the
    overrides."""
    if config_file is None:
        return load_config(speedruns.RECIPE, None, overrides)
    return load_config(None, config_file, overrides)


def speedrun_config(*, epochs: int | None = None, budget: float | None = None,
                    overrides: dict[str, Any] | Sequence[str] | None = None, train_subset: int | None = None,
                    device: str | None = None, config_file: PathLike | None = None) -> Config:
    """The speedrun recipe (``config_file``, else recipes/speedrun_net.yaml) with the
    overrides (a ``budget``'s epochs are chosen later, from a warm-up)."""
    if budget is not None and epochs is not None:
        raise UsageError("--budget S chooses the epochs; drop --epochs (or --budget)")
    if budget is not None:
        speedruns.check_budget(budget)
    return _recipe(config_file, config_overrides(overrides, epochs=epochs, train_subset=train_subset, device=device))


def _speedrun_plan(seeds: int, epochs: int | None, budget: float | None, target: float,
                   overrides: dict[str, Any] | Sequence[str] | None, train_subset: int | None,
                   device: str | None, data: FashionMNIST | None, data_dir: PathLike | None,
                   config_file: PathLike | None = None) -> tuple[speedruns.Plan, FashionMNIST]:
    cfg = speedrun_config(epochs=epochs, budget=budget, overrides=overrides, train_subset=train_subset,
                          device=device, config_file=config_file)
    speedruns.check_target(target)
    begin = time.perf_counter()
    data = dataset(data, data_dir)
    data_seconds = time.perf_counter() - begin
    warmup = speedruns.warm_up(cfg, data)
    if budget:
        chosen = speedruns.epochs_for(budget, warmup)  # after any --set: the budget decides
        cfg = _recipe(config_file, config_overrides(overrides, train_subset=train_subset, device=device)
                      + [override("epochs", chosen)])
    return speedruns.Plan(cfg, seeds, target, budget, warmup, data_seconds), data


def speedrun_plan(seeds: int = 5, *, epochs: int | None = None, budget: float | None = None,
                  target: float = 94.0, overrides: dict[str, Any] | Sequence[str] | None = None,
                  train_subset: int | None = None, device: str | None = None,
                  data: FashionMNIST | None = None, data_dir: PathLike | None = None,
                  config_file: PathLike | None = None) -> speedruns.Plan:
    """What ``speedrun`` would train, trained not: the config (under a ``budget``, the
    epochs that fit at the step cost of the warm-up's few steps, for which the data are
    loaded), the seeds and the target."""
    return _speedrun_plan(seeds, epochs, budget, target, overrides, train_subset, device, data, data_dir,
                          config_file)[0]


def speedrun(seeds: int = 5, *, epochs: int | None = None, budget: float | None = None, target: float = 94.0,
             overrides: dict[str, Any] | Sequence[str] | None = None, train_subset: int | None = None,
             device: str | None = None, out: PathLike = "runs/speedrun", name: str | None = None,
             data: FashionMNIST | None = None, data_dir: PathLike | None = None,
             on_start: Callable[[Path], None] | None = None, track: str | Sequence[str] | None = None,
             tensorboard_dir: PathLike | None = None, tracking_uri: str | None = None,
             experiment: str | None = None, config_file: PathLike | None = None) -> dict:
    """The speedrun recipe (``config_file``, else recipes/speedrun_net.yaml) trained from
    scratch on seeds 0..``seeds``-1, timed; ``budget``
    (seconds, at most a week) picks as many epochs as fit, and one that not one epoch
    fits is refused. ``on_start`` is called with the folder once its plan is written;
    stopped after that, ``resume_speedrun(folder)`` continues it. ``track`` as for
    ``train``: each seed's run logged (between epochs, off the clock). Returns
    speedrun.json's content."""
    speedrun_config(epochs=epochs, budget=budget, overrides=overrides, train_subset=train_subset, device=device,
                    config_file=config_file)
    speedruns.check_target(target)  # both before the folder is looked at and the data loaded
    folder = RunDir.create(out, name, "speedrun").path
    tracking = Tracking.of(track, tensorboard_dir, tracking_uri, experiment)
    plan, data = _speedrun_plan(seeds, epochs, budget, target, overrides, train_subset, device, data, data_dir,
                                config_file)
    if budget:
        print(f"budget {budget:g} s: {plan.cfg.epochs} epoch(s) at {plan.warmup.seconds_per_step * 1000:.0f} ms "
              "a step", flush=True)
    speedruns.write_plan(folder, plan)
    if on_start:
        on_start(folder)
    return speedruns.speedrun(plan, data, folder, tracking)


def resume_speedrun(folder: PathLike, *, data: FashionMNIST | None = None, data_dir: PathLike | None = None,
                    on_start: Callable[[Path], None] | None = None, track: str | Sequence[str] | None = None,
                    tensorboard_dir: PathLike | None = None, tracking_uri: str | None = None,
                    experiment: str | None = None) -> dict:
    """Continue a stopped speedrun exactly as planned: finished seeds are kept, the
    interrupted one resumes from its checkpoint (and its MLflow run, with ``track``), the
    rest train. Returns speedrun.json's content."""
    folder = Path(folder)
    plan = speedruns.read_plan(folder)
    tracking = Tracking.of(track, tensorboard_dir, tracking_uri, experiment)
    data = dataset(data, data_dir)
    speedruns.warm_up(plan.cfg, data)  # this process's one-off costs, paid off the clock again
    if on_start:
        on_start(folder)
    return speedruns.speedrun(plan, data, folder, tracking)


def speedrun_dry_run(seeds: int = 5, *, epochs: int | None = None, budget: float | None = None,
                     target: float = 94.0, overrides: dict[str, Any] | Sequence[str] | None = None,
                     train_subset: int | None = None, device: str | None = None, out: PathLike = "runs/speedrun",
                     name: str | None = None, data: FashionMNIST | None = None,
                     data_dir: PathLike | None = None, config_file: PathLike | None = None) -> str:
    """What ``speedrun`` would do, as text: the config checked, the seeds, the epochs (under
    a ``budget``, estimated from a warm-up's few steps, for which the data are loaded) and
    the first seed's plan; nothing written."""
    options = dict(epochs=epochs, budget=budget, overrides=overrides, train_subset=train_subset, device=device,
                   config_file=config_file)
    cfg = speedrun_config(**options)  # checked before any data is loaded for a budget's warm-up
    folder = RunDir.create(out, name, "speedrun").path
    chosen = str(cfg.epochs)
    if budget:
        plan = speedrun_plan(seeds, target=target, data=data, data_dir=data_dir, **options)
        cfg, warm = plan.cfg, plan.warmup
        chosen = (f"{cfg.epochs} (estimated for {budget:g} s: {warm.seconds_per_step * 1000:.0f} ms a "
                  f"step measured over {speedruns.TIMED_STEPS} warm-up steps; the run measures again)")
    return (f"speedrun: {cfg.model}, seeds 0..{seeds - 1}, epochs: {chosen}, target {target:g}%\n"
            + run_plan(cfg, folder / "seed-0", False))
