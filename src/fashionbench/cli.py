"""The ``fashionbench`` command line."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from . import api, distributed
from .config import LEAKY, RANGES, in_range, span
from .data import DATA_DIR_ENV, MIRROR_ENV
from .distributed import ONE_PROCESS, World
from .errors import FashionbenchError, Terminated, UsageError, signal_stop, stopped
from .models import MODELS, check_model
from .plan import run_plan
from .runs import check_name, check_out_dir, new_run_dir, os_cause
from .tasks.export import export_cli
from .tasks.lr_find import LRFinderResult
from .tasks.one_vs_all import one_vs_all_plan
from .tasks.predict import predict_cli
from .tasks.reproduce import BUDGETS, PROTOCOLS, default_models, describe_outcome, describe_plan, reproduce_plan
from .tasks.speedrun import MAX_BUDGET_SECONDS, TIMED_STEPS, check_budget, check_target
from .tasks.speedrun import describe as describe_speedrun
from .tasks.sweep import safe_url, sweep_plan
from .torchrun import LAUNCHER_VARIABLE
from .version import __version__

# -- value checks (argparse's type=): a bad value is a usage error naming the option ----

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
        if not in_range(value, low, high, low_included):
            raise argparse.ArgumentTypeError(f"must be a number in {span(low, high, low_included)}, got {text}")
        return value
    check.__name__ = "float"
    return check


def config_int(key: str):
    """An option that sets config ``key``, bounded as the config bounds it (RANGES)."""
    low, high, _ = RANGES[key]
    return between(low, high)


def config_float(key: str):
    return number_in(*RANGES[key])


# Bounds of numbers that are options of one command, not config keys: far past any use.
MAX_TRIALS = 10_000          # sweep --trials: each trial is a whole training run
MAX_SPEEDRUN_SEEDS = 1_000   # speedrun --seeds N
MAX_DEADLINE = 7 * 24 * 3600  # reproduce --deadline: seconds, a week
MAX_HEARTBEAT = 24 * 3600    # sweep --heartbeat: seconds, a day
MAX_SHOWN = 10_000           # images in report --errors and audit --top grids
MAX_LR_STEPS = 100_000       # lr-find --steps


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
    """--name: one folder directly under --out (runs.check_name)."""
    try:
        return check_name(text)
    except UsageError as e:  # argparse names the option itself
        raise argparse.ArgumentTypeError(str(e).removeprefix("--name ")) from None


def model_name(text: str) -> str:
    try:
        check_model(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in one line (the usage of a command with many
    options is a screenful that buries the error) and where to read more."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
                   help=f"dataset folder (default: ${DATA_DIR_ENV}, else a per-user cache folder)")


def out_option(default: str, what: str):
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default=default, metavar="DIR", help=f"{what} (default: {default})")
    return add


def run_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's folder")


def recipe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="recipe YAML to use instead of the model's own")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set swa.start=0.5 (repeatable)")
    p.add_argument("--batch-size", type=config_int("batch_size"))
    p.add_argument("--seed", type=config_int("seed"))


def training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=config_int("epochs"))
    p.add_argument("--lr", type=config_float("optim.lr"), help="peak learning rate (optim.lr)")
    p.add_argument("--train-subset", type=config_int("data.train_subset"), metavar="N",
                   help="train on a stratified subset of N images (for quick runs)")
    p.add_argument("--compile", action="store_const", const=True,
                   help="torch.compile the model (slower start, often faster steps)")
    p.add_argument("--name", type=folder_name, help="run folder name (default: MODEL-YYYYmmdd-HHMMSS)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve and validate the config, print the plan (parameters, steps, SWA "
                        "snapshots, run folder), write nothing")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="fashionbench",
        description="Train, evaluate and compare image classifiers on Fashion-MNIST.",
        epilog=f"Data: ${DATA_DIR_ENV} sets the dataset folder; ${MIRROR_ENV} adds download "
               "mirrors (base URLs, file:// too), tried before the built-in ones. Lists: options "
               "take comma-separated values (--seeds 0,1,2), paths are listed as arguments.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    device_data = options(device_option, data_dir_option)
    finished_run = options(run_dir_argument, device_option, data_dir_option)
    training = options(recipe_options, training_options, device_option,
                       out_option("runs", "where run folders go"), data_dir_option)
    models = ", ".join(sorted(MODELS))

    t = sub.add_parser("train", parents=[training], help="train a model from its recipe",
                       description="Train MODEL with recipes/MODEL.yaml (or --config), "
                                   "overridden by the options below.")
    t.add_argument("model", nargs="?", type=model_name, metavar="MODEL", help=f"architecture: {models}")
    t.add_argument("--head", choices=("softmax", "ova"),
                   help="softmax (default), or ova: ten sigmoid outputs trained with binary "
                        "cross-entropy (one-vs-all at the cost of one network)")
    t.add_argument("--report", action="store_true",
                   help="write RUN_DIR/report (test split) when training ends")
    t.set_defaults(func=cmd_train)

    o = sub.add_parser("one-vs-all", parents=[training],
                       help="train ten binary networks, one per class, and combine them",
                       description="Train ten binary networks of MODEL, one per class against the "
                                   "rest (RUN_DIR/class-C, each an ordinary run with MODEL's recipe "
                                   "on class-balanced batches), calibrate each on the validation "
                                   "split (Platt scaling) and combine them into one ten-class "
                                   "model; writes RUN_DIR/model.pt, summary.json and report/. "
                                   "Finished members are kept and an interrupted one resumed "
                                   "(--resume RUN_DIR).")
    o.add_argument("model", nargs="?", type=model_name, metavar="MODEL", help=f"architecture: {models}")
    o.set_defaults(func=cmd_one_vs_all)

    e = sub.add_parser("evaluate", parents=[finished_run], help="evaluate a finished run's model",
                       description="Accuracy and loss of RUN_DIR/model.pt on one split.")
    e.add_argument("--split", choices=("val", "test"), default="val",
                   help="val (default) or test; the test set is for final reporting only")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("reproduce", parents=[device_data],
                       help="train the reference table's models over seeds, write results/table.md",
                       description="Train each model with its recipe for each seed into "
                                   "DIR/runs/MODEL-sSEED (finished runs are kept, interrupted "
                                   "ones resumed), then write DIR/table.md and DIR/table.csv.")
    r.add_argument("--models", type=comma_list(model_name), metavar="A,B,...",
                   help="models to train (default: all eight of the reference table; under "
                        "--protocol reference, those it has a recipe for)")
    r.add_argument("--seeds", type=comma_list(int, *RANGES["seed"][:2]), default=[0, 1, 2], metavar="S,S,...",
                   help="seeds (default: 0,1,2)")
    r.add_argument("--budget", choices=sorted(BUDGETS), default="full",
                   help="full: each recipe as written (default); smoke: 40 steps of 8 images "
                        "per model, to check the machinery")
    r.add_argument("--protocol", choices=PROTOCOLS, default="ours",
                   help="ours: each model's recipe, chosen on validation (default); reference: the "
                        "reference project's own protocol, rerun (recipes/reference/MODEL.yaml: its "
                        f"settings, the best epoch on the test set, marked '{LEAKY}'), with "
                        "DIR/protocol.md; for basic_cnn and mini_vgg")
    out_option("results", "output folder")(r)
    r.add_argument("--deadline", type=number_in(0, MAX_DEADLINE, False), metavar="SECONDS",
                   help="end within SECONDS: start only runs whose measured cost fits, stop one that "
                        "falls behind after an epoch (checkpoint kept), exit 0 saying what is finished, "
                        "partial and not started, and how to continue")
    r.add_argument("--costs", metavar="FILE",
                   help="with --deadline: the measured costs (seconds per epoch per model and device) "
                        "to plan from, updated after every epoch (default: DIR/costs.json)")
    r.add_argument("--compile", action="store_true",
                   help="torch.compile each run's training step (a setting, not part of the recipe)")
    r.add_argument("--dry-run", action="store_true",
                   help="list every run it would train, resume or keep, and check their configs; "
                        "write nothing")
    r.set_defaults(func=cmd_reproduce)

    sr = sub.add_parser("speedrun", parents=[device_data],
                        help="time-to-accuracy: the speedrun recipe on several seeds, timed",
                        description="Train recipes/speedrun_net.yaml from scratch once per seed into "
                                    "OUT/NAME/seed-S and write OUT/NAME/speedrun.json: test accuracy "
                                    "mean ± std over the seeds and the median time from the first "
                                    "training step to the final model. Loading the data, a warm-up "
                                    "on a throwaway model and the validation passes between epochs "
                                    "are timed apart and reported, not hidden.")
    sr.add_argument("--target", type=checked_by(check_target), default=94.0, metavar="PCT",
                    help="the test accuracy (%%, at most 100) the mean must reach (default: 94.0)")
    sr.add_argument("--seeds", type=between(1, MAX_SPEEDRUN_SEEDS), default=5, metavar="N",
                    help="seeds 0..N-1 (default: 5)")
    sr.add_argument("--budget", type=checked_by(check_budget), metavar="S",
                    help=f"seconds of training, at most a week ({MAX_BUDGET_SECONDS}): as many epochs as fit at the "
                         "step cost a warm-up measures; refused if not one epoch fits (default: the "
                         "recipe's epochs)")
    sr.add_argument("--epochs", type=config_int("epochs"), help="epochs (default: the recipe's)")
    sr.add_argument("--train-subset", type=config_int("data.train_subset"), metavar="N",
                    help="train on N images: a quick check, not a speedrun figure")
    sr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the recipe (repeatable)")
    sr.add_argument("--name", type=folder_name, help="folder name under --out (default: speedrun-YYYYmmdd-HHMMSS)")
    out_option("runs/speedrun", "where speedrun folders go")(sr)
    sr.add_argument("--resume", metavar="DIR",
                    help="continue a stopped speedrun (OUT/NAME) as planned: finished seeds kept, the "
                         "interrupted one resumed")
    sr.add_argument("--dry-run", action="store_true",
                    help="print the plan, write nothing (with --budget, the epochs are estimated from "
                         "the warm-up's few steps: the data are loaded for it)")
    sr.set_defaults(func=cmd_speedrun)

    m = sub.add_parser("models", help="list the architectures: size, cost, paper",
                       description="Parameters, forward MFLOPs per 28x28 image (torch's FLOP "
                                   "counter; a multiply-add is 2 FLOPs), output shape, the "
                                   "reference project's test accuracy and the paper of every "
                                   "architecture.")
    m.set_defaults(func=cmd_models)

    rp = sub.add_parser("report", parents=[finished_run],
                        help="confusion matrix, P/R/F1, errors, curves of a run",
                        description="Write RUN_DIR/report/ (report-val/ for --split val): "
                                    "confusion matrix, per-class precision/recall/F1, the most "
                                    "confident errors, training curves, report.html and report.md.")
    rp.add_argument("--split", choices=("test", "val"), default="test",
                    help="test (default: the final report) or val")
    rp.add_argument("--errors", type=between(1, MAX_SHOWN), default=25, metavar="N",
                    help="misclassified images in the grid (default: 25)")
    rp.set_defaults(func=cmd_report)

    lf = sub.add_parser("lr-find", parents=[options(recipe_options, device_option,
                                                     out_option("runs", "where the plot goes"),
                                                     data_dir_option)],
                        help="LR range test: suggest a peak learning rate",
                        description="Exponential LR sweep on training batches (Smith 2017) with "
                                    "the model's recipe (optimizer, batch size, augmentation); "
                                    "stops when the loss diverges. Writes DIR/lr_find-MODEL.png "
                                    "and .csv and prints a suggested maximum LR. Never uses the "
                                    "test set.")
    lf.add_argument("model", type=model_name, metavar="MODEL", help=f"architecture: {models}")
    lf.add_argument("--start", type=config_float("optim.lr"), default=1e-6, help="first LR (default: 1e-6)")
    lf.add_argument("--end", type=config_float("optim.lr"), default=1.0, help="last LR (default: 1)")
    lf.add_argument("--steps", type=between(20, MAX_LR_STEPS), default=200, help="batches in the sweep (default: 200)")
    lf.set_defaults(func=cmd_lr_find)

    en = sub.add_parser("ensemble", parents=[device_data],
                        help="combine finished runs into an ensemble",
                        description="Combine finished runs (any architectures, the same validation "
                                    "and test images) by mean probability, majority vote, or a "
                                    "weighted mean fitted on the validation split. Writes "
                                    "OUT/NAME/summary.json and OUT/NAME/report/.")
    en.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    en.add_argument("--method", choices=("mean", "vote", "weighted"), default="mean",
                    help="mean (default), vote (ties: higher mean probability) or weighted")
    en.add_argument("--tta", choices=("flip",), help="test-time augmentation: also predict on "
                                                      "mirrored images and average")
    out_option("runs", "where the folder goes")(en)
    en.add_argument("--name", type=folder_name, help="folder name (default: ensemble-YYYYmmdd-HHMMSS)")
    en.set_defaults(func=cmd_ensemble)

    sp = sub.add_parser("specialists", parents=[finished_run],
                        help="add binary specialists for a run's most confused pairs",
                        description="Find the pairs of classes RUN_DIR's model confuses most on "
                                    "validation, train a binary specialist for each (the run's "
                                    "recipe, on the pair's images), choose on validation when "
                                    "each takes over, and evaluate the combination. Writes "
                                    "OUT/NAME/ with the specialists, summary.json and report/; "
                                    "rerun with the same --name to resume.")
    sp.add_argument("--pairs", type=between(1, 45), default=3, help="number of pairs (default: 3)")
    sp.add_argument("--epochs", type=config_int("epochs"), help="specialists' epochs (default: the run's)")
    out_option("runs", "where the folder goes")(sp)
    sp.add_argument("--name", type=folder_name, help="folder name (default: RUN_DIR's name + '-specialists')")
    sp.set_defaults(func=cmd_specialists)

    sw = sub.add_parser("sweep", parents=[device_data],
                        help="search a model's hyperparameters with Optuna (validation only)",
                        description="Search MODEL's hyperparameters: Optuna's TPE sampler proposes "
                                    "configurations, each trained as an ordinary run folder "
                                    "OUT/STUDY/trial-K and judged on validation accuracy (the test "
                                    "split is never evaluated), with unpromising trials pruned "
                                    "after an epoch. The study lives in OUT/STUDY/study.db "
                                    "(SQLite) unless --storage names a database; the same command "
                                    "run on several machines against one database joins the "
                                    "study, and --trials counts every worker's trials. Its first "
                                    "trial is the recipe itself, at the sweep's budget. Then "
                                    "fashionbench sweep --best STUDY writes the best trial as a "
                                    "recipe.",
                        epilog="A search space file (--space) is YAML: params maps config keys "
                               "to ranges ({low: 1e-4, high: 1e-2, log: true}, {low: 1, high: 4, "
                               "int: true} or {choices: [sgd, adamw]}); budget maps config keys to "
                               "values every trial shares (epochs: 8, data.train_subset: null). "
                               "--print-space shows MODEL's default.")
    sw.add_argument("model", nargs="?", type=model_name, metavar="MODEL", help=f"architecture: {models}")
    sw.add_argument("--trials", type=between(1, MAX_TRIALS), metavar="N",
                    help="the study's trials in all, every worker's counted (failed ones do not "
                         "count); a worker stops once the study has them")
    sw.add_argument("--space", metavar="FILE", help="search space YAML (default: around MODEL's recipe)")
    sw.add_argument("--storage", metavar="URL",
                    help="Optuna storage, e.g. postgresql://user:pass@host/db (default: "
                         "sqlite:///OUT/STUDY/study.db)")
    sw.add_argument("--study", metavar="NAME", help="study name (default: MODEL)")
    sw.add_argument("--epochs", type=config_int("epochs"), help="every trial's epochs (default: the space's "
                                                       "budget, else the recipe's)")
    sw.add_argument("--train-subset", type=config_int("data.train_subset"), metavar="N",
                    help="train every trial on a stratified subset of N images")
    sw.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                    help="median (default): stop a trial below the median of earlier ones at the "
                         "same epoch; hyperband; none")
    sw.add_argument("--seed", type=config_int("seed"), default=0, help="every trial's training seed (default: 0)")
    sw.add_argument("--sampler-seed", type=config_int("seed"), metavar="S",
                    help="seed TPE's proposals (one worker is then repeatable; default: random)")
    sw.add_argument("--heartbeat", type=between(1, MAX_HEARTBEAT), default=60, metavar="SECONDS",
                    help="a running trial's heartbeat; one silent for twice this (a killed "
                         "worker) is marked failed (default: 60)")
    sw.add_argument("--best", metavar="STUDY",
                    help="instead of searching: write STUDY's best trial as a recipe "
                         "(OUT/STUDY/best.yaml), print parameter importances, plot the history")
    sw.add_argument("--dry-run", action="store_true",
                    help="print the study's plan (space, budget, storage) and check it; write nothing")
    sw.add_argument("--print-space", action="store_true",
                    help="print MODEL's default search space as YAML (a start for --space) and exit")
    out_option("runs/sweeps", "where study folders go")(sw)
    sw.set_defaults(func=cmd_sweep)

    tb = sub.add_parser("table", help="leaderboard of finished runs, by model",
                        description="Group finished runs by model and configuration, then print and "
                                    "write table.md, table.csv and table.html: mean ± std test "
                                    "accuracy, seeds, parameters, s/epoch, device, and the "
                                    "reference project's figures.")
    tb.add_argument("paths", nargs="+", metavar="RUN_DIR|RUNS_ROOT",
                    help="run folders, or folders to search for finished runs")
    out_option("results", "where the tables go")(tb)
    tb.set_defaults(func=cmd_table)

    au = sub.add_parser("audit", parents=[finished_run],
                        help="likely label errors: the model's most confident disagreements "
                             "with the dataset",
                        description="Rank the images of a split where RUN_DIR's model disagrees "
                                    "with the dataset's label by the model's confidence; write "
                                    "RUN_DIR/audit-SPLIT/suspects.png (the top N) and suspects.csv "
                                    "(all of them).")
    au.add_argument("--split", choices=("train", "val", "test"), default="train",
                    help="train (default: the run's training images), val or test")
    au.add_argument("--top", type=between(1, MAX_SHOWN), default=50, metavar="N",
                    help="images in the grid (default: 50)")
    au.set_defaults(func=cmd_audit)

    pr = sub.add_parser("predict", parents=[options(run_dir_argument, device_option)],
                        help="classify your own image files with a finished run's model",
                        description="Classify image files (any format Pillow reads, any size or "
                                    "colour mode) with RUN_DIR's model. Each image is converted the "
                                    "way Fashion-MNIST was made: grayscale, trimmed, its longest "
                                    "side resized to 28, centred; light backgrounds are inverted "
                                    "(garments are light on black). A folder means every image in "
                                    "it (not in its subfolders). Unreadable files are reported and "
                                    "skipped, and the exit status is then 1.")
    pr.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    pr.add_argument("--top-k", type=between(1, None), default=3, metavar="K",  # at most the run's classes: predict.py
                    help="classes to show per image (default: 3)")
    pr.add_argument("--json", action="store_true", help="one JSON object per line")
    pr.add_argument("--tta", choices=("flip",),
                    help="test-time augmentation: also predict on the mirrored image and average")
    pr.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                    help="invert intensities: auto (default: when the border is light), yes, no")
    pr.set_defaults(func=predict_cli)

    ex = sub.add_parser("export", parents=[options(run_dir_argument)],
                        help="export a finished run's model to ONNX or TorchScript",
                        description="Write RUN_DIR's model, normalization included, as a file that "
                                    "serves without fashionbench. Input: float32 pixels in [0, 255], "
                                    "shape (N, 1, 28, 28), any N; outputs: logits and probabilities.")
    ex.add_argument("--format", choices=("onnx", "torchscript"), default="onnx",
                    help="onnx (default; needs pip install 'fashionbench[export]') or torchscript")
    ex.add_argument("--out", metavar="FILE",
                    help="output file (default: RUN_DIR/model.onnx or RUN_DIR/model.torchscript.pt)")
    ex.set_defaults(func=export_cli)

    d = sub.add_parser("data", parents=[options(data_dir_option)],
                       help="download and verify the dataset, print where it is",
                       description="Fetch any missing files, verify all MD5 sums, print the location.")
    d.set_defaults(func=cmd_data)
    return parser


def same_command(args: argparse.Namespace) -> str:
    """The command line that was run, to run again (commands that keep finished work)."""
    return shlex.join(["fashionbench", *args.argv])


def config_overrides(args: argparse.Namespace) -> list[dict]:
    """The config overrides a command's named options and ``--set`` items make."""
    return api.config_overrides(args.set, **{opt: getattr(args, opt, None) for opt in api.CONFIG_OPTIONS})


