"""Run configuration: typed defaults, YAML recipes and ``key=value`` overrides.

Precedence, lowest first: the defaults (config_schema.py, with every key's choices and
range), the recipe (``recipes/<model>.yaml`` or ``--config FILE``), the named CLI
options, then ``--set key=value``. Every key and value is checked, and a mistake names
what is valid.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .config_schema import (
    CHOICES,
    LEAKY,
    MAX_EPOCHS,
    MAX_LR,
    MAX_SEED,
    RANGES,
    TRAIN_IMAGES,
    AugmentConfig,
    Config,
    DataConfig,
    EMAConfig,
    EvalConfig,
    InitConfig,
    OptimConfig,
    ScheduleConfig,
    SWAConfig,
    in_range,
    span,
)
from .errors import FashionbenchError, UsageError
from .models import check_model

# The schema's names, read from here by the rest of the package (one import for a config).
__all__ = ["CHOICES", "LEAKY", "MAX_EPOCHS", "MAX_LR", "MAX_SEED", "RANGES", "TRAIN_IMAGES", "AugmentConfig",
           "Config", "ConfigError", "DataConfig", "EMAConfig", "EvalConfig", "InitConfig", "OptimConfig", "SWAConfig",
           "ScheduleConfig",
           "all_keys", "check_device", "config_from_dict", "dump_config", "in_range", "load_config", "override",
           "parse_override", "read_yaml", "recipes_dir", "reference_recipe", "span", "swa_start_epoch", "validate"]


class ConfigError(UsageError):
    """An invalid configuration key or value: a usage error (exit status 2)."""


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
    if cfg.ema.enabled and (cfg.swa.enabled or cfg.eval.select_on == "test"):
        raise ConfigError("ema.enabled reports the weights' moving average; it does not combine with "
                          + ("swa.enabled (both average weights: set one false)" if cfg.swa.enabled
                             else "eval.select_on test (the best epoch's weights)"))
    if cfg.ema.lookahead and not cfg.ema.enabled:
        raise ConfigError("ema.lookahead sets the weights to their moving average; it needs ema.enabled true")
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
