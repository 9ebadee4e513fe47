"""``fashionbench train`` and ``fashionbench one-vs-all``: a run from a recipe, trained,
resumed or planned (--dry-run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import api
from ..api import FashionbenchError, UsageError, stopped
from .options import (
    config_overrides,
    data_dir_option,
    model_argument,
    name_option,
    options,
    out_option,
    recipe_options,
    resume_command,
    tracking,
    tracking_options,
    training_options,
)


def training_parent() -> argparse.ArgumentParser:
    """What train and one-vs-all share: the recipe, its named options, where the run goes."""
    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
        p.add_argument("--dry-run", action="store_true",
                       help="resolve and validate the config, print the plan (parameters, steps, SWA "
                            "snapshots, run folder), write nothing")

    return options(recipe_options, training_options("batch_size", "seed", "epochs", "lr", "train_subset", "compile"),
                   name_option("MODEL-YYYYmmdd-HHMMSS", "run folder name"), run_options, training_options("device"),
                   out_option("runs", "where run folders go"), data_dir_option, tracking_options)


def add_train(sub) -> None:
    t = sub.add_parser("train", parents=[training_parent()], help="train a model from its recipe",
                       description="Train MODEL with recipes/MODEL.yaml (or --config), "
                                   "overridden by the options below.")
    model_argument(t)
    training_options("head")(t)
    t.add_argument("--report", action="store_true", help="write RUN_DIR/report (test split) when training ends")
    t.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> None:
    trained = run_training(args, api.Kind.RUN, api.World.from_env())  # several processes under torchrun
    if trained is None:
        return
    print(f"results: {trained.summary_path}  (model {trained.model_path}, metrics {trained.history_path})")
    if args.report:  # written by the API as the run ended (logged with it)
        print(f"report: {trained.report_path}")


def add_one_vs_all(sub) -> None:
    o = sub.add_parser("one-vs-all", parents=[training_parent()],
                       help="train ten binary networks, one per class, and combine them",
                       description="Train ten binary networks of MODEL, one per class against the "
                                   "rest (RUN_DIR/class-C, each an ordinary run with MODEL's recipe "
                                   "on class-balanced batches), calibrate each on the validation "
                                   "split (Platt scaling) and combine them into one ten-class "
                                   "model; writes the combined model, its summary and report/. "
                                   "Finished members are kept and an interrupted one resumed "
                                   "(--resume RUN_DIR).")
    model_argument(o)
    o.set_defaults(func=cmd_one_vs_all)


def cmd_one_vs_all(args: argparse.Namespace) -> None:
    trained = run_training(args, api.Kind.ONE_VS_ALL)
    if trained is None:
        return
    members = trained.members
    print(f"results: {trained.summary_path}  (model {trained.model_path}, "
          f"members {members[0]} ... {members[-1].name})")
    print(f"report: {trained.report_path}")


def print_results(summary) -> None:
    for weights, r in summary.results.items():
        test = f"  test acc {r['test']['acc']:.4f}" if "test" in r else "  (validation only)"
        print(f"{weights:>4} model: val acc {r['val']['acc']:.4f}{test}")
    if summary.leaky:
        print(f"{api.LEAKY.upper()}: the reported model is epoch {summary.extra['best_epoch']} of {summary.epochs}, "
              "the best on the test split (the reference protocol); its test accuracy is optimistic")


def run_training(args: argparse.Namespace, kind: api.Kind, world: api.World = api.ONE_PROCESS):
    """What train and one-vs-all share: with --dry-run the plan, else the API's train,
    one_vs_all or resume, saying how to resume if stopped, and the results; the run, or
    None for a dry run or a process other than rank 0."""
    if args.resume and (config_overrides(args) or args.config or args.name):
        raise UsageError("--resume continues a run exactly as configured; drop the other training options")
    if args.dry_run:
        api.check_tracking(**tracking(args))
        plan = api.train_plan(args.model, kind=kind, config_file=args.config, overrides=config_overrides(args),
                              out=args.out, name=args.name, resume=args.resume, world=world)
        if world.is_main:  # under torchrun: one plan, not one per process
            print(plan)
            print("dry run: nothing trained, nothing written")
        return None
    started: list[Path] = []

    def on_start(run_dir: Path) -> None:
        started.append(run_dir)
        if world.is_main:
            print(f"run: {run_dir}", flush=True)

    report = {"report": True} if getattr(args, "report", False) else {}  # train's option
    try:
        if args.resume:
            run = api.resume(args.resume, model=args.model, kind=kind, data_dir=args.data_dir, on_start=on_start,
                             **report, **tracking(args))
        else:
            train = api.train if kind is api.Kind.RUN else api.one_vs_all
            run = train(args.model, config_file=args.config, overrides=config_overrides(args), out=args.out,
                        name=args.name, data_dir=args.data_dir, on_start=on_start, **report, **tracking(args))
    except KeyboardInterrupt as e:
        if not started or not world.is_main:  # under torchrun, rank 0 says how to continue, once
            raise
        raise stopped(e, resume_command(args, started[0], world)) from None
    except BaseException as e:  # no distributed.stop(): see why there
        if world.distributed and api.peer_lost(e):  # the cause is another process's own message
            resume = (f"; continue with: {resume_command(args, started[0], world)}"
                      if started and world.is_main else "")
            raise FashionbenchError(f"process {world.rank}: another process of this run stopped "
                                    f"({str(e).splitlines()[0][:200]}){resume}") from None
        raise
    if not world.is_main:
        return None
    print_results(run.summary)
    return run
