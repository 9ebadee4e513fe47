"""fashionbench's Python API: every command, callable from Python (docs/api.md).

    import fashionbench as fb

    data = fb.load_data()                                   # verified Fashion-MNIST
    run = fb.train("basic_cnn", epochs=2, train_subset=2000, data=data)
    run.summary.test_acc, run.history[-1], run.model        # what it wrote, loaded back
    fb.evaluate(run, "val", data=data)                      # {"acc": ..., "loss": ...}
    fb.report(run, data=data)                               # run.path / "report"
    fb.predict(run, ["shoe.png"])                           # top classes of your images

The command line (cli.py) parses its options and calls these functions; what a
command prints is its own, what it does is here. A function takes ``data`` (from
``load_data``) to reuse a loaded dataset, or ``data_dir`` to say where it is; with
neither it loads the default (``$FASHIONBENCH_DATA_DIR``, else a per-user cache,
downloading on first use). A run is given as a :class:`Run` or its folder's path.
Errors a caller can fix (an unknown model, a bad key, a folder that is not a run)
raise :class:`fashionbench.errors.UsageError` or ``FashionbenchError`` with a
one-line message."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import distributed, runs
from .config import LEAKY, Config, load_config, override, parse_override, read_yaml
from .costs import CostTable
from .data import FashionMNIST, load_fashion_mnist
from .deadline import Deadline
from .distributed import ONE_PROCESS, World
from .errors import FashionbenchError, UsageError
from .hardware import resolve_device
from .inference import LoadedModel, evaluate_run, load_model
from .inference import load_run as load_with_splits
from .models import MODELS, build_model, count_parameters, forward_flops, model_info
from .rundir import TRAINED, FinishedRun, Kind, RunDir, State, Summary
from .runs import check_name, check_out_dir, new_run_dir
from .splits import class_names
from .tasks import speedrun as speedruns
from .tasks import sweep as sweeps
from .tasks.audit import audit_run
from .tasks.ensemble import ensemble_runs
from .tasks.export import export_run
from .tasks.leaderboard import Row, collect, find_runs, write_tables
from .tasks.lr_find import LRFinderResult, lr_find_figure, lr_range_test
from .tasks.one_vs_all import check_one_vs_all_config, train_one_vs_all
from .tasks.predict import class_probabilities, image_pixels
from .tasks.report import NOT_REPORTED, REPORTED, Predictions, report_run
from .tasks.report import predictions as split_predictions_of
from .tasks.reproduce import BUDGETS, PROTOCOLS, default_models, reproduce_plan
from .tasks.reproduce import reproduce as reproduce_runs
from .tasks.specialists import GENERALIST, NOT_A_GENERALIST, check_specialists_dir, train_specialists
from .training import Trainer, train_or_resume

PathLike = str | os.PathLike
# Keyword options of train() and friends, and the config keys they set (the CLI's
# --epochs, --batch-size, ... are the same names).
CONFIG_OPTIONS = {"epochs": "epochs", "batch_size": "batch_size", "lr": "optim.lr",
                  "seed": "seed", "device": "device", "train_subset": "data.train_subset",
                  "compile": "compile", "head": "head"}


class Run:
    """A run folder: a training run, one-vs-all, an ensemble or specialists (a
    ``rundir.RunDir``, ``folder``). What it holds is read from disk when first asked
    for, so a Run of an unfinished folder still gives its ``config`` and ``history``."""

    def __init__(self, path: PathLike, summary: Summary | None = None):
        self.folder = RunDir(path, summary)
        self.path = self.folder.path

    def __repr__(self) -> str:
        try:
            acc = self.summary.test_acc
            what = f"{self.summary.model}, " + ("validation only" if acc is None else f"test acc {acc:.4f}"
                                                + (f" ({LEAKY})" if self.summary.leaky else ""))
        except FashionbenchError:
            what = "not finished"
        return f"Run({str(self.path)!r}: {what})"

    def __fspath__(self) -> str:  # a Run goes wherever a path does
        return str(self.path)

    @property
    def kind(self) -> Kind | None:
        """What the folder is (None: not a run folder)."""
        return self.folder.kind

    @property
    def state(self) -> State:
        """New, interrupted or complete."""
        return self.folder.state

    @property
    def config(self) -> Config:
        """The resolved config the run trained with."""
        return self.folder.config

    @property
    def summary(self) -> Summary:
        """Its results: accuracies per weights and split, timings, environment."""
        return self.folder.summary

    @property
    def history(self) -> list[dict]:
        """One dict per finished epoch: losses, accuracies, LR, SWA snapshots, seconds;
        [] for a kind without epochs (an ensemble)."""
        return self.folder.read_history()

    @property
    def finished(self) -> FinishedRun:
        """The folder as a finished trained run (config, summary and kind checked), or
        one line saying why it is not one."""
        return self.folder.finished()

    @cached_property
    def model(self) -> nn.Module:
        """The final model (SWA's where the recipe averages), in eval mode, on the run's device."""
        return self.load().model

    def load(self, device: str | None = None) -> LoadedModel:
        """The final model with what predicting needs (config, device, precision)."""
        return load_model(self.finished, device)


def as_path(run: Run | PathLike) -> Path:
    return run.path if isinstance(run, Run) else Path(run)


def as_finished(run: Run | PathLike, kinds: Sequence[Kind] = TRAINED, refusal: str | None = None) -> FinishedRun:
    """``run`` as a finished trained run of one of ``kinds``, or the one line saying why
    it is not (before any data is loaded)."""
    folder = run.folder if isinstance(run, Run) else RunDir(run)
    return folder.finished(kinds, refusal)


def load_run(path: PathLike) -> Run:
    """A run folder, checked to be one (its config readable)."""
    run = Run(path)
    run.config  # noqa: B018 -- not a run folder: say so now, not at first use
    return run


def load_data(data_dir: PathLike | None = None) -> FashionMNIST:
    """Fashion-MNIST, every file's MD5 sum verified; downloaded first if missing."""
    return load_fashion_mnist(data_dir)


def _data(data: FashionMNIST | None, data_dir: PathLike | None) -> FashionMNIST:
    return data if data is not None else load_fashion_mnist(data_dir)


def config_overrides(overrides: dict[str, Any] | Sequence[str] | None = None, **options) -> list[dict]:
    """Overrides as load_config takes them: named options (``epochs=3``) first, then
    ``overrides``, a mapping of dotted keys (``{"swa.start": 0.5}``) or a list of
    "KEY=VALUE" texts (or of overrides already parsed)."""
    unknown = sorted(set(options) - set(CONFIG_OPTIONS))
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)}: the named ones are "
                         f"{', '.join(CONFIG_OPTIONS)}; set any other config key through overrides")
    items = [override(CONFIG_OPTIONS[name], value) for name, value in options.items() if value is not None]
    if isinstance(overrides, dict):
        return items + [override(key, value) for key, value in overrides.items()]
    return items + [parse_override(item) if isinstance(item, str) else item for item in overrides or ()]


