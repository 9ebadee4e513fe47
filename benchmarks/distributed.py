"""What a run costs at several world sizes: one training configuration run as one
process and under torchrun with N processes, interleaved over repeats so that a noisy
machine slows all of them alike. Prints a table (median training seconds per epoch,
speed-up over one process, images per second, accuracies) and writes OUT/distributed.json.

On CPUs the machine's cores are shared out: each of N processes gets cores/N threads,
so the comparison is one process using every core against N processes splitting them
(the question a CPU user has: does torchrun help here?). On GPUs each process gets its
own GPU (--device cuda).

    python benchmarks/distributed.py --ranks 1,2 --out results/distributed [--data-dir DIR]
    python benchmarks/distributed.py --ranks 1,2,4,8 --device cuda --epochs 3 --train-subset 0
    python benchmarks/distributed.py --tiny --out /tmp/distributed   # checks the script, figures mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from fashionbench.runs import environment


def command(ranks: int, args: argparse.Namespace, run_dir: Path) -> list[str]:
    train = ["basic_cnn", "--epochs", str(args.epochs), "--out", str(run_dir.parent), "--name", run_dir.name,
             "--device", args.device, "--set", "data.test_subset=2000", "--set", "swa.start=2"]
    if args.train_subset:
        train += ["--train-subset", str(args.train_subset)]
    if args.tiny:  # the validation pass after each epoch, 5,000 images, would be most of it
        train += ["--set", "data.val_size=500"]
    if args.data_dir:
        train += ["--data-dir", args.data_dir]
    if ranks == 1:
        return [sys.executable, "-m", "fashionbench", "train", *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
            "-m", "fashionbench", "train", *train]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="1,2", help="world sizes to compare (default: 1,2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, interleaved (default: 2)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-subset", type=int, default=20000, help="0: all 55,000 (default: 20000)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir")
    parser.add_argument("--tiny", action="store_true", help="a quick check of the script: its figures mean nothing")
    parser.add_argument("--out", default="results/distributed")
    args = parser.parse_args()
    if args.tiny:
        args.ranks, args.repeats, args.epochs, args.train_subset = "1,2", 1, 2, 512
    ranks = [int(r) for r in args.ranks.split(",")]
    cores = len(os.sched_getaffinity(0))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    measured: dict[int, list[dict]] = {r: [] for r in ranks}
    for repeat in range(args.repeats):
        for r in ranks:
            run_dir = out / f"ranks{r}-{repeat}"
            threads = {} if args.device != "cpu" else {"OMP_NUM_THREADS": str(max(1, cores // r))}
            result = subprocess.run(command(r, args, run_dir), capture_output=True, text=True,
                                    env={**os.environ, **threads})
            if result.returncode != 0:
                sys.exit(f"{r} process(es) failed:\n{result.stderr[-3000:]}")
            summary = json.loads((run_dir / "summary.json").read_text())
            measured[r].append(summary)
            print(f"repeat {repeat}, {r} process(es): {summary['seconds_per_epoch']:.1f} s/epoch", flush=True)
    one = statistics.median(s["seconds_per_epoch"] for s in measured[ranks[0]])
    rows = []
    for r in ranks:
        spe = statistics.median(s["seconds_per_epoch"] for s in measured[r])
        first = measured[r][0]
        rows.append({"processes": r, "threads_each": max(1, cores // r) if args.device == "cpu" else None,
                     "seconds_per_epoch": spe, "speedup": one / spe,
                     "images_per_s": first["train_size"] / spe, "val_acc": first["val_acc"],
                     "test_acc_2000": first["test_acc"], "backend": first.get("backend"),
                     "device": first["device"]})
    print(f"\nBasicCNN, {args.epochs} epochs of {measured[ranks[0]][0]['train_size']:,} images, "
          f"{args.device}, median of {args.repeats}:")
    print("| processes | s/epoch | speed-up | img/s | val acc | test acc (2,000) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['processes']} | {row['seconds_per_epoch']:.1f} | {row['speedup']:.2f}x | "
              f"{row['images_per_s']:.0f} | {row['val_acc']:.4f} | {row['test_acc_2000']:.4f} |")
    record = {"args": vars(args), "cores": cores, "rows": rows, **environment()}  # with the machine and command
    (out / "distributed.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
