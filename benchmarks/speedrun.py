"""Time to accuracy: the speedrun recipe, BasicCNN's recipe, BasicCNN with the
conventional pipeline's settings through our engine, and the conventional PyTorch
pipeline, side by side in one run.

- **speedrun**: ``recipes/speedrun_net.yaml`` (or ``--speedrun-recipe FILE``) through
  fashionbench's engine (``Trainer.train_epoch``: data on the device, batched
  augmentation, bf16 where the CPU has it), at ``--speedrun-epochs`` (default: the
  recipe's); its final point is the model its run reports (the moving average's, where
  the recipe has ema).
- **basic_cnn recipe**: ``recipes/basic_cnn.yaml`` through the same engine, its 30
  epochs of cyclic LR and SWA; its final point is the averaged model, after the
  BatchNorm recompute (timed: it is part of making that model).
- **engine**: BasicCNN with the conventional pipeline's settings below (SGD 0.01
  momentum 0.9, no weight decay, no schedule, no SWA, no label smoothing, batch 128,
  flip 0.1, zoom 0.05, fp32, no test-time flips, as many epochs) through the same engine:
  the same network, settings and evaluation as **conventional**, so the ratio of the
  two is the engine's share alone (data on the device, augmentation batched), and the
  speedrun's ratio beyond it is the recipe's. The augmentation draws differ (one batch
  at a time, not one image at a time); its probabilities and ranges are the same.
- **conventional**: what most tutorials write, with the reference's settings: BasicCNN,
  SGD lr 0.01 momentum 0.9 (no weight decay, no schedule), batch 128, a ``Dataset``
  that flips (0.1) and zooms (0.05) one image at a time, a ``DataLoader`` with worker
  processes and shuffling (workers started anew each epoch, as by default), fp32.

All three train on the same 55,000 images and are judged on the same 5,000-image
validation split (the test split is not touched). Each pipeline's clock counts its
training only: the validation pass after each epoch, which the training does not depend
on, is not timed. The pipelines take one epoch each in turn, round after round, so a
noisy machine slows them alike. A pipeline stops at the end of its recipe, at
``--max-epochs`` (conventional), or once its training time passes ``--max-minutes``.

The whole comparison runs ``--repeats`` times (default 3), one after another: a speed
claim is the median and range of several runs, never one. Each repeat prints the table of
seconds to 90, 92, 93 and 94% validation accuracy (a threshold is reached at the first
epoch whose validation accuracy is at or above it) and the ratios (conventional/each, and
engine/each: conventional/engine is the engine's share, engine/speedrun the recipe's), and
is kept in OUT/repeat-K.json as it ends, so that an interrupted benchmark, run again with
the same settings, resumes at the next repeat. At the end: the median and range of every
figure over the repeats, OUT/speedrun_benchmark.json (every repeat's figures, the first
repeat's curves, the environment) and OUT/speedrun_benchmark.png (accuracy against seconds,
every repeat).

    python benchmarks/speedrun.py [--out results/benchmarks/speedrun] [--repeats 3] [--max-minutes 25] [--data-dir DIR]
    python benchmarks/speedrun.py --tiny --out /tmp/speedrun   # checks the script, figures mean nothing
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fashionbench import runs
from fashionbench.config import load_config, parse_override
from fashionbench.data import load_fashion_mnist
from fashionbench.hardware import cpu_has_native_bf16
from fashionbench.inference import evaluate
from fashionbench.models import build_model
from fashionbench.splits import prepare_splits
from fashionbench.training import Trainer

from throughput import ConventionalDataset  # benchmarks/ is on sys.path when run as a script

THRESHOLDS = (90.0, 92.0, 93.0, 94.0)


class Engine:
    """A recipe through fashionbench's Trainer, one epoch at a time."""

    def __init__(self, name: str, recipe: str, data, tmp: Path, overrides: list[str], config_file: str | None = None):
        self.name = name
        cfg = load_config(None if config_file else recipe, config_file,
                          [parse_override(o) for o in ["device=cpu", "eval.test=false", *overrides]])
        recipe = config_file or recipe
        self.trainer = Trainer(cfg, data, tmp / name.replace(" ", "-"))
        self.epochs = cfg.epochs
        self.describe = (f"{recipe}: {cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.optim.name} peak "
                         f"{cfg.optim.lr:g}, {self.trainer.precision}")

    @property
    def finished(self) -> bool:
        return self.trainer.epoch >= self.epochs

    def epoch(self) -> tuple[float, float, str]:
        t = self.trainer
        row = t.train_epoch()
        t.epoch += 1
        t.history.append(row)
        finals = [model for hook in t.hooks for model in hook.final_models(t)]
        if not self.finished or not finals:
            return row["seconds"], row["val_acc"], "live"
        # The recipe's final model is the one its run reports (the last listed: SWA's or the
        # moving average's); making it is training time (SWA's BatchNorm pass).
        start = time.perf_counter()
        model = finals[-1].make()
        return row["seconds"] + time.perf_counter() - start, t.evaluate(model, "val")["acc"], finals[-1].name