def resolve_config(model: str | None = None, config_file: PathLike | None = None,
                   overrides: dict[str, Any] | Sequence[str] | None = None, **options) -> Config:
    """The config a run of ``model`` would train with: its recipe (or ``config_file``),
    then the overrides; validated."""
    if model is None and config_file is None:
        raise UsageError(f"name a MODEL to train (or a config file that names one): {', '.join(sorted(MODELS))}")
    return load_config(model, config_file, config_overrides(overrides, **options))


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


def _fit(kind: Kind, cfg: Config, run_dir: Path, data: FashionMNIST | None, data_dir: PathLike | None,
         on_start: Callable[[Path], None] | None, world: World) -> Run:
    """Train (or resume) a prepared run; the data loads after the config has been checked."""
    data = _data(data, data_dir)
    if on_start is not None:
        on_start(run_dir)
    if kind is Kind.ONE_VS_ALL:
        summary = train_one_vs_all(cfg, data, run_dir)
    else:
        summary = train_or_resume(cfg, data, run_dir, world=world)
    if world.distributed:
        distributed.stop()  # every rank done: leave the group together
    return Run(run_dir, summary)


def train(model: str | None = None, *, config_file: PathLike | None = None,
          overrides: dict[str, Any] | Sequence[str] | None = None, out: PathLike = "runs",
          name: str | None = None, data: FashionMNIST | None = None, data_dir: PathLike | None = None,
          report: bool = False, on_start: Callable[[Path], None] | None = None, **options) -> Run:
    """Train ``model`` with its recipe (recipes/MODEL.yaml, or ``config_file``) into a new
    folder ``out``/``name`` (default MODEL-YYYYmmdd-HHMMSS) and return the finished run.

    Options: ``epochs``, ``batch_size``, ``lr``, ``seed``, ``device``, ``train_subset``,
    ``compile``, ``head``; any other key through ``overrides`` (``{"swa.start": 0.5}``).
    ``report=True`` also writes its test report; ``on_start`` is called with the run's
    folder before the first step. Interrupted (Ctrl-C), the folder keeps its last
    epoch's checkpoint: ``resume(folder)`` continues it. Under torchrun every process
    calls it and trains its share."""
    world = World.from_env()  # several processes when started by torchrun
    cfg, run_dir, _ = prepare_run(Kind.RUN, model, config_file, config_overrides(overrides, **options),
                                  out, name, world=world)
    run = _fit(Kind.RUN, cfg, run_dir, data, data_dir, on_start, world)
    if report and world.is_main:
        report_run(as_finished(run, REPORTED, NOT_REPORTED), _data(data, data_dir))
    return run