def resume_command(args: argparse.Namespace, run_dir: Path, world: World = ONE_PROCESS) -> str:
    data_dir = f" --data-dir {shlex.quote(args.data_dir)}" if args.data_dir else ""
    command = f"fashionbench {args.command} --resume {shlex.quote(str(run_dir))}{data_dir}"
    if not world.distributed:
        return command
    # Under torchrun: as many processes again (a checkpoint resumes at its own world size).
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
    how = (f"--nproc-per-node {local}" if local == world.size else
           f"--nnodes {world.size // local} --nproc-per-node {local} (and the same rendezvous)")
    return f"{os.environ.get(LAUNCHER_VARIABLE, 'torchrun')} {how} -m {command}"


def print_results(summary) -> None:
    for weights, r in summary.results.items():
        test = f"  test acc {r['test']['acc']:.4f}" if "test" in r else "  (validation only)"
        print(f"{weights:>4} model: val acc {r['val']['acc']:.4f}{test}")
    if summary.leaky:
        print(f"{LEAKY.upper()}: the reported model is epoch {summary.extra['best_epoch']} of {summary.epochs}, "
              "the best on the test split (the reference protocol); its test accuracy is optimistic")


def run_training(args: argparse.Namespace, kind: str, world: World = ONE_PROCESS):
    """What train and one-vs-all share: with --dry-run the plan, else api.train,
    api.one_vs_all or api.resume, saying how to resume if stopped, and the results;
    the run, or None for a dry run or a process other than rank 0."""
    if args.resume and (config_overrides(args) or args.config or args.name):
        raise UsageError("--resume continues a run exactly as configured; drop the other training options")
    if args.dry_run:
        cfg, run_dir, resume = api.prepare_run(kind, args.model, args.config, config_overrides(args),
                                               args.out, args.name, args.resume, start=False, world=world)
        if world.is_main:  # under torchrun: one plan, not one per process
            print(run_plan(cfg, run_dir, resume) if kind == "train" else one_vs_all_plan(cfg, run_dir))
            print("dry run: nothing trained, nothing written")
        return None
    started: list[Path] = []

    def on_start(run_dir: Path) -> None:
        started.append(run_dir)
        if world.is_main:
            print(f"run: {run_dir}", flush=True)

    try:
        if args.resume:
            run = api.resume(args.resume, model=args.model, kind=kind, data_dir=args.data_dir, on_start=on_start)
        else:
            train = api.train if kind == "train" else api.one_vs_all
            run = train(args.model, config_file=args.config, overrides=config_overrides(args), out=args.out,
                        name=args.name, data_dir=args.data_dir, on_start=on_start)
    except KeyboardInterrupt as e:
        if not started or not world.is_main:  # under torchrun, rank 0 says how to continue, once
            raise
        raise stopped(e, resume_command(args, started[0], world)) from None
    except BaseException as e:  # no distributed.stop(): see why there
        if world.distributed and distributed.peer_lost(e):  # the cause is another process's own message
            resume = (f"; continue with: {resume_command(args, started[0], world)}"
                      if started and world.is_main else "")
            raise FashionbenchError(f"process {world.rank}: another process of this run stopped "
                                    f"({str(e).splitlines()[0][:200]}){resume}") from None
        raise
    if not world.is_main:
        return None
    print_results(run.summary)
    return run


