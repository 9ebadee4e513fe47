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

from . import __version__
from .config import load_config, parse_override, read_yaml
from .data import DATA_DIR_ENV, MIRROR_ENV, load_fashion_mnist
from .errors import FashionbenchError, Terminated, UsageError, signal_stop, stopped
from .leaderboard import REFERENCE
from .models import MODELS, check_model
from .reproduce import BUDGETS

# Named training options and the config keys they set.
TRAIN_OPTIONS = {"epochs": "epochs", "batch_size": "batch_size", "lr": "optim.lr",
                 "seed": "seed", "device": "device", "train_subset": "data.train_subset",
                 "compile": "compile", "head": "head", "one_vs_all": "one_vs_all"}


def _data_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR",
                   help=f"dataset folder (default: ${DATA_DIR_ENV}, else a per-user cache folder)")


def _finished_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--device", help="override the run's device")
    _data_dir_option(p)


def _recipe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="recipe YAML to use instead of the model's own")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set swa.start_epoch=10 (repeatable)")


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
    t.add_argument("--head", choices=("softmax", "ova"),
                   help="softmax (default), or ova: ten sigmoid outputs trained with binary "
                        "cross-entropy (one-vs-all at the cost of one network)")
    t.add_argument("--one-vs-all", action="store_const", const=True,
                   help="train ten binary networks, one per class (RUN_DIR/class-C, each "
                        "resumable), calibrate them on validation and combine them; writes "
                        "its report")
    _recipe_options(t)
    t.add_argument("--out", default="runs", metavar="DIR", help="where run folders go (default: runs)")
    t.add_argument("--name", help="run folder name (default: MODEL-YYYYmmdd-HHMMSS)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.add_argument("--report", action="store_true",
                   help="write RUN_DIR/report (test split) when training ends")
    t.add_argument("--dry-run", action="store_true",
                   help="resolve and validate the config, print the plan (parameters, steps, SWA "
                        "snapshots, run folder), write nothing")
    _data_dir_option(t)

    e = sub.add_parser("evaluate", help="evaluate a finished run's model",
                       description="Accuracy and loss of RUN_DIR/model.pt on one split.")
    _finished_run_options(e)
    e.add_argument("--split", choices=("val", "test"), default="val",
                   help="val (default) or test; the test set is for final reporting only")

    r = sub.add_parser("reproduce", help="train the reference table's models over seeds, "
                                         "write results/table.md",
                       description="Train each model with its recipe for each seed into "
                                   "DIR/runs/MODEL-sSEED (finished runs are kept, interrupted "
                                   "ones resumed), then write DIR/table.md and DIR/table.csv.")
    r.add_argument("--models", default=",".join(REFERENCE), metavar="A,B,...",
                   help="models to train (default: all eight of the reference table)")
    r.add_argument("--seeds", default="0,1,2", metavar="S,S,...", help="seeds (default: 0,1,2)")
    r.add_argument("--budget", choices=sorted(BUDGETS), default="full",
                   help="full: each recipe as written (default); smoke: a few hundred steps "
                        "on small slices, to check the machinery")
    r.add_argument("--out", default="results", metavar="DIR", help="output folder (default: results)")
    r.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    _data_dir_option(r)
    r.add_argument("--dry-run", action="store_true",
                   help="list every run it would train, resume or keep, and check their configs; "
                        "write nothing")

    sub.add_parser("models", help="list the architectures: size, cost, paper",
                   description="Parameters, forward MFLOPs per 28x28 image (torch's FLOP "
                               "counter; a multiply-add is 2 FLOPs), output shape and paper "
                               "of every architecture.")

    rp = sub.add_parser("report", help="confusion matrix, P/R/F1, errors, curves of a run",
                        description="Write RUN_DIR/report/ (report-val/ for --split val): "
                                    "confusion matrix, per-class precision/recall/F1, the most "
                                    "confident errors, training curves, report.html and report.md.")
    _finished_run_options(rp)
    rp.add_argument("--split", choices=("test", "val"), default="test",
                    help="test (default: the final report) or val")
    rp.add_argument("--errors", type=int, default=25, metavar="N",
                    help="misclassified images in the grid (default: 25)")

    lf = sub.add_parser("lr-find", help="LR range test: suggest a peak learning rate",
                        description="Exponential LR sweep on training batches (Smith 2017) with "
                                    "the model's recipe (optimizer, batch size, augmentation); "
                                    "stops when the loss diverges. Writes DIR/lr_find-MODEL.png "
                                    "and .csv and prints a suggested maximum LR. Never uses the "
                                    "test set.")
    lf.add_argument("model", metavar="MODEL", help=f"architecture: {', '.join(sorted(MODELS))}")
    lf.add_argument("--start", type=float, default=1e-6, help="first LR (default: 1e-6)")
    lf.add_argument("--end", type=float, default=1.0, help="last LR (default: 1)")
    lf.add_argument("--steps", type=int, default=200, help="batches in the sweep (default: 200)")
    lf.add_argument("--batch-size", type=int)
    lf.add_argument("--seed", type=int)
    lf.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    _recipe_options(lf)
    lf.add_argument("--out", default="runs", metavar="DIR", help="where the plot goes (default: runs)")
    _data_dir_option(lf)

    en = sub.add_parser("ensemble", help="combine finished runs into an ensemble",
                        description="Combine finished runs (any architectures, the same validation "
                                    "and test images) by mean probability, majority vote, or a "
                                    "weighted mean fitted on the validation split. Writes "
                                    "OUT/NAME/summary.json and OUT/NAME/report/.")
    en.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    en.add_argument("--method", choices=("mean", "vote", "weighted"), default="mean",
                    help="mean (default), vote (ties: higher mean probability) or weighted")
    en.add_argument("--tta", choices=("flip",), help="test-time augmentation: also predict on "
                                                      "mirrored images and average")
    en.add_argument("--out", default="runs", metavar="DIR", help="where the folder goes (default: runs)")
    en.add_argument("--name", help="folder name (default: ensemble-YYYYmmdd-HHMMSS)")
    en.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    _data_dir_option(en)

    sp = sub.add_parser("specialists", help="add binary specialists for a run's most confused pairs",
                        description="Find the pairs of classes RUN_DIR's model confuses most on "
                                    "validation, train a binary specialist for each (the run's "
                                    "recipe, on the pair's images), choose on validation when "
                                    "each takes over, and evaluate the combination. Writes "
                                    "OUT/NAME/ with the specialists, summary.json and report/; "
                                    "rerun with the same --name to resume.")
    _finished_run_options(sp)
    sp.add_argument("--pairs", type=int, default=3, help="number of pairs (default: 3)")
    sp.add_argument("--epochs", type=int, help="specialists' epochs (default: the run's)")
    sp.add_argument("--out", default="runs", metavar="DIR", help="where the folder goes (default: runs)")
    sp.add_argument("--name", help="folder name (default: RUN_DIR's name + '-specialists')")

    tb = sub.add_parser("table", help="leaderboard of finished runs, by model",
                        description="Group finished runs by model and configuration, then print and "
                                    "write table.md, table.csv and table.html: mean ± std test "
                                    "accuracy, seeds, parameters, s/epoch, device, and the "
                                    "reference project's figures.")
    tb.add_argument("paths", nargs="+", metavar="RUN_DIR|RUNS_ROOT",
                    help="run folders, or folders to search for finished runs")
    tb.add_argument("--out", default="results", metavar="DIR",
                    help="where the tables go (default: results)")

    au = sub.add_parser("audit", help="likely label errors: the model's most confident "
                                      "disagreements with the dataset",
                        description="Rank the images of a split where RUN_DIR's model disagrees "
                                    "with the dataset's label by the model's confidence; write "
                                    "RUN_DIR/audit-SPLIT/suspects.png (the top N) and suspects.csv "
                                    "(all of them).")
    _finished_run_options(au)
    au.add_argument("--split", choices=("train", "val", "test"), default="train",
                    help="train (default: the run's training images), val or test")
    au.add_argument("--top", type=int, default=50, metavar="N",
                    help="images in the grid (default: 50)")

    pr = sub.add_parser("predict", help="classify your own image files with a finished run's model",
                        description="Classify image files (any format Pillow reads, any size or "
                                    "colour mode) with RUN_DIR's model. Each image is converted the "
                                    "way Fashion-MNIST was made: grayscale, trimmed, its longest "
                                    "side resized to 28, centred; light backgrounds are inverted "
                                    "(garments are light on black). A folder means every image in "
                                    "it (not in its subfolders). Unreadable files are reported and "
                                    "skipped, and the exit status is then 1.")
    pr.add_argument("run_dir", metavar="RUN_DIR")
    pr.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    pr.add_argument("--top-k", type=int, default=3, metavar="K",
                    help="classes to show per image (default: 3)")
    pr.add_argument("--json", action="store_true", help="one JSON object per line")
    pr.add_argument("--tta", choices=("flip",),
                    help="test-time augmentation: also predict on the mirrored image and average")
    pr.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                    help="invert intensities: auto (default: when the border is light), yes, no")
    pr.add_argument("--device", help="override the run's device")

    ex = sub.add_parser("export", help="export a finished run's model to ONNX or TorchScript",
                        description="Write RUN_DIR's model, normalization included, as a file that "
                                    "serves without fashionbench. Input: float32 pixels in [0, 255], "
                                    "shape (N, 1, 28, 28), any N; outputs: logits and probabilities.")
    ex.add_argument("run_dir", metavar="RUN_DIR")
    ex.add_argument("--format", choices=("onnx", "torchscript"), default="onnx",
                    help="onnx (default; needs pip install 'fashionbench[export]') or torchscript")
    ex.add_argument("--out", metavar="FILE",
                    help="output file (default: RUN_DIR/model.onnx or RUN_DIR/model.torchscript.pt)")

    d = sub.add_parser("data", help="download and verify the dataset, print where it is",
                       description="Fetch any missing files, verify all MD5 sums, print the location.")
    _data_dir_option(d)
    return parser


