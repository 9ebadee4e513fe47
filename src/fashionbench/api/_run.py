"""A run folder as the API gives it (``Run``), the dataset, and the training options
every command that trains takes, by the same names in Python and on the command line."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import nn

from ..config import LEAKY, Config, load_config, override, parse_override
from ..data import FashionMNIST, load_fashion_mnist
from ..errors import FashionbenchError, UsageError
from ..inference import LoadedModel, load_model
from ..models import MODELS
from ..rundir import HISTORY, MODEL, REPORT, ROBUSTNESS, SUMMARY, TRAINED, FinishedRun, Kind, RunDir, State, Summary
from ..tracking import Tracking

PathLike = str | os.PathLike


@dataclass(frozen=True)
class TrainingOption:
    """A named option of train() and friends (``epochs=3``) and of the commands that train
    (``--epochs 3``): declared once, here; the command line's parsers are made from it."""
    name: str                 # the keyword; --name-with-dashes on the command line
    key: str                  # the config key it sets
    help: str | None = None
    type: type = int          # int or float: bounded by config.RANGES[key]
    metavar: str | None = None
    flag: bool = False        # a switch: given means True
    choices: tuple[str, ...] | str | None = None  # "device": auto, cpu, cuda or cuda:N


TRAINING_OPTIONS = (
    TrainingOption("epochs", "epochs"),
    TrainingOption("batch_size", "batch_size"),
    TrainingOption("lr", "optim.lr", "peak learning rate (optim.lr)", float),
    TrainingOption("seed", "seed"),
    TrainingOption("device", "device", "auto, cpu, cuda or cuda:N (default: auto; a finished run's own device)",
                   str, choices="device"),
    TrainingOption("train_subset", "data.train_subset", "train on a stratified subset of N images (for quick runs)",
                   metavar="N"),
    TrainingOption("compile", "compile", "torch.compile the model (slower start, often faster steps)", flag=True),
    TrainingOption("head", "head", "softmax (default), or ova: ten sigmoid outputs trained with binary "
                   "cross-entropy (one-vs-all at the cost of one network)", str, choices=("softmax", "ova")),
)
TRAINING_OPTION = {option.name: option for option in TRAINING_OPTIONS}


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

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    @property
    def history_path(self) -> Path:
        return self.path / HISTORY

    @property
    def report_path(self) -> Path:
        """The report of the test split (``report``'s default folder)."""
        return self.path / REPORT / "report.html"

    @property
    def robustness_path(self) -> Path:
        """Its accuracy under corruptions (``robustness``'s record)."""
        return self.path / ROBUSTNESS

    @property
    def members(self) -> list[Path]:
        """A one-vs-all run's member folders, class 0 first; [] for any other kind."""
        if self.kind is not Kind.ONE_VS_ALL:
            return []
        return [self.folder.member(c).path for c in range(self.config.num_classes)]

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


def dataset(data: FashionMNIST | None, data_dir: PathLike | None) -> FashionMNIST:
    """``data`` if the caller loaded it, else the dataset in ``data_dir`` (or the default)."""
    return data if data is not None else load_fashion_mnist(data_dir)


def config_overrides(overrides: dict[str, Any] | Sequence[str] | None = None, **options) -> list[dict]:
    """Overrides as load_config takes them: named options (``epochs=3``) first, then
    ``overrides``, a mapping of dotted keys (``{"swa.start": 0.5}``) or a list of
    "KEY=VALUE" texts (or of overrides already parsed)."""
    unknown = sorted(set(options) - set(TRAINING_OPTION))
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)}: the named ones are "
                         f"{', '.join(TRAINING_OPTION)}; set any other config key through overrides")
    items = [override(TRAINING_OPTION[name].key, value) for name, value in options.items() if value is not None]
    if isinstance(overrides, dict):
        return items + [override(key, value) for key, value in overrides.items()]
    return items + [parse_override(item) if isinstance(item, str) else item for item in overrides or ()]


def check_tracking(track: str | Sequence[str] | None = None, tensorboard_dir: PathLike | None = None,
                   tracking_uri: str | None = None, experiment: str | None = None) -> None:
    """The tracking options (``track`` and its settings) checked as options alone, for a
    dry run: nothing imported, no server asked (the command itself checks those)."""
    Tracking.of(track, tensorboard_dir, tracking_uri, experiment, check=False)


def resolve_config(model: str | None = None, config_file: PathLike | None = None,
                   overrides: dict[str, Any] | Sequence[str] | None = None, **options) -> Config:
    """The config a run of ``model`` would train with: its recipe (or ``config_file``),
    then the overrides; validated."""
    if model is None and config_file is None:
        raise UsageError(f"name a MODEL to train (or a config file that names one): {', '.join(sorted(MODELS))}")
    return load_config(model, config_file, config_overrides(overrides, **options))
