"""fashionbench's Python API: every command, callable from Python (docs/api.md).

    import fashionbench as fb

    data = fb.load_data()                                   # verified Fashion-MNIST
    run = fb.train("basic_cnn", epochs=2, train_subset=2000, data=data)
    run.summary.test_acc, run.history[-1], run.model        # what it wrote, loaded back
    fb.evaluate(run, "val", data=data)                      # {"acc": ..., "loss": ...}
    fb.report(run, data=data)                               # run.path / "report"
    fb.predict(run, ["shoe.png"])                           # top classes of your images

The command line (fashionbench.cli) parses its options and calls these functions, and
imports nothing else: the names below it needs besides (bounds, choices, the errors)
are the API's too. A function takes ``data`` (from ``load_data``) to reuse a loaded
dataset, or ``data_dir`` to say where it is; with neither it loads the default
(``$FASHIONBENCH_DATA_DIR``, else a per-user cache, downloading on first use). A run
is given as a :class:`Run` or its folder's path. Errors a caller can fix (an unknown
model, a bad key, a folder that is not a run) raise :class:`UsageError` or
``FashionbenchError`` with a one-line message.

The functions live by concern in the private modules beside this one: _run (Run, the
data, the training options), _train, _use (a finished run, its robustness), _combine (many runs),
_search (lr-find, sweep, the models), _speedrun."""

from ..config import LEAKY, RANGES, in_range, span
from ..corruptions import CACHE_ENV as CORRUPTIONS_DIR_ENV
from ..corruptions import LEVELS as SEVERITY_LEVELS
from ..corruptions import NAMES as CORRUPTIONS
from ..corruptions import check_names as check_corruptions
from ..data import DATA_DIR_ENV, MIRROR_ENV
from ..distributed import ONE_PROCESS, World, peer_lost
from ..errors import FashionbenchError, Terminated, UsageError, signal_stop, stopped
from ..inference import LoadedModel
from ..models import MODELS, check_model
from ..rundir import FinishedRun, Kind, State
from ..runs import check_name, os_cause
from ..splits import class_names
from ..tasks.export import INPUT_CONTRACT, ONNX_OPSET
from ..tasks.reproduce import BUDGETS, PROTOCOLS
from ..tasks.robustness import table as robustness_table
from ..tasks.speedrun import MAX_BUDGET_SECONDS, check_budget, check_target
from ..tasks.speedrun import describe as describe_speedrun
from ..tasks.study import safe_url
from ..torchrun import LAUNCHER_VARIABLE
from ..tracking import BACKENDS as TRACKING_BACKENDS
from ..tracking import EXPERIMENT as DEFAULT_EXPERIMENT
from ..tracking import Tracking, parse_backends
from ..version import __version__
from ._combine import ReproducePlan, ensemble, leaderboard, reproduce, reproduce_plan, specialists
from ._run import (
    TRAINING_OPTION,
    TRAINING_OPTIONS,
    PathLike,
    Run,
    TrainingOption,
    check_tracking,
    config_overrides,
    load_data,
    load_run,
    resolve_config,
)
from ._search import LRFind, best_recipe, list_models, lr_find, study_name, sweep, sweep_plan, sweep_space
from ._speedrun import resume_speedrun, speedrun, speedrun_config, speedrun_dry_run, speedrun_plan
from ._train import one_vs_all, resume, train, train_plan
from ._use import (
    MAX_BATCH,
    PREDICT_BATCH,
    Exported,
    Prediction,
    audit,
    calibrate,
    check_top_k,
    evaluate,
    export,
    image_files,
    predict,
    predictions,
    report,
    robustness,
)

__all__ = [
    # runs and the data
    "Run", "Kind", "State", "FinishedRun", "LoadedModel", "load_run", "load_data", "resolve_config", "config_overrides",
    "TrainingOption", "TRAINING_OPTIONS", "TRAINING_OPTION", "PathLike",
    # commands
    "train", "one_vs_all", "resume", "train_plan", "evaluate", "report", "predictions", "predict",
    "Prediction", "image_files", "check_top_k", "class_names", "PREDICT_BATCH", "audit", "export", "Exported",
    "calibrate",
    "robustness", "robustness_table", "check_corruptions",
    "ensemble", "specialists", "leaderboard", "reproduce", "reproduce_plan", "ReproducePlan", "speedrun",
    "speedrun_plan",
    "speedrun_config", "speedrun_dry_run", "resume_speedrun", "describe_speedrun", "lr_find", "LRFind",
    "sweep", "sweep_plan", "sweep_space", "study_name", "best_recipe", "list_models",
    # bounds, choices and names the command line shares
    "RANGES", "in_range", "span", "MODELS", "check_model", "check_name", "LEAKY", "BUDGETS", "PROTOCOLS",
    "MAX_BUDGET_SECONDS", "check_budget", "check_target", "safe_url", "INPUT_CONTRACT", "ONNX_OPSET",
    "CORRUPTIONS", "SEVERITY_LEVELS", "CORRUPTIONS_DIR_ENV", "MAX_BATCH",
    "DATA_DIR_ENV", "MIRROR_ENV", "LAUNCHER_VARIABLE", "World", "ONE_PROCESS", "peer_lost", "os_cause",
    "TRACKING_BACKENDS", "DEFAULT_EXPERIMENT", "parse_backends", "Tracking", "check_tracking",
    # errors
    "FashionbenchError", "UsageError", "Terminated", "signal_stop", "stopped", "__version__",
]