def one_vs_all(model: str | None = None, *, config_file: PathLike | None = None,
               overrides: dict[str, Any] | Sequence[str] | None = None, out: PathLike = "runs",
               name: str | None = None, data: FashionMNIST | None = None, data_dir: PathLike | None = None,
               on_start: Callable[[Path], None] | None = None, **options) -> Run:
    """Ten binary networks of ``model``, one per class, calibrated on validation and
    combined into one ten-class model with its report (``fashionbench one-vs-all``)."""
    cfg, run_dir, _ = prepare_run(Kind.ONE_VS_ALL, model, config_file, config_overrides(overrides, **options),
                                  out, name)
    return _fit(Kind.ONE_VS_ALL, cfg, run_dir, data, data_dir, on_start, ONE_PROCESS)


def resume(run: Run | PathLike, *, model: str | None = None, kind: Kind | str | None = None,
           data: FashionMNIST | None = None, data_dir: PathLike | None = None,
           on_start: Callable[[Path], None] | None = None) -> Run:
    """Continue an interrupted run (train or one-vs-all) from its last checkpoint, exactly
    as configured; ``model``, if given, must be the run's, and ``kind`` (Kind.RUN or
    Kind.ONE_VS_ALL, or the command's name, "train" or "one-vs-all"), if given, its kind
    (a command resumes only its own runs)."""
    run_dir = as_path(run)
    if kind is None:
        kind = Kind.ONE_VS_ALL if RunDir(run_dir).kind is Kind.ONE_VS_ALL else Kind.RUN
    kind = Kind.of_command(kind)
    world = World.from_env() if kind is Kind.RUN else ONE_PROCESS
    cfg, run_dir, _ = prepare_run(kind, model, resume=run_dir, world=world)
    return _fit(kind, cfg, run_dir, data, data_dir, on_start, world)


def evaluate(run: Run | PathLike, split: str = "val", *, data: FashionMNIST | None = None,
             data_dir: PathLike | None = None, device: str | None = None) -> dict:
    """Accuracy and loss of a run's final model on ``split`` ("val" or "test"; the test
    set is for final reporting only)."""
    if split not in ("val", "test"):
        raise UsageError(f"split must be val or test, not {split!r}")
    return evaluate_run(as_finished(run), _data(data, data_dir), split, device)


def report(run: Run | PathLike, split: str = "test", *, errors: int = 25, data: FashionMNIST | None = None,
           data_dir: PathLike | None = None, device: str | None = None) -> Path:
    """Write the run's report (confusion matrix, P/R/F1, confident errors, curves) into
    RUN/report (RUN/report-val for ``split="val"``); returns report.html's path."""
    if split not in ("val", "test"):
        raise UsageError(f"split must be val or test, not {split!r}")
    return report_run(as_finished(run, REPORTED, NOT_REPORTED), _data(data, data_dir), split, device, errors)


