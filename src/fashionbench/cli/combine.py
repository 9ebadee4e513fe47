"""Commands that combine finished runs: ensemble and specialists."""

from __future__ import annotations

import argparse

from .. import api
from ..api import stopped
from .options import (
    between,
    config_int,
    data_dir_option,
    device_option,
    name_option,
    options,
    out_option,
    run_dir_argument,
    same_command,
)


def add_ensemble(sub) -> None:
    en = sub.add_parser("ensemble", parents=[options(device_option, data_dir_option)],
                        help="combine finished runs into an ensemble",
                        description="Combine finished runs (any architectures, the same validation "
                                    "and test images) by mean probability, majority vote, or a "
                                    "weighted mean fitted on the validation split. Writes "
                                    "OUT/NAME with its summary and report/.")
    en.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    en.add_argument("--method", choices=("mean", "vote", "weighted"), default="mean",
                    help="mean (default), vote (ties: higher mean probability) or weighted")
    en.add_argument("--tta", choices=("flip",), help="test-time augmentation: also predict on "
                                                      "mirrored images and average")
    out_option("runs", "where the folder goes")(en)
    name_option("ensemble-YYYYmmdd-HHMMSS")(en)
    en.set_defaults(func=cmd_ensemble)


def cmd_ensemble(args: argparse.Namespace) -> None:
    run = api.ensemble(args.run_dirs, args.method, tta=args.tta == "flip", out=args.out, name=args.name,
                       data_dir=args.data_dir, device=args.device)
    r = run.summary.reported
    print(f"{run.summary.model}: val acc {r['val']['acc']:.4f}  test acc {r['test']['acc']:.4f}")
    print(f"results: {run.summary_path}  report: {run.report_path}")


def add_specialists(sub) -> None:
    sp = sub.add_parser("specialists", parents=[options(run_dir_argument, device_option, data_dir_option)],
                        help="add binary specialists for a run's most confused pairs",
                        description="Find the pairs of classes RUN_DIR's model confuses most on "
                                    "validation, train a binary specialist for each (the run's "
                                    "recipe, on the pair's images), choose on validation when "
                                    "each takes over, and evaluate the combination. Writes "
                                    "OUT/NAME/ with the specialists, its summary and report/; "
                                    "rerun with the same --name to resume.")
    sp.add_argument("--pairs", type=between(1, 45), default=3, help="number of pairs (default: 3)")
    sp.add_argument("--epochs", type=config_int("epochs"), help="specialists' epochs (default: the run's)")
    out_option("runs", "where the folder goes")(sp)
    name_option("RUN_DIR's name + '-specialists'")(sp)
    sp.set_defaults(func=cmd_specialists)


def cmd_specialists(args: argparse.Namespace) -> None:
    try:
        run = api.specialists(args.run_dir, args.pairs, epochs=args.epochs, out=args.out, name=args.name,
                              data_dir=args.data_dir, device=args.device)
    except KeyboardInterrupt as e:
        raise stopped(e, same_command(args)) from None
    r = run.summary.results
    print(f"test acc {r['specialists']['test']['acc']:.4f} with specialists, "
          f"{r['generalist']['test']['acc']:.4f} without")
    print(f"results: {run.summary_path}  report: {run.report_path}")
