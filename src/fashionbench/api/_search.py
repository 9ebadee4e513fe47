"""Searching from the API: the LR range test, hyperparameter sweeps, the architectures."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import runs
from ..config import load_config
from ..data import FashionMNIST
from ..errors import UsageError
from ..models import MODELS, build_model, count_parameters, forward_flops, model_info
from ..runs import check_out_dir
from ..tasks import sweep as sweeps
from ..tasks.lr_find import LRFinderResult, lr_find_figure, lr_range_test
from ..tasks.search_space import Space, default_space, load_space
from ..tasks.study import check_storage_url
from ..tracking import Tracking
from ..training import Trainer
from ._run import PathLike, config_overrides, dataset


@dataclasses.dataclass
class LRFind:
    """An LR range test's result and the files it wrote."""
    result: LRFinderResult
    figure: Path
    table: Path

    @property
    def suggestion(self) -> float:
        return self.result.suggestion


def lr_find(model: str, *, start: float = 1e-6, end: float = 1.0, steps: int = 200,
            config_file: PathLike | None = None, overrides: dict[str, Any] | Sequence[str] | None = None,
            out: PathLike = "runs", data: FashionMNIST | None = None, data_dir: PathLike | None = None,
            **options) -> LRFind:
    """The LR range test (Smith 2017) on training batches with ``model``'s recipe: an
    exponential sweep from ``start`` to ``end``, stopped when the loss diverges. Writes
    ``out``/lr_find-MODEL.png and .csv; never touches the test set."""
    if not start < end:
        raise UsageError(f"need --start < --end, got {start:g} and {end:g}")
    cfg = load_config(model, config_file, config_overrides(overrides, **options))
    check_out_dir(out)
    trainer = Trainer(cfg, dataset(data, data_dir), Path(out))
    result = lr_range_test(trainer, start, end, steps)
    base = Path(out) / f"lr_find-{cfg.model}"
    runs.write_bytes(base.with_suffix(".png"), lr_find_figure(result, cfg.model))
    runs.write_text(base.with_suffix(".csv"), "lr,loss,smoothed_loss\n" + "".join(
        f"{lr:.6g},{loss:.6f},{sm:.6f}\n" for lr, loss, sm in zip(result.lrs, result.losses, result.smoothed)))
    return LRFind(result, base.with_suffix(".png"), base.with_suffix(".csv"))


def sweep_space(model: str, space: PathLike | Space | None = None, epochs: int | None = None,
                train_subset: int | None = None) -> Space:
    """A search space: ``space`` (a YAML file, or a Space) or the default around
    ``model``'s recipe, with ``epochs`` and ``train_subset`` as every trial's budget."""
    if isinstance(space, Space):
        chosen = space
    else:
        chosen = load_space(space) if space else default_space(load_config(model))
    if epochs:
        chosen.budget["epochs"] = epochs
    if train_subset:
        chosen.budget["data.train_subset"] = train_subset
    return chosen


def study_name(study: str | None, model: str) -> str:
    name = study or model
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UsageError(f"--study {name!r}: use letters, digits, '-', '_' and '.' (it names a folder)")
    return name


def sweep(model: str, trials: int, *, space: PathLike | Space | None = None, epochs: int | None = None,
          train_subset: int | None = None, out: PathLike = "runs/sweeps", study: str | None = None,
          storage: str | None = None, pruner: str = "median", seed: int = 0, sampler_seed: int | None = None,
          device: str | None = None, heartbeat: int = 60, data: FashionMNIST | None = None,
          data_dir: PathLike | None = None, track: str | Sequence[str] | None = None,
          tensorboard_dir: PathLike | None = None, tracking_uri: str | None = None,
          experiment: str | None = None) -> sweeps.SweepResult:
    """Search ``model``'s hyperparameters with Optuna on validation (``fashionbench sweep``):
    ``trials`` in all (every worker's), each an ordinary run folder under ``out``/STUDY;
    ``best_recipe(study)`` then writes the best trial as a recipe. ``track`` as for
    ``train``: in MLflow each trial a run nested under the study's; in TensorBoard a
    folder per trial (STUDY/trial-K under ``tensorboard_dir``, else each trial's own)."""
    chosen = sweep_space(model, space, epochs, train_subset)
    chosen.check(model, str(space) if isinstance(space, str | os.PathLike) else "search space")
    if storage is not None:
        check_storage_url(storage)
    check_out_dir(out)
    name = study_name(study, model)
    tracking = Tracking.of(track, tensorboard_dir, tracking_uri, experiment)
    fixed = [] if device is None else [{"device": device}]
    return sweeps.run_sweep(model, dataset(data, data_dir), trials, out, name, storage, chosen, pruner,
                            seed, sampler_seed, fixed, heartbeat, tracking)


def best_recipe(study: str, out: PathLike = "runs/sweeps", storage: str | None = None) -> sweeps.BestResult:
    """A finished study's best trial as a recipe (``out``/STUDY/best.yaml), with
    parameter importances and plots."""
    return sweeps.best_recipe(study, out, storage)


def sweep_plan(model: str, trials: int, *, space: PathLike | Space | None = None, epochs: int | None = None,
               train_subset: int | None = None, out: PathLike = "runs/sweeps", study: str | None = None,
               storage: str | None = None, pruner: str = "median", seed: int = 0) -> str:
    """What ``sweep`` would do, as text (space, budget, storage), checked; nothing opened
    or written."""
    chosen = sweep_space(model, space, epochs, train_subset)
    check_out_dir(out)
    name = study_name(study, model)
    chosen.check(model, str(space) if isinstance(space, str | os.PathLike) else "search space")
    return sweeps.sweep_plan(model, chosen, trials, out, name, storage, pruner, seed)


def list_models() -> list[dict]:
    """Every architecture: parameters, forward MFLOPs per image, the reference's figure, the paper."""
    rows = []
    for name in sorted(MODELS):
        model, info = build_model(name), model_info(name)
        flops, shape = forward_flops(model)
        rows.append({"model": name, "parameters": count_parameters(model), "mflops": flops / 1e6,
                     "outputs": shape[1], "reference": info.reference, "paper": info.paper})
    return rows