def cmd_train(args: argparse.Namespace) -> None:
    trained = run_training(args, "train", World.from_env())  # several processes under torchrun
    if trained is None:
        return
    print(f"results: {trained.path}/summary.json  (model {trained.path}/model.pt, "
          f"metrics {trained.path}/metrics.jsonl)")
    if args.report:
        print(f"report: {api.report(trained, data_dir=args.data_dir)}")


def cmd_one_vs_all(args: argparse.Namespace) -> None:
    trained = run_training(args, "one-vs-all")
    if trained is None:
        return
    run_dir = trained.path
    print(f"results: {run_dir}/summary.json  (model {run_dir}/model.pt, "
          f"members {run_dir}/class-0 ... class-9)")
    print(f"report: {run_dir}/report/report.html")


def cmd_evaluate(args: argparse.Namespace) -> None:
    print(json.dumps(api.evaluate(args.run_dir, args.split, data_dir=args.data_dir, device=args.device), indent=2))


def cmd_report(args: argparse.Namespace) -> None:
    path = api.report(args.run_dir, args.split, errors=args.errors, data_dir=args.data_dir, device=args.device)
    print(f"report: {path}")


def cmd_lr_find(args: argparse.Namespace) -> None:
    cfg = api.resolve_config(args.model, args.config, config_overrides(args))  # checked before the data loads
    if args.start < args.end:
        print(f"LR range test: {cfg.model}, {cfg.optim.name}, batch {cfg.batch_size}, "
              f"{args.start:g} to {args.end:g} over {args.steps} steps", flush=True)
    found = api.lr_find(args.model, start=args.start, end=args.end, steps=args.steps, config_file=args.config,
                        overrides=config_overrides(args), out=args.out, data_dir=args.data_dir)
    result = found.result
    stop = (f"stopped at LR {result.lrs[-1]:.2e}: the loss diverged" if result.diverged
            else f"reached {result.lrs[-1]:.2e} without diverging")
    print(f"{len(result.lrs)} steps, {stop}")
    print(f"smoothed loss lowest at LR {result.lrs[result.best]:.2e}")
    print(f"suggested max LR: {result.suggestion:.2e} ({LRFinderResult.RULE}); "
          f"e.g. fashionbench train {cfg.model} --lr {result.suggestion:.2g}")
    print(f"plot: {found.figure}  data: {found.table}")