def predictions(run: Run | PathLike, split: str = "val", *, data: FashionMNIST | None = None,
                data_dir: PathLike | None = None, device: str | None = None) -> Predictions:
    """The final model's class probabilities on one of the run's splits, with the labels
    and images: what a report is made of (``fashionbench.tasks.report``'s figures take it)."""
    if split not in ("train", "val", "test"):
        raise UsageError(f"split must be train, val or test, not {split!r}")
    return split_predictions_of(load_with_splits(as_finished(run), _data(data, data_dir), device), split)


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
    summary = ensemble_runs(finished, _data(data, data_dir), method, tta, folder, device)
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
    summary = train_specialists(generalist, _data(data, data_dir), folder, pairs, epochs, device)
    return Run(folder, summary)


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
    trainer = Trainer(cfg, _data(data, data_dir), Path(out))
    result = lr_range_test(trainer, start, end, steps)
    base = Path(out) / f"lr_find-{cfg.model}"
    runs.write_bytes(base.with_suffix(".png"), lr_find_figure(result, cfg.model))
    runs.write_text(base.with_suffix(".csv"), "lr,loss,smoothed_loss\n" + "".join(
        f"{lr:.6g},{loss:.6f},{sm:.6f}\n" for lr, loss, sm in zip(result.lrs, result.losses, result.smoothed)))
    return LRFind(result, base.with_suffix(".png"), base.with_suffix(".csv"))


@dataclasses.dataclass
class Prediction:
    """One image's most likely classes, most likely first."""
    source: str                       # the file, or "image N" for an array or PIL image
    top_k: list[tuple[str, float]]    # (class name, probability)
    probabilities: np.ndarray         # every class's

    @property
    def label(self) -> str:
        return self.top_k[0][0]


def predict(run: Run | PathLike | LoadedModel, images: Iterable, *, top_k: int = 3, tta: bool = False,
            invert: str = "auto", device: str | None = None) -> list[Prediction]:
    """Classify images with a run's model: file paths (any format Pillow reads), PIL
    images, or uint8 arrays of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (28x28 as
    in Fashion-MNIST: light garment on black, taken as it is; any other converted as a
    file is). ``images`` is a list (or any iterable: an (N, H, W) array is N images); a
    single path or PIL image is one image. Each is converted the way Fashion-MNIST was
    made (``fashionbench predict --help``); a blank one is predicted with a warning on
    stderr. ``tta`` averages with the mirrored image."""
    loaded = run if isinstance(run, LoadedModel) else load_model(as_finished(run), device)
    names = class_names(loaded.cfg)
    if not 1 <= top_k <= len(names):
        raise UsageError(f"top_k must be between 1 and {len(names)}, not {top_k}")
    if isinstance(images, (str, os.PathLike, Image.Image)):  # one image, not its characters
        images = [images]
    sources, pixels = [], []
    for i, image in enumerate(images):
        sources.append(str(image) if isinstance(image, (str, os.PathLike)) else f"image {i}")
        pixels.append(image_pixels(image, invert, sources[-1]))
    if not pixels:
        return []
    probs = class_probabilities(loaded, torch.from_numpy(np.stack(pixels)[:, None]), tta).numpy()
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    return [Prediction(source, [(names[j], float(p[j])) for j in top], p)
            for source, p, top in zip(sources, probs, order)]


def audit(run: Run | PathLike, split: str = "train", *, top: int = 50, data: FashionMNIST | None = None,
          data_dir: PathLike | None = None, device: str | None = None) -> tuple[Path, Path, int]:
    """Likely label errors: the images of ``split`` where the model most confidently
    disagrees with the dataset. Returns (grid PNG, CSV of all, how many disagree)."""
    return audit_run(as_finished(run), _data(data, data_dir), split, top, device)


def export(run: Run | PathLike, format: str = "onnx", out: PathLike | None = None) -> Path:
    """Write a run's model, normalization included, as ONNX or TorchScript; returns the file."""
    if format not in ("onnx", "torchscript"):
        raise UsageError(f"format must be onnx or torchscript, not {format!r}")
    finished = as_finished(run)
    path = Path(out) if out else finished.folder.export_file(format)
    export_run(finished, format, path)
    return path


def leaderboard(paths: Iterable[PathLike], out: PathLike | None = None,
                title: str | None = None) -> list[Row]:
    """Finished runs under ``paths`` grouped by model and configuration, best first;
    with ``out``, table.md, table.csv and table.html are written there too."""
    rows = collect(find_runs([Path(p) for p in paths]))  # warns about, and leaves out, unusable runs
    if out is not None:
        check_out_dir(out)
        write_tables(rows, Path(out), title or f"fashionbench leaderboard ({sum(len(r.seeds) for r in rows)} runs)")
    return rows


