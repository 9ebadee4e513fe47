"""Several trainings on one machine: does each get its share?

Starts N BasicCNN trainings at once (N in --counts, 1 being the run alone) under two
thread policies and measures each process's training speed in its middle epoch, when
all of them are training:

- ``torch-default``: every process takes one intra-op thread per core, as torch does
  by itself (fashionbench before threads.py; here FASHIONBENCH_THREADS=<cores>);
- ``shared``: fashionbench's default, each process ``cores // N`` threads (threads.py).

The figure is each process's images per second as a fraction of one run alone (the
goal: about 1/N), and all N together against one alone. Policies and counts are
interleaved within each repeat, so a machine that slows down slows all of them alike.
Prints a table (median and range over repeats) and writes OUT/concurrency.json.

    python benchmarks/concurrency.py --counts 1,2,4 --repeats 3 --out results/benchmarks/concurrency
    python benchmarks/concurrency.py --tiny --out /tmp/concurrency   # checks the script, figures mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

POLICIES = ("torch-default", "shared")


def start(index: int, policy: str, args: argparse.Namespace, out: Path, cores: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FASHIONBENCH_THREADS")}
    if policy == "torch-default":
        env["FASHIONBENCH_THREADS"] = str(cores)
    cmd = [sys.executable, "-m", "fashionbench", "train", "basic_cnn", "--out", str(out), "--name", f"p{index}",
           "--epochs", str(args.epochs), "--train-subset", str(args.train_subset),
           "--set", f"data.val_size={args.val_size}", "--set", "eval.test=false", "--set", "swa.enabled=false"]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def measure(count: int, policy: str, args: argparse.Namespace, cores: int) -> list[float]:
    """Images per second of each of ``count`` concurrent trainings, in their middle epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        procs = [start(i, policy, args, Path(tmp), cores) for i in range(count)]
        speeds = []
        for i, proc in enumerate(procs):
            _, err = proc.communicate()
            if proc.returncode != 0:
                sys.exit(f"concurrency: a training failed ({policy}, {count} at once): {err.strip()[-500:]}")
            rows = [json.loads(line) for line in (Path(tmp) / f"p{i}" / "metrics.jsonl").read_text().splitlines()]
            speeds.append(rows[len(rows) // 2]["images_per_s"])
        return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,2,4", help="trainings at once; 1 is the run alone (default: 1,2,4)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default: 3)")
    parser.add_argument("--epochs", type=int, default=3, help="the middle one is measured (default: 3)")
    parser.add_argument("--train-subset", type=int, default=1280, help="images an epoch (default: 1280)")
    parser.add_argument("--val-size", type=int, default=500)
    parser.add_argument("--data-dir")
    parser.add_argument("--tiny", action="store_true", help="a quick check of the script: its figures mean nothing")
    parser.add_argument("--out", default="results/benchmarks/concurrency")
    args = parser.parse_args()
    if args.tiny:
        args.counts, args.repeats, args.epochs, args.train_subset, args.val_size = "1,2", 1, 2, 256, 100
    counts = sorted({int(c) for c in args.counts.split(",")} | {1})
    cores = len(os.sched_getaffinity(0))
    import torch  # after the children are described: only for the record

    from fashionbench.hardware import machine
    from fashionbench.runs import environment  # the record's code, machine and command, as a run's summary has them

    host = machine()

    # speeds[policy][count]: one list per repeat of the count's per-process speeds.
    speeds: dict[str, dict[int, list[list[float]]]] = {p: {n: [] for n in counts} for p in POLICIES}
    for repeat in range(args.repeats):
        for count in counts:
            for policy in POLICIES:
                if count == 1 and policy == "shared":
                    continue  # alone, both policies take every core: one measurement serves both
                s = measure(count, policy, args, cores)
                speeds[policy][count].append(s)
                if count == 1:
                    speeds["shared"][1].append(s)
                print(f"repeat {repeat + 1}/{args.repeats}: {count} at once, {policy}: "
                      + ", ".join(f"{v:.0f}" for v in s) + " img/s", flush=True)

    alone = statistics.median(s[0] for s in speeds["torch-default"][1])
    table = []
    for policy in POLICIES:
        for count in counts:
            per_process = [v / alone for s in speeds[policy][count] for v in s]
            together = [sum(s) / alone for s in speeds[policy][count]]
            table.append({"policy": policy, "processes": count,
                          "share_median": statistics.median(per_process), "share_min": min(per_process),
                          "share_max": max(per_process), "together_median": statistics.median(together),
                          "together_min": min(together), "together_max": max(together)})
    print(f"\n{host['cpu']}, {cores} cores, torch {torch.__version__}; alone: {alone:.0f} img/s "
          f"(BasicCNN, batch 128, median of {args.repeats})")
    print(f"{'policy':<14} {'at once':>7}  {'each, of alone (ideal 1/N)':>28}  {'all together, of alone':>24}")
    for row in table:
        print(f"{row['policy']:<14} {row['processes']:>7}  "
              f"{row['share_median']:>9.2f} ({row['share_min']:.2f}-{row['share_max']:.2f})"
              f" [1/N={1 / row['processes']:.2f}]"
              f"  {row['together_median']:>12.2f} ({row['together_min']:.2f}-{row['together_max']:.2f})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "concurrency", **environment(), "cores": cores, "tiny": args.tiny,
              "alone_images_per_s": alone, "table": table,
              "speeds": {p: {str(n): v for n, v in d.items()} for p, d in speeds.items()},
              "settings": {k: v for k, v in vars(args).items() if k != "out"}}
    (out / "concurrency.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"written: {out / 'concurrency.json'}")


if __name__ == "__main__":
    main()