def same_command(args: argparse.Namespace) -> str:
    """The command line that was run, to run again (commands that keep finished work)."""
    return shlex.join(["fashionbench", *args.argv])


def cmd_train(args: argparse.Namespace) -> None:
    from .engine import run_config, train
    from .runs import new_run_dir

    overrides = [parse_override(f"{key}={json.dumps(getattr(args, opt))}")
                 for opt, key in TRAIN_OPTIONS.items() if getattr(args, opt) is not None]
    overrides += [parse_override(item) for item in args.set]
    if args.resume:
        run_dir = Path(args.resume)
        if overrides or args.config or args.name:
            raise UsageError("--resume continues a run exactly as configured; "
                             "drop the other training options")
        cfg = run_config(run_dir)
        if args.model and args.model != cfg.model:
            raise UsageError(f"{run_dir} trains {cfg.model}, not {args.model}")
        if (run_dir / "summary.json").exists():
            raise FashionbenchError(f"{run_dir} is already complete (summary.json exists)")
        resume = (run_dir / "checkpoint.pt").exists()  # killed before epoch 1 ended: start over
    else:
        if not args.model and not (args.config and "model" in read_yaml(args.config)):
            raise UsageError(f"name a MODEL to train (or a --config file that names one): "
                             f"{', '.join(sorted(MODELS))}")
        # A --config file names its model (a run's config.yaml does); MODEL overrides it.
        cfg = load_config(args.model, args.config, overrides)
        run_dir = new_run_dir(args.out, args.name, cfg.model)
        resume = False
    if args.dry_run:
        from .plan import run_plan
        print(run_plan(cfg, run_dir, resume))
        print("dry run: nothing trained, nothing written")
        return
    data = load_fashion_mnist(args.data_dir)
    print(f"run: {run_dir}", flush=True)
    try:
        summary = train(cfg, data, run_dir, resume=resume)
    except KeyboardInterrupt as e:
        data_dir = f" --data-dir {shlex.quote(args.data_dir)}" if args.data_dir else ""
        raise stopped(e, f"fashionbench train --resume {shlex.quote(str(run_dir))}{data_dir}") from None
    r = summary["results"]
    for weights in r:
        print(f"{weights:>4} model: val acc {r[weights]['val']['acc']:.4f}  "
              f"test acc {r[weights]['test']['acc']:.4f}")
    if cfg.one_vs_all:  # members in class-C/ have their own metrics
        print(f"results: {run_dir}/summary.json  (model {run_dir}/model.pt, "
              f"members {run_dir}/class-0 ... class-9)")
        print(f"report: {run_dir}/report/report.html")
        return
    print(f"results: {run_dir}/summary.json  (model {run_dir}/model.pt, "
          f"metrics {run_dir}/metrics.jsonl)")
    if args.report:
        from .report import report_run
        print(f"report: {report_run(run_dir, data)}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .engine import evaluate_run, run_config

    run_config(Path(args.run_dir))  # not a run folder: say so before loading any data
    result = evaluate_run(Path(args.run_dir), load_fashion_mnist(args.data_dir), args.split,
                          args.device)
    print(json.dumps(result, indent=2))


def cmd_report(args: argparse.Namespace) -> None:
    from .engine import run_config
    from .report import report_run

    if args.errors < 1:
        raise UsageError(f"--errors must be at least 1, got {args.errors}")
    run_config(Path(args.run_dir))  # not a run folder: say so before loading any data
    path = report_run(Path(args.run_dir), load_fashion_mnist(args.data_dir), args.split,
                      args.device, args.errors)
    print(f"report: {path}")


def cmd_lr_find(args: argparse.Namespace) -> None:
    from . import runs
    from .engine import Trainer
    from .lr_find import LRFinderResult, lr_find_figure, lr_range_test

    if not 0 < args.start < args.end:
        raise UsageError(f"need 0 < --start < --end, got {args.start} and {args.end}")
    if args.steps < 20:
        raise UsageError(f"--steps must be at least 20, got {args.steps}")
    overrides = [parse_override(f"{key}={json.dumps(getattr(args, opt))}")
                 for opt, key in (("batch_size", "batch_size"), ("seed", "seed"), ("device", "device"))
                 if getattr(args, opt) is not None]
    cfg = load_config(args.model, args.config, overrides + [parse_override(i) for i in args.set])
    runs.check_out_dir(args.out)
    trainer = Trainer(cfg, load_fashion_mnist(args.data_dir), Path(args.out))
    print(f"LR range test: {cfg.model}, {cfg.optim.name}, batch {cfg.batch_size}, "
          f"{args.start:g} to {args.end:g} over {args.steps} steps", flush=True)
    result = lr_range_test(trainer, args.start, args.end, args.steps)
    base = Path(args.out) / f"lr_find-{cfg.model}"
    runs.write_bytes(base.with_suffix(".png"), lr_find_figure(result, cfg.model))
    runs.write_text(base.with_suffix(".csv"), "lr,loss,smoothed_loss\n" + "".join(
        f"{lr:.6g},{loss:.6f},{sm:.6f}\n"
        for lr, loss, sm in zip(result.lrs, result.losses, result.smoothed)))
    stop = (f"stopped at LR {result.lrs[-1]:.2e}: the loss diverged" if result.diverged
            else f"reached {result.lrs[-1]:.2e} without diverging")
    print(f"{len(result.lrs)} steps, {stop}")
    print(f"smoothed loss lowest at LR {result.lrs[result.best]:.2e}")
    print(f"suggested max LR: {result.suggestion:.2e} ({LRFinderResult.RULE}); "
          f"e.g. fashionbench train {cfg.model} --lr {result.suggestion:.2g}")
    print(f"plot: {base.with_suffix('.png')}  data: {base.with_suffix('.csv')}")


def cmd_ensemble(args: argparse.Namespace) -> None:
    from .engine import run_config
    from .ensemble import ensemble_runs
    from .leaderboard import read_summary
    from .runs import new_run_dir

    # One run is one member, however its path is written (runs/a, ./runs/a, /abs/runs/a).
    members: dict[Path, Path] = {}
    for run_dir in map(Path, args.run_dirs):
        members.setdefault(run_dir.resolve(), run_dir)
    run_dirs = list(members.values())
    for run_dir in run_dirs:  # say what is wrong before loading any data
        run_config(run_dir)
        read_summary(run_dir)
    out = new_run_dir(args.out, args.name, "ensemble", resumable=False)
    if len(run_dirs) == 1:
        print(f"fashionbench: warning: an ensemble of one run ({run_dirs[0]}) is that run; "
              "name two or more to combine", file=sys.stderr, flush=True)
    summary = ensemble_runs(run_dirs, load_fashion_mnist(args.data_dir), args.method,
                            args.tta == "flip", out, args.device)
    r = summary["results"]["ensemble"]
    print(f"{summary['model']}: val acc {r['val']['acc']:.4f}  test acc {r['test']['acc']:.4f}")
    print(f"results: {out}/summary.json  report: {out}/report/report.html")


def cmd_specialists(args: argparse.Namespace) -> None:
    from .engine import run_config
    from .runs import check_out_dir
    from .specialists import check_specialists_dir, train_specialists

    if not 1 <= args.pairs <= 45:
        raise UsageError(f"--pairs must be between 1 and 45, got {args.pairs}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    run_dir = Path(args.run_dir)
    run_config(run_dir)  # not a run folder: say so before loading any data
    out = check_out_dir(args.out) / (args.name or f"{run_dir.name}-specialists")
    check_specialists_dir(out)
    try:
        summary = train_specialists(run_dir, load_fashion_mnist(args.data_dir), out, args.pairs,
                                    args.epochs, args.device)
    except KeyboardInterrupt as e:
        raise stopped(e, same_command(args)) from None
    r = summary["results"]
    print(f"test acc {r['specialists']['test']['acc']:.4f} with specialists, "
          f"{r['generalist']['test']['acc']:.4f} without")
    print(f"results: {out}/summary.json  report: {out}/report/report.html")


def cmd_table(args: argparse.Namespace) -> None:
    from .leaderboard import collect, find_runs, write_tables
    from .runs import check_out_dir

    check_out_dir(args.out)
    run_dirs = find_runs([Path(p) for p in args.paths])
    rows = collect(run_dirs)  # leaves out, with a warning each, runs it cannot use
    paths = write_tables(rows, Path(args.out),
                         f"fashionbench leaderboard ({sum(len(r.test_acc) for r in rows)} runs)")
    print(paths[0].read_text())
    print(f"tables: {', '.join(map(str, paths))}")


def cmd_audit(args: argparse.Namespace) -> None:
    from .audit import audit_run
    from .engine import run_config

    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    run_config(Path(args.run_dir))  # not a run folder: say so before loading any data
    png, table, count = audit_run(Path(args.run_dir), load_fashion_mnist(args.data_dir),
                                  args.split, args.top, args.device)
    print(f"{count} images of the {args.split} split disagree with their labels")
    print(f"most confident first: {png}  all: {table}")


def cmd_data(args: argparse.Namespace) -> None:
    data = load_fashion_mnist(args.data_dir)
    print(f"Fashion-MNIST at {data.root} (all MD5 sums verified)")
    for name, md5 in data.md5.items():  # the files read: .gz, or unpacked ones
        print(f"  {md5}  {name}")
    print(f"  train {len(data.train_labels):,} images, test {len(data.test_labels):,} images")


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise UsageError(f"{what} is empty")
    return values


def cmd_reproduce(args: argparse.Namespace) -> None:
    from .reproduce import describe_plan, reproduce, reproduce_plan
    from .runs import check_out_dir

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for model in models:
        check_model(model)
    if not models:
        raise UsageError("--models is empty")
    seeds = _int_list(args.seeds, "--seeds")
    plan = reproduce_plan(models, seeds, args.budget, check_out_dir(args.out), args.device)
    if args.dry_run:
        print(describe_plan(plan))
        print("dry run: nothing trained, nothing written")
        return
    try:
        paths = reproduce(load_fashion_mnist(args.data_dir), plan, args.budget, Path(args.out))
    except KeyboardInterrupt as e:  # finished runs are kept and the interrupted one resumes
        raise stopped(e, same_command(args)) from None
    print(paths[0].read_text())
    print(f"results: {', '.join(map(str, paths))}")


def cmd_models(args: argparse.Namespace) -> None:
    from .models import PAPERS, build_model, count_parameters, forward_flops

    rows = []
    for name in sorted(MODELS):
        model = build_model(name)
        flops, shape = forward_flops(model)
        rows.append((name, f"{count_parameters(model):,}", f"{flops / 1e6:,.1f}",
                     f"(N, {shape[1]})", PAPERS[name]))
    header = ("model", "parameters", "MFLOPs", "output", "paper")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.rjust(w) if 0 < j < 3 else cell.ljust(w)
                        for j, (cell, w) in enumerate(zip(row, widths))).rstrip())


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict_cli
    return predict_cli(args)


