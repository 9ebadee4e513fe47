"""Run configuration: typed defaults, YAML recipes and ``key=value`` overrides.

Precedence, lowest first: the defaults below, the recipe (``recipes/<model>.yaml``
or ``--config FILE``), the named CLI options, then ``--set key=value``. Every key
and value is checked, and a mistake names what is valid.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import FashionbenchError, UsageError
from .models import check_model


class ConfigError(UsageError):
    """An invalid configuration key or value: a usage error (exit status 2)."""


@dataclass
class OptimConfig:
    name: str = "sgd"            # sgd (Nesterov momentum) | adamw
    lr: float = 0.1              # peak learning rate
    momentum: float = 0.9        # SGD momentum; AdamW beta1
    nesterov: bool = True
    weight_decay: float = 5e-4


@dataclass
class ScheduleConfig:
    name: str = "cyclic"         # cyclic | onecycle | constant | inverse_time; all stepped per batch
    mode: str = "triangular"     # cyclic: triangular | triangular2 | exp_range
    base_lr: float = 0.005       # cyclic: the low end of each cycle
    cycle_epochs: float = 2.0    # cyclic: one whole cycle (up and down), in epochs
    gamma: float = 1.0           # cyclic exp_range: amplitude decay per step
    pct_start: float = 0.25      # onecycle: share of steps spent rising
    # inverse_time: the LR after t steps is optim.lr / (1 + decay * t), what Keras' legacy
    # optimizers did with their ``decay`` argument (the reference protocol's schedule).
    decay: float = 0.0


@dataclass
class SWAConfig:
    enabled: bool = True
    # When averaging starts, relative to the run as Lightning's swa_epoch_start is: a
    # fraction of the epochs (0 < start < 1), or an epoch number (a whole number >= 1).
    # Snapshots are averaged from the end of that (1-based) epoch on: at each cycle's
    # end with the cyclic schedule (where the LR is lowest), else every epoch. Recipes
    # use the fraction, so that --epochs N scales the averaging window with the run.
    start: float = 0.67
    # Written by fashionbench, never set by hand: the epoch ``start`` resolved to at
    # this run's ``epochs``, so that a run's config says when averaging began.
    start_epoch: int | None = None
    # If set, the averaging phase of Izmailov et al. 2018: after start_epoch the LR
    # leaves the schedule, moves to this value over one epoch (torch's SWALR, cosine)
    # and stays there, and snapshots are averaged at every epoch's end.
    lr: float | None = None


@dataclass
class AugmentConfig:
    flip: float = 0.1            # probability of a horizontal flip
    zoom: float = 0.05           # zoom factor drawn from [1 - zoom, 1 + zoom]
    translate: int = 0           # maximum shift in pixels (pad and crop)
    erase: float = 0.0           # probability of random erasing


@dataclass
class EvalConfig:
    # false: the final evaluation sees the validation split only, no test figure anywhere
    # in the run (a sweep's trials: a search must not see the test set).
    test: bool = True
    # Flip test-time augmentation: the model's logits on each image and on its mirror
    # image, averaged; in every evaluation of the run and in the model it serves
    # (predict, export), so a figure and the model that earned it never part.
    tta: bool = False
    # Which split picks the reported model. "val": the run's final model (SWA where on),
    # never chosen by a test figure: every recipe but the reference protocol's. "test": the
    # LEAKY mode of recipes/reference/ alone, which reruns the reference project's own
    # protocol: the test split evaluated after every epoch and the best epoch's model
    # reported, as a Keras ModelCheckpoint watching test accuracy does. Every output of
    # such a run says "selected on test"; it measures the protocol, not the network.
    select_on: str = "val"


@dataclass
class DataConfig:
    val_size: int = 5000         # carved from the 60,000 training images, stratified
    split_seed: int = 0          # fixed across run seeds so runs share one validation set
    train_subset: int | None = None  # train on a stratified subset of this size
    test_subset: int | None = None   # evaluate on a stratified test subset (smoke runs only)
    positive_class: int | None = None  # binary task: this class against the rest (one-vs-all) ...
    negative_class: int | None = None  # ... or against this class only, on their images (specialists)


@dataclass
class Config:
    model: str = "basic_cnn"
    epochs: int = 30
    batch_size: int = 128
    seed: int = 0
    label_smoothing: float = 0.0
    device: str = "auto"         # auto | cpu | cuda | cuda:N
    precision: str = "auto"      # auto (bf16 where the hardware has it) | bf16 | fp32
    channels_last: bool = True
    compile: bool = False        # torch.compile the training forward/backward
    head: str = "softmax"        # softmax | ova: ten sigmoid outputs, binary cross-entropy
    dropout: bool = True         # false: every Dropout layer off (exact comparisons, e.g. of world sizes)
    sync_bn: bool = True         # under torchrun: BatchNorm statistics of the global batch, not each shard's
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    swa: SWAConfig = field(default_factory=SWAConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def num_classes(self) -> int:
        return 10 if self.data.positive_class is None else 2


# The mark every output of an eval.select_on test run carries (summary, report, tables).
LEAKY = "selected on test"

CHOICES = {
    "optim.name": ("sgd", "adamw"),
    "schedule.name": ("cyclic", "onecycle", "constant", "inverse_time"),
    "schedule.mode": ("triangular", "triangular2", "exp_range"),
    "precision": ("auto", "bf16", "fp32"),
    "head": ("softmax", "ova"),
    "eval.select_on": ("val", "test"),
}
# Upper bounds a user can read, on every number a run is given: far past any run that
# makes sense, and low enough that what is derived from them (steps, snapshot epochs,
# seeds of generators, the optimizer's float32 arithmetic) cannot overflow.
MAX_EPOCHS = 100_000
TRAIN_IMAGES = 60_000      # Fashion-MNIST's training file: no batch or subset is larger
MAX_SEED = 2**32 - 1       # numpy's RandomState (the validation split, Optuna's sampler) takes no more
MAX_LR = 10_000            # a loss diverges within steps far below this; 1e300 overflows the optimizer
# key: (lowest, highest, lowest included); the highest is included. Every number of a
# Config has a range here (tests/test_bounds.py checks), so NaN and infinities, which
# no range holds, are refused wherever a number comes from.
RANGES = {
    "epochs": (1, MAX_EPOCHS, True), "batch_size": (1, TRAIN_IMAGES, True),
    "seed": (0, MAX_SEED, True),
    "label_smoothing": (0, 1, True),
    "optim.lr": (0, MAX_LR, False), "optim.momentum": (0, 1, True),
    "optim.weight_decay": (0, 1, True),
    "schedule.base_lr": (0, MAX_LR, False), "schedule.cycle_epochs": (0, MAX_EPOCHS, False),
    # onecycle: torch's OneCycleLR divides by zero at pct_start 1 (no steps left to fall)
    "schedule.gamma": (0, 1, False), "schedule.pct_start": (0, 0.99, False),
    "schedule.decay": (0, 1, True),
    "swa.start": (0, MAX_EPOCHS, False), "swa.lr": (0, MAX_LR, False),
    "augment.flip": (0, 1, True), "augment.zoom": (0, 0.99, True),
    "augment.translate": (0, 13, True), "augment.erase": (0, 1, True),
    "data.val_size": (1, 59_990, True), "data.split_seed": (0, MAX_SEED, True),
    "data.train_subset": (10, TRAIN_IMAGES, True),
    "data.test_subset": (10, 10_000, True), "data.positive_class": (0, 9, True),
    "data.negative_class": (0, 9, True),
}


def span(low: float, high: float, low_included: bool = True) -> str:
    """'[1, 100000]', or '(0, 10000]' where the lowest value is not allowed."""
    return f"{'[' if low_included else '('}{low}, {high}]"


def in_range(value: float, low: float, high: float, low_included: bool = True) -> bool:
    """Is ``value`` within the range? Written so that NaN, which every comparison
    answers False, is not."""
    return (low <= value if low_included else low < value) and value <= high


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        sub = typing.get_type_hints(cls)[f.name]
        keys += all_keys(sub, f"{prefix}{f.name}.") if dataclasses.is_dataclass(sub) else [prefix + f.name]
    return keys


def _coerce(value: Any, hint: Any, key: str) -> Any:
    args = typing.get_args(hint)
    if value is None or value == "null":
        if type(None) in args:
            return None
        raise ConfigError(f"{key} cannot be empty")
    kind = next(a for a in args if a is not type(None)) if args else hint
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return value  # an int stays one: swa.start=20 is an epoch, and is written back as 20
    if kind is float and not isinstance(value, bool):
        try:
            return float(value)  # also takes "1e-3", which YAML 1.1 reads as a string
        except (TypeError, ValueError):
            pass
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{key} must be {kind.__name__}, got {value!r}")


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(
                f"unknown config key '{prefix}{key}'; valid keys: {', '.join(all_keys())}")
        sub = hints[key]
        kwargs[key] = (_build(sub, value, f"{prefix}{key}.") if dataclasses.is_dataclass(sub)
                       else _coerce(value, sub, prefix + key))
    return cls(**kwargs)


def _lookup(cfg: Config, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: Config) -> Config:
    check_model(cfg.model)
    for key, options in CHOICES.items():
        if _lookup(cfg, key) not in options:
            raise ConfigError(f"{key} must be one of {', '.join(options)}, got {_lookup(cfg, key)!r}")
    for key, (low, high, low_included) in RANGES.items():
        value = _lookup(cfg, key)
        if value is not None and not in_range(value, low, high, low_included):
            raise ConfigError(f"{key} must be in {span(low, high, low_included)}, got {value}")
    if cfg.optim.name == "adamw" and cfg.optim.momentum >= 1:
        raise ConfigError(f"optim.momentum is AdamW's beta1 and must be below 1, got {cfg.optim.momentum}")
    check_device(cfg.device)
    if cfg.head == "ova" and cfg.data.positive_class is not None:
        raise ConfigError("head=ova is the one-network form of one-vs-all; "
                          "it does not combine with data.positive_class")
    negative, positive = cfg.data.negative_class, cfg.data.positive_class
    if negative is not None and (positive is None or positive == negative):
        raise ConfigError("data.negative_class needs a different data.positive_class")
    if cfg.eval.select_on == "test" and not cfg.eval.test:
        raise ConfigError("eval.select_on test picks the model by its test accuracy; it needs eval.test true")
    if cfg.eval.select_on == "test" and cfg.swa.enabled:
        raise ConfigError("eval.select_on test reports the best epoch's model on the test set, not an average; "
                          "set swa.enabled false")
    if cfg.schedule.name == "cyclic" and cfg.schedule.base_lr >= cfg.optim.lr:
        raise ConfigError(f"schedule.base_lr ({cfg.schedule.base_lr}) must be below optim.lr ({cfg.optim.lr})")
    # A new SWAConfig, not an edit: configs made with dataclasses.replace share it.
    cfg.swa = dataclasses.replace(cfg.swa, start_epoch=swa_start_epoch(cfg.swa.start, cfg.epochs))
    return cfg


def check_device(device: str) -> str:
    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise ConfigError(f"device must be one of auto, cpu, cuda, cuda:N, got {device!r}")
    return device


def swa_start_epoch(start: float, epochs: int) -> int:
    """The (1-based) epoch from whose end SWA averages: ``start`` itself where it is an
    epoch number, else that fraction of ``epochs``, rounded half up (0.67 of 30 is 20,
    of 60 is 40), and never before the first epoch. May exceed ``epochs``: the engine
    then trains without SWA, with a warning."""
    if start >= 1:
        if start != int(start):
            raise ConfigError(f"swa.start must be a fraction of the epochs (0 < start < 1) or a "
                              f"whole epoch number, got {start}")
        return int(start)
    return max(1, math.floor(start * epochs + 0.5))


def _deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(item: str) -> dict:
    """``a.b=value`` -> {"a": {"b": value}}; the value is read as YAML (numbers, true, null)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return override(key.strip(), value)


