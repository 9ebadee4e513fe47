"""What the commands' parsers share: value checks (argparse's ``type=``: a bad value is a
usage error naming the option), parent parsers of common options, and the command lines
a stopped command prints to continue. Bounds and choices come from the API, which
checks the same values when called from Python."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from .. import api
from ..api import UsageError

# Bounds of numbers that are options of one command, not config keys: far past any use.
MAX_TRIALS = 10_000          # sweep --trials: each trial is a whole training run
MAX_SPEEDRUN_SEEDS = 1_000   # speedrun --seeds N
MAX_DEADLINE = 7 * 24 * 3600  # reproduce --deadline: seconds, a week
MAX_HEARTBEAT = 24 * 3600    # sweep --heartbeat: seconds, a day
MAX_SHOWN = 10_000           # images in report --errors and audit --top grids
MAX_LR_STEPS = 100_000       # lr-find --steps


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def bounded(value: int, low: int, high: int | None) -> int:
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
    return value


def between(low: int, high: int | None):
    def check(text: str) -> int:
        return bounded(whole_number(text), low, high)
    check.__name__ = "int"  # argparse names the type in some messages
    return check


def number_in(low: float, high: float, low_included: bool = True):
    """A number in the range, which NaN and infinities never are."""
    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not api.in_range(value, low, high, low_included):
            raise argparse.ArgumentTypeError(f"must be a number in {api.span(low, high, low_included)}, got {text}")
        return value
    check.__name__ = "float"
    return check


def config_int(key: str):
    """An option that sets config ``key``, bounded as the config bounds it (RANGES)."""
    low, high, _ = api.RANGES[key]
    return between(low, high)


def config_float(key: str):
    return number_in(*api.RANGES[key])


def checked_by(check):
    """An argparse type: a number that ``check`` (raising UsageError) accepts."""
    def parse(text: str) -> float:
        try:
            return check(float(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        except UsageError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = "float"
    return parse


def device(text: str) -> str:
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def comma_list(kind, low: int | None = None, high: int | None = None):
    """Lists given to an option are comma-separated, one argument: --seeds 0,1,2
    (lists of paths are positional arguments instead); numbers between ``low`` and
    ``high`` where given."""
    def check(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError("is empty")
        try:
            values = [kind(item) for item in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, "
                                             f"got {text!r}") from None
        return values if low is None else [bounded(value, low, high) for value in values]
    check.__name__ = "list"
    return check


def folder_name(text: str) -> str:
    """--name: one folder directly under --out (the API's check_name)."""
    try:
        return api.check_name(text)
    except UsageError as e:  # argparse names the option itself
        raise argparse.ArgumentTypeError(str(e).removeprefix("--name ")) from None


def model_name(text: str) -> str:
    try:
        api.check_model(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


MODELS = ", ".join(sorted(api.MODELS))


def model_argument(p: argparse.ArgumentParser, optional: bool = True) -> None:
    p.add_argument("model", nargs="?" if optional else None, type=model_name, metavar="MODEL",
                   help=f"architecture: {MODELS}")


# -- options several commands share, as parent parsers ---------------------------------

def options(*adders) -> argparse.ArgumentParser:
    """A parent parser holding the options the ``adders`` add."""
    parent = argparse.ArgumentParser(add_help=False)
    for add in adders:
        add(parent)
    return parent


def device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device, metavar="DEVICE",
                   help="auto, cpu, cuda or cuda:N (default: auto; a finished run's own device)")


def data_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR",
                   help=f"dataset folder (default: ${api.DATA_DIR_ENV}, else a per-user cache folder)")


def out_option(default: str, what: str):
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default=default, metavar="DIR", help=f"{what} (default: {default})")
    return add


def name_option(default: str, what: str = "folder name"):
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", type=folder_name, help=f"{what} (default: {default})")
    return add


def run_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's folder")