def cmd_export(args: argparse.Namespace) -> None:
    from .export import export_cli
    export_cli(args)


def terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 on success, 2 for a usage error (argparse's own, or a UsageError),
    1 for everything else that fails (data, files, a run that cannot go on), 130 after
    SIGINT and 143 after SIGTERM (a run says how to resume it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    # SIGTERM (schedulers, docker stop) unwinds like Ctrl-C: checkpoints stay, one line.
    main_thread = threading.current_thread() is threading.main_thread()  # where signals go
    previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    try:
        status = {"train": cmd_train, "evaluate": cmd_evaluate, "models": cmd_models,
                  "reproduce": cmd_reproduce, "report": cmd_report,
                  "lr-find": cmd_lr_find, "table": cmd_table,
                  "ensemble": cmd_ensemble, "specialists": cmd_specialists, "audit": cmd_audit,
                  "predict": cmd_predict, "export": cmd_export,
                  "data": cmd_data}[args.command](args)
    except UsageError as e:
        print(f"fashionbench: error: {e}", file=sys.stderr)
        return 2
    except FashionbenchError as e:
        print(f"fashionbench: error: {e}", file=sys.stderr)
        return getattr(e, "status", 1)
    except KeyboardInterrupt as e:
        what, status = signal_stop(e)
        print(f"fashionbench: {what}", file=sys.stderr)
        return status
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except OSError as e:  # a file-system failure not caught nearer: still one line
        from .runs import os_cause
        print(f"fashionbench: error: {e.filename or 'file system'}: {os_cause(e)}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