def override(key: str, value: Any) -> dict:
    """``("a.b", value)`` -> {"a": {"b": value}}, to merge over a config."""
    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return nested


def read_yaml(path: str | Path) -> dict:
    """A YAML file of config keys. A file that cannot be read as text is a
    FashionbenchError (exit 1, as any unreadable file); text that is no mapping of keys
    (invalid YAML, empty, a list) is a ConfigError, as a bad key in it is: a usage error
    for a --config, and a run folder's (rundir.RunDir.config) says it is damaged. An empty file
    is never taken as "all defaults", which would silently replace a recipe."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise FashionbenchError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise FashionbenchError(f"{path}: not a text file (a YAML config expected)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        raise ConfigError(f"{path}: is empty (a YAML mapping of config keys expected)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, not a {type(data).__name__}")
    return data


def recipes_dir() -> Path:
    """Recipes ship inside the wheel; in a source checkout they sit at the repo root."""
    packaged = Path(str(resources.files("fashionbench"))) / "recipes"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "recipes"


def reference_recipe(model: str) -> Path | None:
    """recipes/reference/MODEL.yaml, the reference project's own protocol for ``model``
    (eval.select_on test), where there is one."""
    path = recipes_dir() / "reference" / f"{model}.yaml"
    return path if path.exists() else None


def load_config(model: str | None = None, config_file: str | Path | None = None,
                overrides: list[dict] | None = None) -> Config:
    """Defaults <- recipe (``config_file`` or the model's own) <- overrides."""
    merged = Config().to_dict()
    if config_file is None and model is not None:
        recipe = recipes_dir() / f"{model}.yaml"
        config_file = recipe if recipe.exists() else None
    if config_file is not None:
        merged = _deep_merge(merged, _written_start(_retired(read_yaml(config_file))))
    if model is not None:
        merged["model"] = model
    for override in overrides or []:
        if "start_epoch" in (override.get("swa") or {}):
            raise ConfigError("swa.start_epoch is written by fashionbench; set swa.start instead: "
                              "an epoch number (e.g. 20) or a fraction of the epochs (e.g. 0.67)")
        merged = _deep_merge(merged, override)
    return validate(_build(Config, merged))


# Keys that configs once had and fashionbench no longer reads, so that a run folder
# written then still loads. one_vs_all: ten binary networks are a command now.
RETIRED = ("one_vs_all",)


def _retired(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in RETIRED}


def _written_start(data: dict) -> dict:
    """A config file's SWA start as an input: ``start_epoch`` is what ``start`` resolved
    to when the file was written, so it is recomputed (the epochs may be overridden);
    a file from before ``swa.start`` existed gives its ``start_epoch`` as the start."""
    swa = data.get("swa")
    if not isinstance(swa, dict) or "start_epoch" not in swa:
        return data
    swa = dict(swa)
    written = swa.pop("start_epoch")
    if "start" not in swa and written is not None:
        swa["start"] = written
    return {**data, "swa": swa}


def config_from_dict(data: dict) -> Config:
    """A config file's contents (a run's config), of any fashionbench version so far."""
    return validate(_build(Config, _written_start(_retired(data))))


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