def training_option(p: argparse.ArgumentParser, option: api.TrainingOption, help: str | None = None) -> None:
    """One of the API's training options (api.TRAINING_OPTIONS), as --its-name: the same
    name, config key, bounds and meaning in Python and on the command line."""
    flag = "--" + option.name.replace("_", "-")
    if option.choices == "device":
        p.add_argument(flag, type=device, metavar="DEVICE", help=help or option.help)
    elif option.choices:
        p.add_argument(flag, choices=option.choices, help=help or option.help)
    elif option.flag:
        p.add_argument(flag, action="store_const", const=True, help=help or option.help)
    else:
        kind = config_int(option.key) if option.type is int else config_float(option.key)
        p.add_argument(flag, type=kind, metavar=option.metavar, help=help or option.help)


def training_options(*names: str):
    """A parent-parser adder for the named training options."""
    def add(p: argparse.ArgumentParser) -> None:
        for name in names:
            training_option(p, api.TRAINING_OPTION[name])
    return add


def recipe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="recipe YAML to use instead of the model's own")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set swa.start=0.5 (repeatable)")


def track_backends(text: str) -> list[str]:
    """--track: a backend, or several comma-separated (the option repeats too)."""
    try:
        return list(api.parse_backends(text))
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--track ")) from None


def tracking_options(p: argparse.ArgumentParser) -> None:
    """Where a command's runs are logged (tracking/): those it trains, as they train; a
    finished run's later files (export, report, robustness), to that run's own. Not
    --log and --log-dir: torchrun reads every option of the command it starts that it
    knows, abbreviations too, and has --log-dir (--log is ambiguous to it), so
    ``torchrun ... -m fashionbench train --log-dir D`` would never reach us."""
    p.add_argument("--track", action="append", type=track_backends, metavar="BACKEND",
                   help=f"log to {' or '.join(api.TRACKING_BACKENDS)} (repeatable, or comma-separated: --track "
                        "tensorboard,mlflow): each run as it trains, or what this command adds to a "
                        "finished one; checked before any work starts")
    p.add_argument("--tensorboard-dir", metavar="DIR",
                   help="TensorBoard's folder, a subfolder per run (default: each run's own, RUN/tensorboard)")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow's tracking server or store, e.g. http://127.0.0.1:5000 (default: "
                        "$MLFLOW_TRACKING_URI, else MLflow's default; MLflow 3's: sqlite:///mlflow.db here)")
    p.add_argument("--experiment", metavar="NAME",
                   help=f"the MLflow experiment the runs go in (default: {api.DEFAULT_EXPERIMENT})")


def tracking(args: argparse.Namespace) -> dict:
    """The API's tracking keywords, from tracking_options' options."""
    return {"track": [name for names in args.track or () for name in names] or None,
            "tensorboard_dir": args.tensorboard_dir, "tracking_uri": args.tracking_uri, "experiment": args.experiment}


def config_overrides(args: argparse.Namespace) -> list[dict]:
    """The config overrides a command's named options and ``--set`` items make."""
    return api.config_overrides(args.set, **{name: getattr(args, name, None) for name in api.TRAINING_OPTION})


# -- how to go on after a stop ---------------------------------------------------------

def same_command(args: argparse.Namespace) -> str:
    """The command line that was run, to run again (commands that keep finished work)."""
    return shlex.join(["fashionbench", *args.argv])


def resume_command(args: argparse.Namespace, run_dir: Path, world: api.World = api.ONE_PROCESS) -> str:
    data_dir = f" --data-dir {shlex.quote(args.data_dir)}" if args.data_dir else ""
    report = " --report" if getattr(args, "report", False) else ""  # what was asked of the end, still asked
    command = f"fashionbench {args.command} --resume {shlex.quote(str(run_dir))}{data_dir}{report}"
    if not world.distributed:
        return command
    # Under torchrun: as many processes again (a checkpoint resumes at its own world size).
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
    how = (f"--nproc-per-node {local}" if local == world.size else
           f"--nnodes {world.size // local} --nproc-per-node {local} (and the same rendezvous)")
    return f"{os.environ.get(api.LAUNCHER_VARIABLE, 'torchrun')} {how} -m {command}"
