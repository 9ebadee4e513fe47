"""Commands on a finished run: evaluate, report, audit, predict, export, calibrate, robustness."""

from __future__ import annotations

import argparse
import json
import sys

from .. import api
from .options import (
    MAX_SHOWN,
    between,
    comma_list,
    data_dir_option,
    device_option,
    options,
    run_dir_argument,
    tracking,
    tracking_options,
)


def finished_run_parent() -> argparse.ArgumentParser:
    return options(run_dir_argument, device_option, data_dir_option)


def add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", parents=[finished_run_parent()], help="evaluate a finished run's model",
                       description="Accuracy and loss of RUN_DIR's final model on one split.")
    e.add_argument("--split", choices=("val", "test"), default="val",
                   help="val (default) or test; the test set is for final reporting only")
    e.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> None:
    print(json.dumps(api.evaluate(args.run_dir, args.split, data_dir=args.data_dir, device=args.device), indent=2))


def add_report(sub) -> None:
    rp = sub.add_parser("report", parents=[finished_run_parent(), options(tracking_options)],
                        help="confusion matrix, P/R/F1, errors, curves of a run",
                        description="Write RUN_DIR/report/ (report-val/ for --split val): "
                                    "confusion matrix, per-class precision/recall/F1, the most "
                                    "confident errors, training curves, report.html and report.md.")
    rp.add_argument("--split", choices=("test", "val"), default="test",
                    help="test (default: the final report) or val")
    rp.add_argument("--errors", type=between(1, MAX_SHOWN), default=25, metavar="N",
                    help="misclassified images in the grid (default: 25)")
    rp.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> None:
    path = api.report(args.run_dir, args.split, errors=args.errors, data_dir=args.data_dir, device=args.device,
                      **tracking(args))
    print(f"report: {path}")


def add_audit(sub) -> None:
    au = sub.add_parser("audit", parents=[finished_run_parent()],
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


def cmd_audit(args: argparse.Namespace) -> None:
    png, table, count = api.audit(args.run_dir, args.split, top=args.top, data_dir=args.data_dir,
                                  device=args.device)
    print(f"{count} images of the {args.split} split disagree with their labels")
    print(f"most confident first: {png}  all: {table}")


def add_predict(sub) -> None:
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
    # At most the run's classes: the API checks that, knowing the run.
    pr.add_argument("--top-k", type=between(1, None), default=3, metavar="K",
                    help="classes to show per image (default: 3)")
    pr.add_argument("--json", action="store_true", help="one JSON object per line")
    pr.add_argument("--tta", choices=("flip",),
                    help="test-time augmentation: also predict on the mirrored image and average")
    pr.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                    help="invert intensities: auto (default: when the border is light), yes, no")
    pr.add_argument("--no-temperature", action="store_true",
                    help="the network's own probabilities, without dividing its logits by the run's "
                         "temperature (fitted on validation; see fashionbench calibrate)")
    pr.set_defaults(func=cmd_predict)


def report_error(message: str) -> None:
    print(f"fashionbench: error: {message}", file=sys.stderr, flush=True)


def cmd_predict(args: argparse.Namespace) -> int:
    """The top-k classes of every image, a batch at a time (memory stays flat, output
    flows); 1 if any file could not be read, else 0. An output's index is its
    Fashion-MNIST class, or for a binary run 0 (the other side) or 1 (the positive class)."""
    failed = False

    def unreadable(message: str) -> None:
        nonlocal failed
        failed = True
        report_error(message)

    loaded = api.load_run(args.run_dir).load(args.device)  # refused before any image is read
    api.check_top_k(loaded, args.top_k, "--top-k")
    files = api.image_files(args.images, on_error=unreadable)
    file_width = max((len(str(f)) for f in files), default=0)
    width = max(map(len, api.class_names(loaded.cfg)))
    for start in range(0, len(files), api.PREDICT_BATCH):
        batch = files[start:start + api.PREDICT_BATCH]
        for p in api.predict(loaded, batch, top_k=args.top_k, tta=args.tta == "flip", invert=args.invert,
                             temperature=not args.no_temperature, on_error=unreadable):
            if args.json:
                print(json.dumps({"file": p.source, "top_k": [
                    {"class": name, "index": index, "probability": round(prob, 6)}
                    for (name, prob), index in zip(p.top_k, p.indices)]}))
            else:
                print(f"{p.source:<{file_width}}  " + "  ".join(f"{name:<{width}} {prob:.3f}"
                                                               for name, prob in p.top_k))
        sys.stdout.flush()
    return 1 if failed else 0


