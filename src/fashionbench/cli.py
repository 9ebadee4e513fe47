"""The ``fashionbench`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from . import __version__
from .config import config_from_dict, load_config, parse_override, read_yaml, validate
from .data import DATA_DIR_ENV, FILES, MIRROR_ENV, load_fashion_mnist
from .errors import FashionbenchError
from .models import MODELS

# Named training options and the config keys they set.
TRAIN_OPTIONS = {"epochs": "epochs", "batch_size": "batch_size", "lr": "optim.lr",
                 "seed": "seed", "device": "device", "train_subset": "data.train_subset",
                 "compile": "compile"}


def _data_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR",
                   help=f"dataset folder (default: ${DATA_DIR_ENV}, else a per-user cache folder)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashionbench",
        description="Train, evaluate and compare image classifiers on Fashion-MNIST.",
        epilog=f"Data: ${DATA_DIR_ENV} sets the dataset folder; ${MIRROR_ENV} adds download "
               "mirrors (base URLs, file:// too), tried before the built-in ones.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model from its recipe",
                       description="Train MODEL with recipes/MODEL.yaml (or --config), "
                                   "overridden by the options below.")
    t.add_argument("model", nargs="?", metavar="MODEL",
                   help=f"architecture: {', '.join(sorted(MODELS))}")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float, help="peak learning rate (optim.lr)")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    t.add_argument("--train-subset", type=int, metavar="N",
                   help="train on a stratified subset of N images (for quick runs)")
    t.add_argument("--compile", action="store_const", const=True,
                   help="torch.compile the model (slower start, often faster steps)")
    t.add_argument("--config", metavar="FILE", help="recipe YAML to use instead of the model's own")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set swa.start_epoch=10 (repeatable)")
    t.add_argument("--out", default="runs", metavar="DIR", help="where run folders go (default: runs)")
    t.add_argument("--name", help="run folder name (default: MODEL-YYYYmmdd-HHMMSS)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    _data_dir_option(t)

    e = sub.add_parser("evaluate", help="evaluate a finished run's model",
                       description="Accuracy and loss of RUN_DIR/model.pt on one split.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--split", choices=("val", "test"), default="val",
                   help="val (default) or test; the test set is for final reporting only")
    e.add_argument("--device", help="override the run's device")
    _data_dir_option(e)

    d = sub.add_parser("data", help="download and verify the dataset, print where it is",
                       description="Fetch any missing files, verify all MD5 sums, print the location.")
    _data_dir_option(d)
    return parser


def _run_config(run_dir: Path):
    if not (run_dir / "config.yaml").exists():
        raise FashionbenchError(f"{run_dir}: not a run folder (no config.yaml)")
    return config_from_dict(read_yaml(run_dir / "config.yaml"))


def cmd_train(args: argparse.Namespace) -> None:
    from .engine import train
    from .runs import new_run_dir

    overrides = [parse_override(f"{key}={json.dumps(getattr(args, opt))}")
                 for opt, key in TRAIN_OPTIONS.items() if getattr(args, opt) is not None]
    overrides += [parse_override(item) for item in args.set]
    if args.resume:
        run_dir = Path(args.resume)
        if overrides or args.config or args.name:
            raise FashionbenchError("--resume continues a run exactly as configured; "
                                    "drop the other training options")
        cfg = _run_config(run_dir)
        if args.model and args.model != cfg.model:
            raise FashionbenchError(f"{run_dir} trains {cfg.model}, not {args.model}")
        if (run_dir / "summary.json").exists():
            raise FashionbenchError(f"{run_dir} is already complete (summary.json exists)")
        resume = (run_dir / "checkpoint.pt").exists()  # killed before epoch 1 ended: start over
    else:
        if not args.model:
            raise FashionbenchError(f"name a MODEL to train: {', '.join(sorted(MODELS))}")
        cfg = load_config(args.model, args.config, overrides)
        run_dir = new_run_dir(args.out, args.name, cfg.model)
        resume = False
    data = load_fashion_mnist(args.data_dir)
    print(f"run: {run_dir}", flush=True)
    try:
        summary = train(cfg, data, run_dir, resume=resume)
    except KeyboardInterrupt:
        raise FashionbenchError(
            f"interrupted; continue with: fashionbench train --resume {run_dir}") from None
    r = summary["results"]
    for weights in r:
        print(f"{weights:>4} model: val acc {r[weights]['val']['acc']:.4f}  "
              f"test acc {r[weights]['test']['acc']:.4f}")
    print(f"results: {run_dir}/summary.json  (model {run_dir}/model.pt, "
          f"metrics {run_dir}/metrics.jsonl)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .engine import evaluate_run

    run_dir = Path(args.run_dir)
    cfg = _run_config(run_dir)
    if args.device:
        cfg = validate(dataclasses.replace(cfg, device=args.device))
    result = evaluate_run(cfg, load_fashion_mnist(args.data_dir), run_dir, args.split)
    print(json.dumps(result, indent=2))


def cmd_data(args: argparse.Namespace) -> None:
    data = load_fashion_mnist(args.data_dir)
    print(f"Fashion-MNIST at {data.root} (all MD5 sums verified)")
    for name in FILES:
        print(f"  {data.md5[name]}  {name}")
    print(f"  train {len(data.train_labels):,} images, test {len(data.test_labels):,} images")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"train": cmd_train, "evaluate": cmd_evaluate, "data": cmd_data}[args.command](args)
    except FashionbenchError as e:
        print(f"fashionbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fashionbench: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