class Conventional:
    """BasicCNN with the reference's settings through a per-image DataLoader pipeline."""

    def __init__(self, data, workers: int, max_epochs: int, overrides: list[str]):
        cfg = load_config("basic_cnn", None, [parse_override(o) for o in ["device=cpu", *overrides]])
        splits = prepare_splits(data, cfg, torch.device("cpu"))  # the same split as ours
        self.val = splits["val"]
        torch.manual_seed(0)
        self.model = build_model("basic_cnn")
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        dataset = ConventionalDataset(splits["train"].images, splits["train"].labels, flip=0.1, zoom=0.05)
        self.loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=workers)
        self.epochs, self.done = max_epochs, 0
        self.name = "conventional"
        self.describe = (f"basic_cnn: SGD 0.01 momentum 0.9, batch 128, flip 0.1 zoom 0.05 per image, "
                         f"DataLoader {workers} workers, fp32, at most {max_epochs} epochs")

    @property
    def finished(self) -> bool:
        return self.done >= self.epochs

    def epoch(self) -> tuple[float, float, str]:
        self.model.train()
        start = time.perf_counter()
        for x, y in self.loader:  # worker start-up included: it is paid every epoch
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        seconds = time.perf_counter() - start
        self.done += 1
        return seconds, evaluate(self.model, self.val, "fp32", channels_last=False)["acc"], "live"


def conventional_settings(epochs: int) -> list[str]:
    """``Conventional``'s training and evaluation as config overrides of BasicCNN's recipe."""
    return ["optim.name=sgd", "optim.lr=0.01", "optim.momentum=0.9", "optim.nesterov=false",
            "optim.weight_decay=0", "schedule.name=constant", "swa.enabled=false", "label_smoothing=0",
            "batch_size=128", "augment.flip=0.1", "augment.zoom=0.05", "augment.translate=0", "augment.erase=0",
            "precision=fp32", "channels_last=false", "eval.tta=false", f"epochs={epochs}"]


def time_to(curve: list[dict], threshold: float) -> float | None:
    """Training seconds at the first point at or above ``threshold`` % validation accuracy."""
    return next((p["seconds"] for p in curve if 100 * p["val_acc"] >= threshold), None)