def cmd_ensemble(args: argparse.Namespace) -> None:
    run = api.ensemble(args.run_dirs, args.method, tta=args.tta == "flip", out=args.out, name=args.name,
                       data_dir=args.data_dir, device=args.device)
    r = run.summary.reported
    print(f"{run.summary.model}: val acc {r['val']['acc']:.4f}  test acc {r['test']['acc']:.4f}")
    print(f"results: {run.path}/summary.json  report: {run.path}/report/report.html")


def cmd_specialists(args: argparse.Namespace) -> None:
    try:
        run = api.specialists(args.run_dir, args.pairs, epochs=args.epochs, out=args.out, name=args.name,
                              data_dir=args.data_dir, device=args.device)
    except KeyboardInterrupt as e:
        raise stopped(e, same_command(args)) from None
    r = run.summary.results
    print(f"test acc {r['specialists']['test']['acc']:.4f} with specialists, "
          f"{r['generalist']['test']['acc']:.4f} without")
    print(f"results: {run.path}/summary.json  report: {run.path}/report/report.html")


def cmd_sweep(args: argparse.Namespace) -> None:
    if args.best:
        searching = {"MODEL": args.model, "--trials": args.trials, "--space": args.space,
                     "--study": args.study, "--epochs": args.epochs, "--train-subset": args.train_subset,
                     "--pruner": args.pruner != "median", "--seed": args.seed != 0,
                     "--sampler-seed": args.sampler_seed is not None, "--heartbeat": args.heartbeat != 60,
                     "--print-space": args.print_space, "--dry-run": args.dry_run, "--device": args.device}
        given = [name for name, value in searching.items() if value]
        if given:
            raise UsageError(f"--best STUDY reads a finished study; {', '.join(given)} "
                             "cannot go with it (only --out or --storage, where the study is)")
        best = api.best_recipe(args.best, args.out, args.storage)
        print(f"best trial of {args.best}: trial {best.trial}, val acc {best.value:.4f}")
        for key, value in best.params.items():
            print(f"  {key} = {value:.4g}" if isinstance(value, float) else f"  {key} = {value}")
        if best.importances:
            print("parameter importances (fANOVA, share of the variance of val acc):")
            for key, share in best.importances.items():
                print(f"  {key:<24} {share:.3f}")
        else:
            print(best.note)
        print(f"recipe: {best.recipe}  (fashionbench train --config {shlex.quote(str(best.recipe))})")
        print(f"plots: {', '.join(map(str, best.figures))}  trials: {best.trials}")
        return
    if not args.model:
        raise UsageError("name a MODEL to search (or --best STUDY for a finished study)")
    space = api.sweep_space(args.model, args.space, args.epochs, args.train_subset)
    if args.print_space:
        print(space.to_yaml(), end="")
        return
    if not args.trials:
        raise UsageError("--trials N is needed: the study's trials in all")
    if args.dry_run:
        check_out_dir(args.out)
        name = api.study_name(args.study, args.model)
        space.check(args.model, args.space or "search space")
        print(sweep_plan(args.model, space, args.trials, args.out, name, args.storage,
                               args.pruner, args.seed))
        print("dry run: nothing trained, nothing written")
        return
    name = api.study_name(args.study, args.model)
    try:
        result = api.sweep(args.model, args.trials, space=space, out=args.out, study=name, storage=args.storage,
                           pruner=args.pruner, seed=args.seed, sampler_seed=args.sampler_seed,
                           device=args.device, heartbeat=args.heartbeat, data_dir=args.data_dir)
    except KeyboardInterrupt as e:
        again = shlex.join(["fashionbench", *map(safe_url, args.argv)])  # no password shown
        raise stopped(e, again + "  (the interrupted trial is marked failed; a new trial takes its place)") from None
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    print(f"study {name}: {counts}")
    if result.best_number is not None:
        where = "" if args.out == "runs/sweeps" else f" --out {shlex.quote(str(args.out))}"
        where += "" if args.storage is None else f" --storage {shlex.quote(safe_url(args.storage))}"
        print(f"best: trial {result.best_number}, val acc {result.best_value:.4f}  "
              f"(fashionbench sweep --best {name}{where})")


