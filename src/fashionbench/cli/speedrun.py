"""``fashionbench speedrun``: time to accuracy, the speedrun recipe over seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import api
from ..api import UsageError, stopped
from .options import (
    MAX_SPEEDRUN_SEEDS,
    between,
    checked_by,
    config_int,
    data_dir_option,
    device_option,
    name_option,
    options,
    out_option,
    resume_command,
    same_command,
    tracking,
    tracking_options,
)


def add_speedrun(sub) -> None:
    sr = sub.add_parser("speedrun", parents=[options(device_option, data_dir_option, tracking_options)],
                        help="time-to-accuracy: the speedrun recipe on several seeds, timed",
                        description="Train recipes/speedrun_net.yaml (or --config) from scratch once per seed into "
                                    "OUT/NAME/seed-S and write OUT/NAME/speedrun.json: test accuracy "
                                    "mean ± std over the seeds and the median time from the first "
                                    "training step to the final model. Loading the data, a warm-up "
                                    "on a throwaway model and the validation passes between epochs "
                                    "are timed apart and reported, not hidden.")
    sr.add_argument("--config", metavar="FILE",
                    help="the recipe to time (any model's; default: recipes/speedrun_net.yaml)")
    sr.add_argument("--target", type=checked_by(api.check_target), default=94.0, metavar="PCT",
                    help="the test accuracy (%%, at most 100) the mean must reach (default: 94.0)")
    sr.add_argument("--seeds", type=between(1, MAX_SPEEDRUN_SEEDS), default=5, metavar="N",
                    help="seeds 0..N-1 (default: 5)")
    sr.add_argument("--budget", type=checked_by(api.check_budget), metavar="S",
                    help=f"seconds of training, at most a week ({api.MAX_BUDGET_SECONDS}): as many epochs as fit "
                         "at the step cost a warm-up measures; refused if not one epoch fits (default: the "
                         "recipe's epochs)")
    sr.add_argument("--epochs", type=config_int("epochs"), help="epochs (default: the recipe's)")
    sr.add_argument("--train-subset", type=config_int("data.train_subset"), metavar="N",
                    help="train on N images: a quick check, not a speedrun figure")
    sr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of the recipe (repeatable)")
    name_option("speedrun-YYYYmmdd-HHMMSS", "folder name under --out")(sr)
    out_option("runs/speedrun", "where speedrun folders go")(sr)
    sr.add_argument("--resume", metavar="DIR",
                    help="continue a stopped speedrun (OUT/NAME) as planned: finished seeds kept, the "
                         "interrupted one resumed")
    sr.add_argument("--report", action="store_true",
                    help="write each seed's report (OUT/NAME/seed-S/report, test split) when the speedrun ends")
    sr.add_argument("--dry-run", action="store_true",
                    help="print the plan, write nothing (with --budget, the epochs are estimated from "
                         "the warm-up's few steps: the data are loaded for it)")
    sr.set_defaults(func=cmd_speedrun)


def cmd_speedrun(args: argparse.Namespace) -> None:
    if args.resume:
        planning = {"--seeds": args.seeds != 5, "--target": args.target != 94.0, "--budget": args.budget,
                    "--epochs": args.epochs, "--train-subset": args.train_subset, "--set": args.set,
                    "--name": args.name, "--out": args.out != "runs/speedrun", "--device": args.device,
                    "--dry-run": args.dry_run, "--config": args.config}
        given = [name for name, value in planning.items() if value]
        if given:
            raise UsageError(f"--resume continues a speedrun as planned; drop {', '.join(given)}")
    options = dict(epochs=args.epochs, budget=args.budget, overrides=args.set, train_subset=args.train_subset,
                   device=args.device, config_file=args.config)
    if args.dry_run:
        api.check_tracking(**tracking(args))
        print(api.speedrun_dry_run(args.seeds, target=args.target, out=args.out, name=args.name,
                                   data_dir=args.data_dir, **options))
        print("dry run: nothing trained, nothing written")
        return
    started: list[Path] = []

    def on_start(folder: Path) -> None:
        started.append(folder)
        print(f"speedrun: {folder}", flush=True)

    try:
        if args.resume:
            result = api.resume_speedrun(args.resume, data_dir=args.data_dir, on_start=on_start, **tracking(args))
        else:
            result = api.speedrun(args.seeds, target=args.target, out=args.out, name=args.name,
                                  data_dir=args.data_dir, on_start=on_start, **options, **tracking(args))
    except KeyboardInterrupt as e:  # before its plan is written nothing is: the same command starts over
        raise stopped(e, resume_command(args, started[0]) if started else same_command(args)) from None
    print(api.describe_speedrun(result))
    print(f"results: {result['folder']}/speedrun.json")
    if args.report:
        for seed in result["seeds"]:
            print(f"report: {api.report(seed['run'], data_dir=args.data_dir)}")
