"""A sweep's search space: the config keys it searches (``Param``: a range or choices)
and what every trial shares (the budget), read from YAML or made around a recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..config import Config, ConfigError, load_config, override, read_yaml
from ..errors import UsageError

if TYPE_CHECKING:
    import optuna


@dataclass
class Param:
    """One searched config key: a float or int range (log-uniform with ``log``), or choices."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    choices: list | None = None

    @classmethod
    def parse(cls, key: str, spec: Any, where: str) -> Param:
        if not isinstance(spec, dict):
            raise UsageError(f"{where}: params.{key} must be a mapping (low, high[, log, int] "
                             f"or choices), got {spec!r}")
        unknown = set(spec) - {"low", "high", "log", "int", "choices"}
        if unknown:
            raise UsageError(f"{where}: params.{key}: unknown field(s) {', '.join(sorted(unknown))}; "
                             "use low, high, log, int or choices")
        if "choices" in spec:
            if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
                raise UsageError(f"{where}: params.{key}: choices must be a non-empty list, alone")
            return cls(choices=spec["choices"])
        try:
            low, high = float(spec["low"]), float(spec["high"])
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{where}: params.{key} needs numbers low and high, got {spec!r}") from None
        param = cls(low, high, bool(spec.get("log", False)), bool(spec.get("int", False)))
        if not low < high:
            raise UsageError(f"{where}: params.{key}: low ({low:g}) must be below high ({high:g})")
        if param.log and low <= 0:
            raise UsageError(f"{where}: params.{key}: a log range needs low > 0, got {low:g}")
        if param.int:
            param.low, param.high = int(low), int(high)
        return param

    def to_dict(self) -> dict:
        if self.choices is not None:
            return {"choices": self.choices}
        return {"low": self.low, "high": self.high, **({"log": True} if self.log else {}),
                **({"int": True} if self.int else {})}

    def suggest(self, trial: optuna.Trial, key: str) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(key, self.choices)
        if self.int:
            return trial.suggest_int(key, self.low, self.high, log=self.log)
        return trial.suggest_float(key, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def corners(self) -> list:
        return list(self.choices) if self.choices is not None else [self.low, self.high]


@dataclass
class Space:
    """What a study searches (``params``: config key -> Param) and what every trial
    shares (``budget``: config key -> value, e.g. epochs and data.train_subset)."""
    params: dict[str, Param]
    budget: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"budget": dict(self.budget), "params": {k: p.to_dict() for k, p in self.params.items()}}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def config(self, model: str, values: dict[str, Any], fixed: list[dict] | None = None) -> Config:
        """The config of one trial: MODEL's recipe <- budget <- ``fixed`` <- ``values``."""
        return load_config(model, None, [*(override(k, v) for k, v in self.budget.items()), *(fixed or []),
                                         *(override(k, v) for k, v in values.items())])

    def check(self, model: str, where: str) -> None:
        """Every key is a config key and every end of every range a valid value, said now
        rather than by a trial that fails an hour in."""
        try:
            self.config(model, {})
        except ConfigError as e:
            raise UsageError(f"{where}: budget: {e}") from None
        for key, param in self.params.items():
            for value in param.corners():
                try:
                    self.config(model, {key: value})
                except ConfigError as e:
                    raise UsageError(f"{where}: params.{key} = {value!r}: {str(e).split('; valid keys')[0]}") from None


def parse_space(data: Any, where: str) -> Space:
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict) or not data["params"]:
        raise UsageError(f"{where}: a search space is a mapping with params: (config key -> range) "
                         "and optionally budget: (config key -> value); see fashionbench sweep --help")
    unknown = set(data) - {"params", "budget"}
    if unknown:
        raise UsageError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}; use params and budget")
    budget = data.get("budget") or {}
    if not isinstance(budget, dict):
        raise UsageError(f"{where}: budget must be a mapping of config keys to values")
    return Space({str(k): Param.parse(str(k), v, where) for k, v in data["params"].items()}, dict(budget))


def load_space(path: str | Path) -> Space:
    return parse_space(read_yaml(path), str(path))


def default_space(cfg: Config) -> Space:
    """The search space around a recipe: its peak and base LR, weight decay and SWA LR
    over log ranges centred on the recipe's own values, label smoothing and the three
    augmentations over ranges that include none of each. Keys the recipe does not use
    (base_lr without a cyclic schedule, swa.lr where SWA keeps the schedule going) are
    left out. The budget is the recipe's."""
    lr = cfg.optim.lr
    params = {"optim.lr": Param(lr / 4, lr * 4, log=True)}
    if cfg.schedule.name == "cyclic":
        # Below the lowest peak, so that every pair of draws is a valid cycle.
        base = cfg.schedule.base_lr
        params["schedule.base_lr"] = Param(min(base / 10, lr / 40), min(base * 10, lr / 4 * 0.9), log=True)
    if cfg.optim.weight_decay > 0:
        wd = cfg.optim.weight_decay
        params["optim.weight_decay"] = Param(wd / 10, wd * 10, log=True)
    params |= {"label_smoothing": Param(0.0, 0.2), "augment.flip": Param(0.0, 0.5),
               "augment.zoom": Param(0.0, 0.15), "augment.erase": Param(0.0, 0.5)}
    if cfg.swa.enabled and cfg.swa.lr is not None:
        params["swa.lr"] = Param(cfg.swa.lr / 5, cfg.swa.lr * 5, log=True)
    return Space(params, {"epochs": cfg.epochs, "data.train_subset": cfg.data.train_subset})


def recipe_values(cfg: Config, space: Space) -> dict[str, Any] | None:
    """The recipe's own values of the searched keys, if the space holds them all: the
    study's first trial, the hand-tuned recipe at the sweep's budget to beat."""
    values = {}
    for key, param in space.params.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value is None or not param.contains(value):
            return None
        values[key] = value
    return values


def describe(param: Param) -> str:
    if param.choices is not None:
        return "one of " + ", ".join(map(str, param.choices))
    return f"[{param.low:g}, {param.high:g}]{' log' if param.log else ''}{' int' if param.int else ''}"
