"""fashionbench: train, evaluate and compare image classifiers on Fashion-MNIST.

The Python API (docs/api.md) is ``fashionbench.api``; its functions are importable
from here too (``fashionbench.train``, ``fashionbench.report``, ...).

It is imported eagerly, torch with it: several API functions share their name with
the module that implements them (``report``, ``predict``, ``sweep``, ...), and a
package attribute loaded on demand would be shadowed by the submodule as soon as
anything imported it; imported here, after every submodule, the names are the API's."""

from .api import (
    LRFind,
    Prediction,
    Run,
    audit,
    best_recipe,
    ensemble,
    evaluate,
    export,
    leaderboard,
    load_data,
    load_run,
    lr_find,
    models,
    one_vs_all,
    predict,
    predictions,
    report,
    reproduce,
    resolve_config,
    resume,
    resume_speedrun,
    specialists,
    speedrun,
    speedrun_plan,
    sweep,
    train,
)
from .version import __version__

__all__ = ["__version__", "Run", "Prediction", "LRFind", "load_data", "load_run", "resolve_config", "train",
           "resume", "one_vs_all", "evaluate", "predictions", "report", "ensemble", "specialists", "lr_find",
           "predict", "audit", "export", "leaderboard", "reproduce", "speedrun", "speedrun_plan",
           "resume_speedrun", "sweep", "best_recipe", "models"]