def cmd_table(args: argparse.Namespace) -> None:
    api.leaderboard(args.paths, out=args.out)  # leaves out, with a warning each, runs it cannot use
    print((Path(args.out) / "table.md").read_text())
    print(f"tables: {', '.join(str(Path(args.out) / f'table.{ext}') for ext in ('md', 'csv', 'html'))}")


def cmd_audit(args: argparse.Namespace) -> None:
    png, table, count = api.audit(args.run_dir, args.split, top=args.top, data_dir=args.data_dir,
                                  device=args.device)
    print(f"{count} images of the {args.split} split disagree with their labels")
    print(f"most confident first: {png}  all: {table}")


def cmd_data(args: argparse.Namespace) -> None:
    data = api.load_data(args.data_dir)
    print(f"Fashion-MNIST at {data.root} (all MD5 sums verified)")
    for name, md5 in data.md5.items():  # the files read: .gz, or unpacked ones
        print(f"  {md5}  {name}")
    print(f"  train {len(data.train_labels):,} images, test {len(data.test_labels):,} images")


def cmd_reproduce(args: argparse.Namespace) -> None:
    def plan():
        return reproduce_plan(args.models or default_models(args.protocol), args.seeds, args.budget,
                              check_out_dir(args.out), args.device, args.protocol, args.compile)

    if args.costs and args.deadline is None:
        raise UsageError("--costs plans a --deadline; give both")
    if args.dry_run:
        print(describe_plan(plan()))
        print("dry run: nothing trained, nothing written")
        return
    try:
        paths = api.reproduce(args.models, args.seeds, args.budget, protocol=args.protocol, out=args.out,
                              device=args.device, data_dir=args.data_dir, deadline=args.deadline,
                              costs=args.costs, compile=args.compile)
    except KeyboardInterrupt as e:  # finished runs are kept and the interrupted one resumes
        raise stopped(e, same_command(args)) from None
    if paths:  # none where a deadline let no run finish
        print(paths[0].read_text())
        print(f"results: {', '.join(map(str, paths))}")
    if args.deadline is not None:  # what the folders hold now, and how to go on
        outcome, done = describe_outcome(plan())
        print(f"deadline: {outcome}" + ("" if done else f"; continue with: {same_command(args)}"))


