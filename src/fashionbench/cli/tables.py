"""Commands that make tables: reproduce (the reference table over seeds), table
(a leaderboard of finished runs), models (the architectures) and data (the dataset)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import api
from ..api import UsageError, stopped
from .options import (
    MAX_DEADLINE,
    comma_list,
    data_dir_option,
    device_option,
    model_name,
    number_in,
    options,
    out_option,
    same_command,
    tracking,
    tracking_options,
)


def add_reproduce(sub) -> None:
    r = sub.add_parser("reproduce", parents=[options(device_option, data_dir_option, tracking_options)],
                       help="train the reference table's models over seeds, write results/table.md",
                       description="Train each model with its recipe for each seed into "
                                   "DIR/runs/MODEL-sSEED (finished runs are kept, interrupted "
                                   "ones resumed), then write DIR/table.md and DIR/table.csv.")
    r.add_argument("--models", type=comma_list(model_name), metavar="A,B,...",
                   help="models to train (default: all eight of the reference table; under "
                        "--protocol reference, those it has a recipe for)")
    low, high, _ = api.RANGES["seed"]
    r.add_argument("--seeds", type=comma_list(int, low, high), default=[0, 1, 2], metavar="S,S,...",
                   help="seeds (default: 0,1,2)")
    r.add_argument("--budget", choices=sorted(api.BUDGETS), default="full",
                   help="full: each recipe as written (default); smoke: 40 steps of 8 images "
                        "per model, to check the machinery")
    r.add_argument("--protocol", choices=api.PROTOCOLS, default="ours",
                   help="ours: each model's recipe, chosen on validation (default); reference: the "
                        "reference project's protocol reimplemented (recipes/reference/MODEL.yaml: its "
                        f"settings, the best epoch on the test set, marked '{api.LEAKY}'), with "
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


def cmd_reproduce(args: argparse.Namespace) -> None:
    plan = dict(models=args.models, seeds=args.seeds, budget=args.budget, protocol=args.protocol, out=args.out,
                device=args.device, compile=args.compile)
    if args.costs and args.deadline is None:
        raise UsageError("--costs plans a --deadline; give both")
    if args.dry_run:
        api.check_tracking(**tracking(args))
        print(api.reproduce_plan(**plan).describe())
        print("dry run: nothing trained, nothing written")
        return
    try:
        paths = api.reproduce(**plan, data_dir=args.data_dir, deadline=args.deadline, costs=args.costs,
                              **tracking(args))
    except KeyboardInterrupt as e:  # finished runs are kept and the interrupted one resumes
        raise stopped(e, same_command(args)) from None
    if paths:  # none where a deadline let no run finish
        print(paths[0].read_text())
        print(f"results: {', '.join(map(str, paths))}")
    if args.deadline is not None:  # what the folders hold now, and how to go on
        outcome, done = api.reproduce_plan(**plan).outcome()
        print(f"deadline: {outcome}" + ("" if done else f"; continue with: {same_command(args)}"))


def add_table(sub) -> None:
    tb = sub.add_parser("table", help="leaderboard of finished runs, by model",
                        description="Group finished runs by model and configuration, then print and "
                                    "write table.md, table.csv and table.html: mean ± std test "
                                    "accuracy, seeds, parameters, s/epoch, device, and the "
                                    "reference project's figures.")
    tb.add_argument("paths", nargs="+", metavar="RUN_DIR|RUNS_ROOT",
                    help="run folders, or folders to search for finished runs")
    out_option("results", "where the tables go")(tb)
    tb.set_defaults(func=cmd_table)


def cmd_table(args: argparse.Namespace) -> None:
    api.leaderboard(args.paths, out=args.out)  # leaves out, with a warning each, runs it cannot use
    print((Path(args.out) / "table.md").read_text())
    print(f"tables: {', '.join(str(Path(args.out) / f'table.{ext}') for ext in ('md', 'csv', 'html'))}")


def add_models(sub) -> None:
    m = sub.add_parser("models", help="list the architectures: size, cost, paper",
                       description="Parameters, forward MFLOPs per 28x28 image (torch's FLOP "
                                   "counter; a multiply-add is 2 FLOPs), output shape, the "
                                   "reference project's test accuracy and the paper of every "
                                   "architecture.")
    m.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> None:
    rows = [(m["model"], f"{m['parameters']:,}", f"{m['mflops']:,.1f}", f"(N, {m['outputs']})",
             "" if m["reference"] is None else f"{m['reference']:.2f}", m["paper"]) for m in api.list_models()]
    header = ("model", "parameters", "MFLOPs", "output", "reference %", "paper")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.rjust(w) if 0 < j < 5 else cell.ljust(w)
                        for j, (cell, w) in enumerate(zip(row, widths))).rstrip())


def add_data(sub) -> None:
    d = sub.add_parser("data", parents=[options(data_dir_option)],
                       help="download and verify the dataset, print where it is",
                       description="Fetch any missing files, verify all MD5 sums, print the location.")
    d.set_defaults(func=cmd_data)


def cmd_data(args: argparse.Namespace) -> None:
    data = api.load_data(args.data_dir)
    print(f"Fashion-MNIST at {data.root} (all MD5 sums verified)")
    for name, md5 in data.md5.items():  # the files read: .gz, or unpacked ones
        print(f"  {md5}  {name}")
    print(f"  train {len(data.train_labels):,} images, test {len(data.test_labels):,} images")
