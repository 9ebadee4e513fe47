"""Does one-vs-all help? The comparison in docs/experiments/one_vs_all.md.

BasicCNN with its recipe, at a reduced budget of EPOCHS epochs per network on a
stratified subset of the training images (a full-budget comparison is about 33
hours on 2 CPU cores), SEEDS seeds per row:

1. one multi-class model (and all the seeds trained for row 2);
2. an ensemble of three multi-class models (mean probability; seeds 3i..3i+2,
   so each ensemble has its own members);
3. ten one-vs-all binary networks (``fashionbench one-vs-all``);
4. the one-vs-all head (``train --head ova``);
5. the multi-class model plus specialists for its three most confused pairs;
6. one multi-class model trained as long as rows 2, 3 and 5 cost in all, in
   training images (equal compute), rounded to whole LR cycles.

Every network keeps the recipe (SWA from two thirds of the way in: the recipe's
``swa.start`` is that fraction) except ``epochs`` and the LR: constant cycle
peaks (``triangular``), because the recipe's ``exp_range`` shrinks the peak per
batch and so would anneal runs of different lengths differently, and SWA at the
cycle ends (``swa.lr=null``), not the recipe's constant-LR phase, whose one-epoch
glide would fill a third of a 4-epoch run's averaging. Each run is an
ordinary fashionbench run under OUT/runs, trained by ``train_or_resume`` (one-vs-all
by its own command's function, ensembles and specialists by the CLI); finished ones
are kept and interrupted ones resumed, so the script continues where it stopped.
Writes OUT/table.md and OUT/table.csv.

    python experiments/one_vs_all.py --epochs 4 --train-subset 10000 --seeds 3
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from fashionbench import runs
from fashionbench.config import Config, load_config, parse_override
from fashionbench.data import FashionMNIST, load_fashion_mnist
from fashionbench.tasks.one_vs_all import train_one_vs_all
from fashionbench.training import train_or_resume

CYCLE_EPOCHS = 2  # recipes/basic_cnn.yaml: a run must end at a cycle's end (lowest LR)
PAIRS = 3


def fashionbench(*args: str) -> None:
    print("$ fashionbench " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "fashionbench", *args], check=True)


def whole_cycles(epochs: float) -> int:
    return max(CYCLE_EPOCHS, CYCLE_EPOCHS * round(epochs / CYCLE_EPOCHS))


def budget(epochs: int) -> list[str]:
    """Config overrides of a run of ``epochs`` epochs (see the module docstring)."""
    return [f"epochs={epochs}", "schedule.mode=triangular", "swa.lr=null"]


def config(*overrides: str) -> Config:
    return load_config("basic_cnn", overrides=[parse_override(o) for o in overrides])


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def train(data: FashionMNIST, root: Path, name: str, cfg: Config, one_vs_all: bool = False) -> Path:
    """The run ``root/name`` of ``cfg``: kept if finished, else resumed or trained."""
    run_dir = root / name
    if not one_vs_all:
        train_or_resume(cfg, data, run_dir, name)
    elif (run_dir / "summary.json").exists():
        print(f"{name}: already complete in {run_dir}", flush=True)
    else:  # its members are kept, resumed or trained one by one
        train_one_vs_all(cfg, data, run_dir)
    return run_dir


def combine(root: Path, name: str, *args: str) -> Path:
    """An ensemble or specialists folder; an ensemble left half-made is simply redone."""
    out = root / name
    if (out / "summary.json").exists():
        print(f"{out}: complete", flush=True)
        return out
    if args[0] == "ensemble" and out.exists():
        shutil.rmtree(out)
    fashionbench(*args, "--out", str(root), "--name", name)
    return out


def networks(result: Path) -> list[Path]:
    """The runs trained for a result: itself, or the runs it combines."""
    return [Path(r) for r in summary(result).get("runs", [])] or [result]


def images(result: Path) -> int:
    """Training images a result cost, all its networks together."""
    return sum(s["epochs"] * s["train_size"] for s in map(summary, networks(result)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per network (default: 4)")
    parser.add_argument("--train-subset", type=int, default=10000,
                        help="training images (default: 10000; 55000 is all)")
    parser.add_argument("--seeds", type=int, default=3, help="results per row (default: 3)")
    parser.add_argument("--out", type=Path, default=Path("results/one-vs-all"))
    parser.add_argument("--data-dir", help="dataset folder (default: as fashionbench finds it)")
    args = parser.parse_args()
    if args.epochs % CYCLE_EPOCHS:
        parser.error(f"--epochs must be a multiple of the recipe's {CYCLE_EPOCHS}-epoch cycle")
    root = args.out / "runs"
    data = load_fashion_mnist(args.data_dir)
    common = [f"data.train_subset={args.train_subset}"]
    e = args.epochs
    seeds = range(args.seeds)

    singles = {s: train(data, root, f"single-s{s}", config(*common, *budget(e), f"seed={s}"))
               for s in range(3 * args.seeds)}
    rows: dict[str, list[Path]] = {
        "one multi-class model": [],
        f"one multi-class model, all {len(singles)} seeds (the ensembles' members)": list(singles.values()),
        **{k: [] for k in ("ensemble of three", "ten one-vs-all networks", "one-vs-all head",
                           "multi-class + specialists")}}
    for s in seeds:
        rows["one multi-class model"].append(singles[s])
        rows["ensemble of three"].append(combine(
            root, f"ensemble-{s}", "ensemble", *(str(singles[3 * s + k]) for k in range(3))))
        rows["ten one-vs-all networks"].append(train(
            data, root, f"one-vs-all-s{s}", config(*common, *budget(e), f"seed={s}"), one_vs_all=True))
        rows["one-vs-all head"].append(train(
            data, root, f"ova-head-s{s}", config(*common, *budget(e), f"seed={s}", "head=ova")))
        rows["multi-class + specialists"].append(combine(
            root, f"specialists-s{s}", "specialists", str(singles[s]), "--pairs", str(PAIRS)))

    single_cost = images(singles[0])
    for row in ("ensemble of three", "ten one-vs-all networks", "multi-class + specialists"):
        epochs = whole_cycles(e * images(rows[row][0]) / single_cost)
        rows[f"one model, {epochs} epochs (the compute of: {row})"] = [
            train(data, root, f"single-{epochs}ep-s{s}", config(*common, *budget(epochs), f"seed={s}"))
            for s in seeds]

    table = [{"row": row, "networks": len(networks(dirs[0])),
              "compute": statistics.mean(images(d) for d in dirs) / single_cost,
              "minutes": statistics.mean(sum(summary(n)["train_seconds"] for n in networks(d))
                                         for d in dirs) / 60,
              "val": [100 * summary(d)["val_acc"] for d in dirs],
              "test": [100 * summary(d)["test_acc"] for d in dirs]}
             for row, dirs in rows.items()]
    write_tables(args, table)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def write_tables(args: argparse.Namespace, table: list[dict]) -> None:
    stats = [{k: mean_std(r[k]) for k in ("val", "test")} for r in table]
    base = stats[0]["test"][0]
    md = [f"BasicCNN, {args.epochs} epochs per network on {args.train_subset:,} training images, "
          f"{args.seeds} seeds per row; validation 5,000, test 10,000 images.", "",
          "| | networks | compute (× one model) | training min | val % | **test %** | test vs one model |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["row", "networks", "compute", "minutes", "val_mean", "val_std", "test_mean", "test_std",
                     "test_each"])
    for r, st in zip(table, stats):
        (vm, vs), (tm, ts) = st["val"], st["test"]
        md.append(f"| {r['row']} | {r['networks']} | {r['compute']:.1f} | {r['minutes']:.1f} "
                  f"| {vm:.2f} ± {vs:.2f} | **{tm:.2f} ± {ts:.2f}** | {tm - base:+.2f} |")
        writer.writerow([r["row"], r["networks"], f"{r['compute']:.2f}", f"{r['minutes']:.2f}",
                         f"{vm:.2f}", f"{vs:.2f}", f"{tm:.2f}", f"{ts:.2f}",
                         " ".join(f"{t:.2f}" for t in r["test"])])
    runs.write_text(args.out / "table.md", "\n".join(md) + "\n")
    runs.write_text(args.out / "table.csv", buf.getvalue())
    print("\n".join(md))


if __name__ == "__main__":
    main()
