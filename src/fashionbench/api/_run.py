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

from .. import runs
from ..config import LEAKY, Config, load_config, override, parse_override
from ..data import FashionMNIST, load_fashion_mnist
from ..errors import FashionbenchError, UsageError
from ..inference import LoadedModel, load_model
from ..models import MODELS
from ..runs import read_summary, run_config

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
    """A run folder: a training run, one-vs-all, an ensemble or specialists. What it
    holds is read from disk when first asked for, so a Run of an unfinished folder
    still gives its ``config`` and ``history``."""

    def __init__(self, path: PathLike, summary: runs.Summary | None = None):
        self.path = Path(path)
        if summary is not None:
            self.__dict__["summary"] = summary  # cached_property's slot: no second read

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

    @cached_property
    def config(self) -> Config:
        """The resolved config the run trained with (config.yaml)."""
        return run_config(self.path)

    @cached_property
    def summary(self) -> runs.Summary:
        """summary.json: accuracies per weights and split, timings, environment."""
        return read_summary(self.path)

    @property
    def history(self) -> list[dict]:
        """One dict per finished epoch (metrics.jsonl): losses, accuracies, LR, SWA
        snapshots, seconds; [] for a kind without epochs (an ensemble)."""
        return runs.read_history(self.path)

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def model_path(self) -> Path:
        return self.path / "model.pt"

    @property
    def history_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def members(self) -> list[Path]:
        """A one-vs-all run's member folders, class 0 first; [] for any other kind."""
        return sorted(self.path.glob("class-*"), key=lambda p: int(p.name.removeprefix("class-")))

    @cached_property
    def model(self) -> nn.Module:
        """The final model (SWA's where the recipe averages), in eval mode, on the run's device."""
        return self.load().model

    def load(self, device: str | None = None) -> LoadedModel:
        """The final model with what predicting needs (config, device, precision)."""
        return load_model(self.path, device)


def as_path(run: Run | PathLike) -> Path:
    return run.path if isinstance(run, Run) else Path(run)


def load_run(path: PathLike) -> Run:
    """A run folder, checked to be one (its config.yaml readable)."""
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


def resolve_config(model: str | None = None, config_file: PathLike | None = None,
                   overrides: dict[str, Any] | Sequence[str] | None = None, **options) -> Config:
    """The config a run of ``model`` would train with: its recipe (or ``config_file``),
    then the overrides; validated."""
    if model is None and config_file is None:
        raise UsageError(f"name a MODEL to train (or a config file that names one): {', '.join(sorted(MODELS))}")
    return load_config(model, config_file, config_overrides(overrides, **options))