def add_export(sub) -> None:
    ex = sub.add_parser("export", parents=[options(run_dir_argument, tracking_options)],
                        help="export a finished run's model to ONNX or TorchScript",
                        description="Write RUN_DIR's model, normalization included, as a file that "
                                    "serves without fashionbench. Input: float32 pixels in [0, 255], "
                                    "shape (N, 1, 28, 28), any N; outputs: logits and probabilities.")
    ex.add_argument("--format", choices=("onnx", "torchscript"), default="onnx",
                    help="onnx (default; needs pip install 'fashionbench[export]') or torchscript")
    ex.add_argument("--out", metavar="FILE",
                    help="output file (default: RUN_DIR/model.onnx or RUN_DIR/model.torchscript.pt)")
    ex.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> None:
    exported = api.export(args.run_dir, args.format, args.out, **tracking(args))
    meta, path = exported.metadata, exported.path
    kind = f"ONNX opset {api.ONNX_OPSET}" if args.format == "onnx" else "TorchScript"
    classes = len(json.loads(meta["class_names"]))
    accuracy = "validation only" if meta["test_acc"] == "null" else f"test acc {float(meta['test_acc']):.4f}"
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {kind}): {meta['model']}, "
          f"{meta['weights']} weights, {accuracy}")
    print(f"input: {api.INPUT_CONTRACT}")
    print(f"outputs: logits (N, {classes}), probabilities (N, {classes}); "
          "class names in the file's metadata (class_names)")


def add_calibrate(sub) -> None:
    ca = sub.add_parser("calibrate", parents=[finished_run_parent()],
                        help="fit the temperature of a run finished before temperature scaling",
                        description="Fit RUN_DIR's temperature on its validation split (the one scalar "
                                    "its logits are divided by, minimizing validation NLL) and add it to "
                                    "its summary with the expected calibration error, NLL and Brier "
                                    "score on validation and test before and after it. Runs trained by "
                                    "this version do this as they finish; a run that has it is left as "
                                    "it is. predict, the Python API and export then use it.")
    ca.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> None:
    before = api.load_run(args.run_dir).summary.temperature_scaling  # not a run: refused before any data loads
    summary = api.calibrate(args.run_dir, data_dir=args.data_dir, device=args.device)
    scaling = summary.temperature_scaling
    print(f"{args.run_dir}: {'already calibrated' if before else 'calibrated'}: temperature "
          f"{scaling['temperature']:.4f} (fitted on validation)")
    for split, scores in scaling["before"].items():
        after = scaling["after"][split]
        print(f"  {split:<4}  " + "  ".join(f"{name.upper() if name != 'brier' else 'Brier'} "
                                             f"{scores[name]:.4f} -> {after[name]:.4f}"
                                             for name in ("ece", "nll", "brier")))
def corruption_names(text: str) -> list[str]:
    """--types: comma-separated corruption names, each one the API knows."""
    names = comma_list(str)(text)
    try:
        return api.check_corruptions(names)
    except api.UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_robustness(sub) -> None:
    ro = sub.add_parser("robustness", parents=[finished_run_parent(), options(tracking_options)],
                        help="accuracy under common corruptions (noise, blur, fog, JPEG, rotation, ...)",
                        description="Evaluate RUN_DIR (a trained run, or an ensemble) on its test images "
                                    f"under {len(api.CORRUPTIONS)} corruptions at 5 severities each, as "
                                    "ImageNet-C and Fashion-MNIST-C do; write RUN_DIR/robustness.json "
                                    "and print accuracy per corruption and severity, and the mean "
                                    "corruption accuracy (mCA). Corrupted images are cached (--cache-dir).")
    ro.add_argument("--types", type=corruption_names, metavar="NAMES",
                    help=f"comma-separated corruptions (default: all): {', '.join(api.CORRUPTIONS)}")
    ro.add_argument("--severities", type=comma_list(int, 1, 5), metavar="LEVELS",
                    help="comma-separated severities from 1 to 5 (default: all)")
    ro.add_argument("--seed", type=between(0, 2**31 - 1), default=0,
                    help="seed of the random corruptions (default: 0)")
    ro.add_argument("--batch-size", type=between(1, api.MAX_BATCH), default=1000, metavar="N",
                    help="images predicted at a time (default: 1000)")
    ro.add_argument("--cache-dir", metavar="DIR",
                    help=f"where corrupted test sets are kept (default: ${api.CORRUPTIONS_DIR_ENV}, else "
                         "the per-user cache's fashionbench/corruptions)")
    ro.set_defaults(func=cmd_robustness)


def cmd_robustness(args: argparse.Namespace) -> None:
    record = api.robustness(args.run_dir, types=args.types, severities=args.severities, seed=args.seed,
                            batch_size=args.batch_size, data_dir=args.data_dir, device=args.device,
                            cache_dir=args.cache_dir, **tracking(args))
    print(api.robustness_table(record))
    print(f"wrote {api.Run(args.run_dir).robustness_path}")
