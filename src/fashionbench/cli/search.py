"""Commands that search: lr-find (an LR range test) and sweep (hyperparameters, with Optuna)."""

from __future__ import annotations

import argparse
import shlex

from .. import api
from ..api import UsageError, stopped
from .options import (
    MAX_HEARTBEAT,
    MAX_LR_STEPS,
    MAX_TRIALS,
    between,
    config_float,
    config_int,
    config_overrides,
    data_dir_option,
    device_option,
    model_argument,
    options,
    out_option,
    recipe_options,
    tracking,
    tracking_options,
    training_options,
)


def add_lr_find(sub) -> None:
    lf = sub.add_parser("lr-find", parents=[options(recipe_options, training_options("batch_size", "seed"),
                                                     device_option, out_option("runs", "where the plot goes"),
                                                     data_dir_option)],
                        help="LR range test: suggest a peak learning rate",
                        description="Exponential LR sweep on training batches (Smith 2017) with "
                                    "the model's recipe (optimizer, batch size, augmentation); "
                                    "stops when the loss diverges. Writes DIR/lr_find-MODEL.png "
                                    "and .csv and prints a suggested maximum LR. Never uses the "
                                    "test set.")
    model_argument(lf, optional=False)
    lf.add_argument("--start", type=config_float("optim.lr"), default=1e-6, help="first LR (default: 1e-6)")
    lf.add_argument("--end", type=config_float("optim.lr"), default=1.0, help="last LR (default: 1)")
    lf.add_argument("--steps", type=between(20, MAX_LR_STEPS), default=200, help="batches in the sweep (default: 200)")
    lf.set_defaults(func=cmd_lr_find)


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
    print(f"suggested max LR: {result.suggestion:.2e} ({result.RULE}); "
          f"e.g. fashionbench train {cfg.model} --lr {result.suggestion:.2g}")
    print(f"plot: {found.figure}  data: {found.table}")


def add_sweep(sub) -> None:
    sw = sub.add_parser("sweep", parents=[options(device_option, data_dir_option, tracking_options)],
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
    model_argument(sw)
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


def cmd_sweep(args: argparse.Namespace) -> None:
    if args.best:
        return print_best(args)
    if not args.model:
        raise UsageError("name a MODEL to search (or --best STUDY for a finished study)")
    space = api.sweep_space(args.model, args.space, args.epochs, args.train_subset)
    if args.print_space:
        print(space.to_yaml(), end="")
        return
    if not args.trials:
        raise UsageError("--trials N is needed: the study's trials in all")
    search = dict(space=space, out=args.out, study=args.study, storage=args.storage, pruner=args.pruner,
                  seed=args.seed)
    if args.dry_run:
        api.check_tracking(**tracking(args))
        print(api.sweep_plan(args.model, args.trials, **search))
        print("dry run: nothing trained, nothing written")
        return
    try:
        result = api.sweep(args.model, args.trials, **search, sampler_seed=args.sampler_seed,
                           device=args.device, heartbeat=args.heartbeat, data_dir=args.data_dir, **tracking(args))
    except KeyboardInterrupt as e:
        again = shlex.join(["fashionbench", *map(api.safe_url, args.argv)])  # no password shown
        raise stopped(e, again + "  (the interrupted trial is marked failed; a new trial takes its place)") from None
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    name = api.study_name(args.study, args.model)
    print(f"study {name}: {counts}")
    if result.best_number is not None:
        where = "" if args.out == "runs/sweeps" else f" --out {shlex.quote(str(args.out))}"
        where += "" if args.storage is None else f" --storage {shlex.quote(api.safe_url(args.storage))}"
        print(f"best: trial {result.best_number}, val acc {result.best_value:.4f}  "
              f"(fashionbench sweep --best {name}{where})")


def print_best(args: argparse.Namespace) -> None:
    """--best STUDY: a finished study's best trial as a recipe."""
    searching = {"MODEL": args.model, "--trials": args.trials, "--space": args.space,
                 "--study": args.study, "--epochs": args.epochs, "--train-subset": args.train_subset,
                 "--pruner": args.pruner != "median", "--seed": args.seed != 0,
                 "--sampler-seed": args.sampler_seed is not None, "--heartbeat": args.heartbeat != 60,
                 "--print-space": args.print_space, "--dry-run": args.dry_run, "--device": args.device,
                 "--track": args.track}
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