def reproduce(models: Sequence[str] | None = None, seeds: Sequence[int] = (0, 1, 2), budget: str = "full", *,
              protocol: str = "ours", out: PathLike = "results", device: str | None = None,
              data: FashionMNIST | None = None, data_dir: PathLike | None = None,
              deadline: float | None = None, costs: PathLike | None = None, compile: bool = False) -> list[Path]:
    """Train each model with its recipe for each seed into ``out``/runs (finished runs
    kept, interrupted ones resumed; cheapest model first, seed by seed), then write
    ``out``/table.md, table.csv and table.html. ``protocol="reference"``: the reference
    project's own protocol (recipes/reference/MODEL.yaml, selected on the test set,
    marked so everywhere), and also ``out``/protocol.md, the best epoch on test beside
    the last. ``deadline``: seconds from now; only runs whose measured cost fits are
    started, a run falling behind stops after an epoch (its checkpoint kept), and the
    tables hold the finished runs (none finished: no tables, [] returned); the costs
    are read from and measured into the JSON file ``costs`` (default ``out``/costs.json).
    ``compile``: torch.compile each run's training step."""
    limit = Deadline(deadline) if deadline is not None else None  # from the call: loading the data counts
    if budget not in BUDGETS:
        raise UsageError(f"budget must be one of {', '.join(sorted(BUDGETS))}, not {budget!r}")
    if protocol not in PROTOCOLS:
        raise UsageError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    plan = reproduce_plan(list(models or default_models(protocol)), list(seeds), budget, check_out_dir(out),
                          device, protocol, compile)
    table = None if limit is None else CostTable(Path(costs) if costs is not None else Path(out) / "costs.json")
    return reproduce_runs(_data(data, data_dir), plan, budget, Path(out), protocol, limit, table)


def speedrun_config(*, epochs: int | None = None, budget: float | None = None,
                    overrides: dict[str, Any] | Sequence[str] | None = None, train_subset: int | None = None,
                    device: str | None = None) -> Config:
    """The speedrun recipe with the overrides (a ``budget``'s epochs are chosen later,
    from a warm-up)."""
    if budget is not None and epochs is not None:
        raise UsageError("--budget S chooses the epochs; drop --epochs (or --budget)")
    if budget is not None:
        speedruns.check_budget(budget)
    return load_config(speedruns.RECIPE, None,
                       config_overrides(overrides, epochs=epochs, train_subset=train_subset, device=device))


def _speedrun_plan(seeds: int, epochs: int | None, budget: float | None, target: float,
                   overrides: dict[str, Any] | Sequence[str] | None, train_subset: int | None,
                   device: str | None, data: FashionMNIST | None,
                   data_dir: PathLike | None) -> tuple[speedruns.Plan, FashionMNIST]:
    import time

    cfg = speedrun_config(epochs=epochs, budget=budget, overrides=overrides, train_subset=train_subset,
                          device=device)
    speedruns.check_target(target)
    begin = time.perf_counter()
    data = _data(data, data_dir)
    data_seconds = time.perf_counter() - begin
    warmup = speedruns.warm_up(cfg, data)
    if budget:
        chosen = speedruns.epochs_for(budget, warmup)  # after any --set: the budget decides
        cfg = load_config(speedruns.RECIPE, None, config_overrides(overrides, train_subset=train_subset, device=device)
                          + [override("epochs", chosen)])
    return speedruns.Plan(cfg, seeds, target, budget, warmup, data_seconds), data


def speedrun_plan(seeds: int = 5, *, epochs: int | None = None, budget: float | None = None,
                  target: float = 94.0, overrides: dict[str, Any] | Sequence[str] | None = None,
                  train_subset: int | None = None, device: str | None = None,
                  data: FashionMNIST | None = None, data_dir: PathLike | None = None) -> speedruns.Plan:
    """What ``speedrun`` would train, trained not: the config (under a ``budget``, the
    epochs that fit at the step cost of the warm-up's few steps, for which the data are
    loaded), the seeds and the target."""
    return _speedrun_plan(seeds, epochs, budget, target, overrides, train_subset, device, data, data_dir)[0]


