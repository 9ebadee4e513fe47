"""fashionbench: train, evaluate and compare image classifiers on Fashion-MNIST.

The Python API (docs/api.md) is ``fashionbench.api``; its functions are importable
from here too (``fashionbench.train``, ``fashionbench.report``, ...), loaded on first
use: ``import fashionbench`` alone does not import torch. (No module shares a name with
an API function: the commands' modules are ``fashionbench.tasks.*``.)"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

__all__ = ["__version__", "Run", "Kind", "State", "Prediction", "LRFind", "load_data", "load_run",
           "resolve_config", "train", "train_plan", "resume", "one_vs_all", "evaluate", "predictions", "report",
           "ensemble", "specialists", "lr_find", "predict", "image_files", "audit", "export", "calibrate",
           "leaderboard",
           "reproduce", "reproduce_plan", "speedrun", "speedrun_plan", "speedrun_dry_run", "resume_speedrun",
           "sweep", "sweep_plan", "best_recipe", "list_models", "robustness"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module(".api", __name__), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
