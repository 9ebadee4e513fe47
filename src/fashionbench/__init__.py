"""fashionbench: train, evaluate and compare image classifiers on Fashion-MNIST.

The Python API (docs/api.md) is ``fashionbench.api``; its functions are importable
from here too (``fashionbench.train``, ``fashionbench.load_run``, ...). They are
imported on first use, so ``import fashionbench`` itself stays cheap: no torch until
a function needs it."""

from .version import __version__

# What ``from fashionbench import ...`` offers: the API's public names.
__all__ = ["__version__", "Run", "Prediction", "LRFind", "load_data", "load_run", "resolve_config", "train", "resume",
           "one_vs_all", "evaluate", "predictions", "report", "ensemble", "specialists", "lr_find", "predict", "audit",
           "export", "leaderboard", "reproduce", "speedrun", "sweep", "best_recipe", "models"]


def __getattr__(name: str):
    # PEP 562: the API module (and torch with it) loads when one of its names is first asked for.
    if name in __all__:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'fashionbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