def speedrun(seeds: int = 5, *, epochs: int | None = None, budget: float | None = None, target: float = 94.0,
             overrides: dict[str, Any] | Sequence[str] | None = None, train_subset: int | None = None,
             device: str | None = None, out: PathLike = "runs/speedrun", name: str | None = None,
             data: FashionMNIST | None = None, data_dir: PathLike | None = None,
             on_start: Callable[[Path], None] | None = None) -> dict:
    """The speedrun recipe trained from scratch on seeds 0..``seeds``-1, timed; ``budget``
    (seconds, at most a week) picks as many epochs as fit, and one that not one epoch
    fits is refused. ``on_start`` is called with the folder once its plan is written;
    stopped after that, ``resume_speedrun(folder)`` continues it. Returns speedrun.json's
    content."""
    speedrun_config(epochs=epochs, budget=budget, overrides=overrides, train_subset=train_subset, device=device)
    speedruns.check_target(target)  # both before the folder is looked at and the data loaded
    folder = new_run_dir(out, name, "speedrun")
    plan, data = _speedrun_plan(seeds, epochs, budget, target, overrides, train_subset, device, data, data_dir)
    if budget:
        print(f"budget {budget:g} s: {plan.cfg.epochs} epoch(s) at {plan.warmup.seconds_per_step * 1000:.0f} ms "
              "a step", flush=True)
    speedruns.write_plan(folder, plan)
    if on_start:
        on_start(folder)
    return speedruns.speedrun(plan, data, folder)


def resume_speedrun(folder: PathLike, *, data: FashionMNIST | None = None, data_dir: PathLike | None = None,
                    on_start: Callable[[Path], None] | None = None) -> dict:
    """Continue a stopped speedrun exactly as planned: finished seeds are kept, the
    interrupted one resumes from its checkpoint, the rest train. Returns speedrun.json's
    content."""
    folder = Path(folder)
    plan = speedruns.read_plan(folder)
    data = _data(data, data_dir)
    speedruns.warm_up(plan.cfg, data)  # this process's one-off costs, paid off the clock again
    if on_start:
        on_start(folder)
    return speedruns.speedrun(plan, data, folder)


def sweep_space(model: str, space: PathLike | sweeps.Space | None = None, epochs: int | None = None,
                train_subset: int | None = None) -> sweeps.Space:
    """A search space: ``space`` (a YAML file, or a Space) or the default around
    ``model``'s recipe, with ``epochs`` and ``train_subset`` as every trial's budget."""
    if isinstance(space, sweeps.Space):
        chosen = space
    else:
        chosen = sweeps.load_space(space) if space else sweeps.default_space(load_config(model))
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


def sweep(model: str, trials: int, *, space: PathLike | sweeps.Space | None = None, epochs: int | None = None,
          train_subset: int | None = None, out: PathLike = "runs/sweeps", study: str | None = None,
          storage: str | None = None, pruner: str = "median", seed: int = 0, sampler_seed: int | None = None,
          device: str | None = None, heartbeat: int = 60, data: FashionMNIST | None = None,
          data_dir: PathLike | None = None) -> sweeps.SweepResult:
    """Search ``model``'s hyperparameters with Optuna on validation (``fashionbench sweep``):
    ``trials`` in all (every worker's), each an ordinary run folder under ``out``/STUDY;
    ``best_recipe(study)`` then writes the best trial as a recipe."""
    chosen = sweep_space(model, space, epochs, train_subset)
    chosen.check(model, str(space) if isinstance(space, str | os.PathLike) else "search space")
    if storage is not None:
        sweeps.check_storage_url(storage)
    check_out_dir(out)
    name = study_name(study, model)
    fixed = [] if device is None else [{"device": device}]
    return sweeps.run_sweep(model, _data(data, data_dir), trials, out, name, storage, chosen, pruner,
                            seed, sampler_seed, fixed, heartbeat)


def best_recipe(study: str, out: PathLike = "runs/sweeps", storage: str | None = None) -> sweeps.BestResult:
    """A finished study's best trial as a recipe (``out``/STUDY/best.yaml), with
    parameter importances and plots."""
    return sweeps.best_recipe(study, out, storage)


def list_models() -> list[dict]:
    """Every architecture: parameters, forward MFLOPs per image, the reference's figure, the paper."""
    rows = []
    for name in sorted(MODELS):
        model, info = build_model(name), model_info(name)
        flops, shape = forward_flops(model)
        rows.append({"model": name, "parameters": count_parameters(model), "mflops": flops / 1e6,
                     "outputs": shape[1], "reference": info.reference, "paper": info.paper})
    return rows