def cmd_speedrun(args: argparse.Namespace) -> None:
    if args.resume:
        planning = {"--seeds": args.seeds != 5, "--target": args.target != 94.0, "--budget": args.budget,
                    "--epochs": args.epochs, "--train-subset": args.train_subset, "--set": args.set,
                    "--name": args.name, "--out": args.out != "runs/speedrun", "--device": args.device,
                    "--dry-run": args.dry_run}
        given = [name for name, value in planning.items() if value]
        if given:
            raise UsageError(f"--resume continues a speedrun as planned; drop {', '.join(given)}")
    elif args.dry_run:
        options = dict(epochs=args.epochs, budget=args.budget, overrides=args.set, train_subset=args.train_subset,
                       device=args.device)
        cfg = api.speedrun_config(**options)  # checked before any data is loaded for a budget's warm-up
        out = new_run_dir(args.out, args.name, "speedrun")
        epochs = str(cfg.epochs)
        if args.budget:
            plan = api.speedrun_plan(args.seeds, target=args.target, data_dir=args.data_dir, **options)
            cfg, warm = plan.cfg, plan.warmup
            epochs = (f"{cfg.epochs} (estimated for {args.budget:g} s: {warm.seconds_per_step * 1000:.0f} ms a "
                      f"step measured over {TIMED_STEPS} warm-up steps; the run measures again)")
        print(f"speedrun: {cfg.model}, seeds 0..{args.seeds - 1}, epochs: {epochs}, target {args.target:g}%")
        print(run_plan(cfg, out / "seed-0", False))
        print("dry run: nothing trained, nothing written")
        return
    started: list[Path] = []

    def on_start(folder: Path) -> None:
        started.append(folder)
        print(f"speedrun: {folder}", flush=True)

    try:
        if args.resume:
            result = api.resume_speedrun(args.resume, data_dir=args.data_dir, on_start=on_start)
        else:
            result = api.speedrun(args.seeds, epochs=args.epochs, budget=args.budget, target=args.target,
                                  overrides=args.set, train_subset=args.train_subset, out=args.out,
                                  name=args.name, data_dir=args.data_dir, device=args.device, on_start=on_start)
    except KeyboardInterrupt as e:  # before its plan is written nothing is: the same command starts over
        raise stopped(e, resume_command(args, started[0]) if started else same_command(args)) from None
    print(describe_speedrun(result))
    print(f"results: {result['folder']}/speedrun.json")