def epochs_list(text: str) -> list[int]:
    try:
        epochs = [int(e) for e in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs such as 17 or 3,4, got {text!r}") from None
    if min(epochs) < 1:
        raise argparse.ArgumentTypeError("epochs must be at least 1")
    return epochs


def plot(repeats: list[dict[str, list[dict]]], path: Path) -> None:
    """Accuracy against seconds: one colour per pipeline, one line per repeat."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for i, name in enumerate(repeats[0]):
        for k, curves in enumerate(repeats):
            curve = curves[name]
            ax.plot([p["seconds"] for p in curve], [100 * p["val_acc"] for p in curve], marker="o", ms=3,
                    color=f"C{i}", alpha=1.0 if k == 0 else 0.4, label=name if k == 0 else None)
    for threshold in THRESHOLDS:
        ax.axhline(threshold, color="0.8", lw=0.8, zorder=0)
    ax.set(xscale="log", xlabel="training seconds (validation passes not counted)",
           ylabel="validation accuracy %", ylim=(85, 95.5),
           title="Fashion-MNIST: time to accuracy" + (f" ({len(repeats)} repeats)" if len(repeats) > 1 else ""))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# The pipelines whose time the ratios divide: the conventional one, and the engine at the
# conventional settings (so conventional/engine is the engine's share, engine/speedrun the recipe's).
SLOWER = ("conventional", "engine, conventional settings")


def compare(pipelines: list, max_minutes: float) -> dict:
    """One comparison: the pipelines an epoch each in turn until each stops; their curves,
    seconds to each threshold, why each stopped, and the ratios to each threshold."""
    curves: dict[str, list[dict]] = {p.name: [] for p in pipelines}
    stopped: dict[str, str] = {}
    live = list(pipelines)
    while live:
        for p in list(live):
            seconds, acc, weights = p.epoch()
            curve = curves[p.name]
            total = (curve[-1]["seconds"] if curve else 0.0) + seconds
            curve.append({"epoch": len(curve) + 1, "seconds": total, "val_acc": acc, "weights": weights})
            print(f"{p.name:<18} epoch {len(curve):3d}  {total:8.1f} s  val {100 * acc:.2f}%", flush=True)
            if p.finished:
                stopped[p.name] = "end of its recipe" if isinstance(p, Engine) else f"{p.epochs} epochs"
            elif total > 60 * max_minutes:
                stopped[p.name] = f"--max-minutes {max_minutes:g}"
            if p.name in stopped:
                live.remove(p)
    table = {name: {f"{t:g}": time_to(curve, t) for t in THRESHOLDS} for name, curve in curves.items()}
    ratios, at_least = {}, {}
    for slow in (n for n in SLOWER if n in table):
        for name in (n for n in table if n != slow and not (slow == SLOWER[1] and n == SLOWER[0])):
            for t, theirs in table[slow].items():
                ours = table[name][t]
                if theirs is not None and ours is not None:
                    ratios[f"{slow}/{name} to {t}%"] = theirs / ours
                elif ours is not None:  # the slower never got there: its whole time is a lower bound
                    at_least[f"{slow}/{name} to {t}%"] = curves[slow][-1]["seconds"] / ours
    return {"curves": curves, "seconds_to": table, "stopped": stopped, "ratios": ratios, "ratios_at_least": at_least}


def print_comparison(result: dict) -> None:
    curves, table, stopped = result["curves"], result["seconds_to"], result["stopped"]
    print("\n| pipeline | " + " | ".join(f"s to {t:g}%" for t in THRESHOLDS) + " | best val % | epochs | stopped at |")
    print("|---|" + "---:|" * (len(THRESHOLDS) + 2) + "---|")
    for name, curve in curves.items():
        cells = " | ".join("-" if v is None else f"{v:.0f}" for v in table[name].values())
        print(f"| {name} | {cells} | {100 * max(p['val_acc'] for p in curve):.2f} | {len(curve)} | {stopped[name]} |")
    if result["ratios"] or result["ratios_at_least"]:
        print("\n| ratio (slower seconds / faster) | |\n|---|---:|")
        for key, value in result["ratios"].items():
            print(f"| {key} | {value:.1f}x |")
        for key, value in result["ratios_at_least"].items():
            print(f"| {key} (never reached by the slower) | > {value:.1f}x |")


def spread(values: list[float]) -> dict:
    """Median, range and count of a figure over the repeats that have it."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(repeats: list[dict]) -> dict:
    """Over the repeats: each pipeline's seconds to each threshold and each ratio, as median and range
    (over the repeats that reached it; ``n`` says how many)."""
    seconds_to = {name: {t: spread(reached) if (reached := [r["seconds_to"][name][t] for r in repeats
                                                             if r["seconds_to"][name][t] is not None]) else None
                         for t in row}
                  for name, row in repeats[0]["seconds_to"].items()}
    keys = dict.fromkeys(k for r in repeats for k in r["ratios"])
    ratios = {k: spread([r["ratios"][k] for r in repeats if k in r["ratios"]]) for k in keys}
    return {"seconds_to": seconds_to, "ratios": ratios}


def print_summary(summary: dict, n: int) -> None:
    print(f"\nOver {n} repeats, median (range); n: the repeats that reached the threshold")
    print("\n| pipeline | " + " | ".join(f"s to {t:g}%" for t in THRESHOLDS) + " |")
    print("|---|" + "---:|" * len(THRESHOLDS))
    for name, row in summary["seconds_to"].items():
        cells = " | ".join("-" if v is None else f"{v['median']:.0f} ({v['min']:.0f}-{v['max']:.0f}, n={v['n']})"
                           for v in row.values())
        print(f"| {name} | {cells} |")
    if summary["ratios"]:
        print("\n| ratio (slower seconds / faster) | median | range | n |\n|---|---:|---|---:|")
        for key, v in summary["ratios"].items():
            print(f"| {key} | {v['median']:.1f}x | {v['min']:.1f}-{v['max']:.1f}x | {v['n']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/benchmarks/speedrun", help="folder for the JSON and the plot")
    parser.add_argument("--repeats", type=int, default=3,
                        help="whole comparisons, one after another (default: 3): the figures are their median "
                             "and range; each finished one is kept in OUT/repeat-K.json and not run again")
    parser.add_argument("--max-minutes", type=float, default=25.0,
                        help="stop a pipeline once its training time passes this (default: 25)")
    parser.add_argument("--max-epochs", type=int, default=30, help="the conventional pipeline's epochs at most")
    parser.add_argument("--speedrun-epochs", type=epochs_list, default=[None],
                        help="the speedrun recipe's epochs (default: the recipe's); several, comma-separated, "
                             "run side by side as 'speedrun N epochs': a one-cycle schedule's time to an "
                             "accuracy is the shortest run that ends there")
    parser.add_argument("--speedrun-recipe", metavar="FILE",
                        help="the recipe the speedrun pipeline trains (default: recipes/speedrun_net.yaml)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (conventional)")
    parser.add_argument("--pipelines", default="speedrun,basic_cnn,engine,conventional",
                        help="which to run, comma-separated (default: all four)")
    parser.add_argument("--train-subset", type=int, help="train on N images: a quick check, not a figure")
    parser.add_argument("--data-dir")
    parser.add_argument("--tiny", action="store_true",
                        help="a quick check of the script (every pipeline for 2 epochs of 1,000 images): "
                             "its figures mean nothing")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.tiny:
        args.train_subset, args.max_epochs = 1000, 2

    overrides = [f"data.train_subset={args.train_subset}"] if args.train_subset else []
    if args.tiny:  # both recipes end (basic_cnn's with its SWA model) within two short epochs
        overrides += ["data.val_size=500", "epochs=2"]
    chosen = args.pipelines.split(",")
    several = len(args.speedrun_epochs) > 1

    def makers(tmp: Path) -> dict[str, Callable[[], list]]:
        return {
            "speedrun": lambda: [Engine(f"speedrun {e} epochs" if several else "speedrun", "speedrun_net", data,
                                        tmp, overrides + ([f"epochs={e}"] if e else []), args.speedrun_recipe)
                                 for e in args.speedrun_epochs],
            "basic_cnn": lambda: [Engine("basic_cnn recipe", "basic_cnn", data, tmp, overrides)],
            "engine": lambda: [Engine("engine, conventional settings", "basic_cnn", data, tmp,
                                      overrides + conventional_settings(args.max_epochs))],
            "conventional": lambda: [Conventional(data, args.workers, args.max_epochs, overrides)],
        }

    known = list(makers(Path()))
    unknown = set(chosen) - set(known)
    if unknown:
        parser.error(f"unknown pipeline(s) {', '.join(sorted(unknown))}; choose from {', '.join(known)}")
    data = load_fashion_mnist(args.data_dir)  # after every check of the arguments: a mistake costs no load
    # What makes a kept repeat part of this comparison: a repeat run with other settings is refused.
    settings = {"pipelines": chosen, "speedrun_epochs": args.speedrun_epochs, "max_minutes": args.max_minutes,
                "max_epochs": args.max_epochs, "workers": args.workers, "train_subset": args.train_subset,
                "tiny": args.tiny, **({"speedrun_recipe": args.speedrun_recipe} if args.speedrun_recipe else {})}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}")
    repeats, described = [], {}
    for k in range(1, args.repeats + 1):
        path = out / f"repeat-{k}.json"
        if path.is_file():
            kept = json.loads(path.read_text())
            if kept["settings"] != settings:
                sys.exit(f"error: {path} was run with other settings ({kept['settings']}); "
                         f"this run's: {settings}. Use another --out, or remove it")
            print(f"repeat {k} of {args.repeats}: kept from {path}")
            repeats.append(kept)
            described = kept["pipelines"]
            continue
        print(f"repeat {k} of {args.repeats}")
        with tempfile.TemporaryDirectory() as tmp:
            pipelines = [p for name in chosen for p in makers(Path(tmp))[name]()]
            described = {p.name: p.describe for p in pipelines}
            for p in pipelines:
                print(f"  {p.name}: {p.describe}")
            result = compare(pipelines, args.max_minutes)
        print_comparison(result)
        result = {"repeat": k, "settings": settings, "pipelines": described, **result, **runs.environment()}
        runs.write_text(path, json.dumps(result, indent=2) + "\n")  # kept: an interrupted benchmark resumes here
        repeats.append(result)

    summary = summarize(repeats)
    if len(repeats) > 1:
        print_summary(summary, len(repeats))
    result = {"pipelines": described, "repeats": len(repeats), "summary": summary,
              # The first repeat's figures, in the form a one-repeat record has always had them.
              **{key: repeats[0][key] for key in ("curves", "seconds_to", "stopped", "ratios", "ratios_at_least")},
              "per_repeat": [{key: r[key] for key in ("seconds_to", "ratios", "stopped", "git_commit", "command")}
                             for r in repeats],
              "max_minutes": args.max_minutes, "train_subset": args.train_subset, "tiny": args.tiny,
              "data_md5": data.md5, **runs.environment()}
    runs.write_text(out / "speedrun_benchmark.json", json.dumps(result, indent=2) + "\n")
    plot([r["curves"] for r in repeats], out / "speedrun_benchmark.png")
    print(f"\nwrote {out / 'speedrun_benchmark.json'} and {out / 'speedrun_benchmark.png'}")


if __name__ == "__main__":
    main()