def cmd_models(args: argparse.Namespace) -> None:
    rows = [(m["model"], f"{m['parameters']:,}", f"{m['mflops']:,.1f}", f"(N, {m['outputs']})",
             "" if m["reference"] is None else f"{m['reference']:.2f}", m["paper"]) for m in api.list_models()]
    header = ("model", "parameters", "MFLOPs", "output", "reference %", "paper")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.rjust(w) if 0 < j < 5 else cell.ljust(w)
                        for j, (cell, w) in enumerate(zip(row, widths))).rstrip())


def terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 on success, 2 for a usage error (argparse's own, or a UsageError),
    1 for everything else that fails (data, files, a run that cannot go on), 130 after
    SIGINT and 143 after SIGTERM (a run says how to resume it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if World.from_env().distributed and args.command != "train":
        print(f"fashionbench: error: {args.command} runs in one process; under torchrun only "
              "train runs", file=sys.stderr)
        return 2
    # SIGTERM (schedulers, docker stop) unwinds like Ctrl-C: checkpoints stay, one line.
    main_thread = threading.current_thread() is threading.main_thread()  # where signals go
    previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    try:
        status = args.func(args)
    except UsageError as e:
        print(f"fashionbench: error: {e}", file=sys.stderr)
        return 2
    except FashionbenchError as e:
        print(f"fashionbench: error: {e}", file=sys.stderr)
        return getattr(e, "status", 1)
    except KeyboardInterrupt as e:
        what, status = signal_stop(e)
        if World.from_env().is_main:  # under torchrun every rank is signalled: rank 0 speaks
            print(f"fashionbench: {what}", file=sys.stderr)
        return status
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except OSError as e:  # a file-system failure not caught nearer: still one line
        print(f"fashionbench: error: {e.filename or 'file system'}: {os_cause(e)}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
