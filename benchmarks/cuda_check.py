"""CUDA checks of training, on a machine with a GPU: the default job (``fashionbench
train basic_cnn --report``) on the GPU, with its time and accuracy; whether two runs of
one configuration give the same numbers there; and whether a run killed with SIGKILL
mid-epoch resumes to the uninterrupted run's numbers (the checkpoint carries the CUDA
RNG state). Prints one JSON object and writes it to OUT/cuda_check.json.

``--tiny`` runs the same steps on a few hundred images, one epoch for the default job,
on the CPU unless ``--device`` says otherwise: a check of the script itself, in seconds;
its figures mean nothing.

    python benchmarks/cuda_check.py --out results/cuda-check [--data-dir DIR]
    python benchmarks/cuda_check.py --tiny --out /tmp/cuda-check   # checks the script, figures mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fashionbench.runs import environment

# A short run: three epochs of 30,000 images, two SWA snapshots, BatchNorm recomputed.
SHORT = ["basic_cnn", "--epochs", "3", "--set", "swa.start=2", "--set", "schedule.cycle_epochs=1"]
SIZES = ["--train-subset", "30000", "--set", "data.val_size=2000", "--set", "data.test_subset=2000"]
# --tiny: every run on a few hundred images, and the default job for one epoch.
TINY_SIZES = ["--train-subset", "1000", "--set", "data.val_size=200", "--set", "data.test_subset=200"]


def fashionbench(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fashionbench", *args], capture_output=True, text=True,
                          check=False, **kw)


def results(run_dir: Path) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in row.items() if "seconds" not in k and k != "images_per_s"} for row in rows]
    return rows, json.loads((run_dir / "summary.json").read_text())["results"]


def largest_difference(a, b) -> float:
    """The largest absolute difference between two equally shaped nests of numbers."""
    if isinstance(a, dict):
        return max((largest_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list):
        return max((largest_difference(x, y) for x, y in zip(a, b)), default=0.0)
    return abs(a - b) if isinstance(a, float) else float(a != b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--device", help="cuda (default), or cpu (the default with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="a quick check of the script: its figures mean nothing")
    args = parser.parse_args()
    device = args.device or ("cpu" if args.tiny else "cuda")
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    default_job = [*TINY_SIZES, "--epochs", "1"] if args.tiny else []
    short = [*SHORT, "--device", device, *(TINY_SIZES if args.tiny else SIZES)]
    runs = args.out / "runs"
    report: dict = {"device": device, "tiny": args.tiny, **environment()}

    start = time.perf_counter()
    done = fashionbench("train", "basic_cnn", "--device", device, "--report", *default_job, "--out", str(runs),
                        "--name", "default", *data)
    report["default_job"] = {"exit": done.returncode, "wall_seconds": time.perf_counter() - start,
                             "stderr_tail": done.stderr[-1500:]}
    if done.returncode == 0:
        summary = json.loads((runs / "default" / "summary.json").read_text())
        report["default_job"] |= {k: summary.get(k) for k in (
            "device", "precision", "val_acc", "test_acc", "train_seconds", "val_seconds",
            "seconds_per_epoch", "torch")}

    for name in ("a", "b"):
        done = fashionbench("train", *short, "--out", str(runs), "--name", name, *data)
        report[f"short_{name}_exit"] = done.returncode
        if done.returncode:
            report[f"short_{name}_stderr"] = done.stderr[-1500:]
    proc = subprocess.Popen([sys.executable, "-m", "fashionbench", "train", *short, "--out", str(runs),
                             "--name", "killed", *data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = runs / "killed" / "metrics.jsonl"
    # The kill follows an event, not a delay: metrics.jsonl, written just after the first
    # epoch's checkpoint, means the run is in epoch 2, which lasts far longer than a poll
    # (a fixed delay into epoch 2 lands past its end on a fast enough device).
    while proc.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    report["killed_after_epochs"] = metrics.read_text().count("\n") if metrics.exists() else 0
    report["killed_before_finishing"] = not (runs / "killed" / "summary.json").exists()
    done = fashionbench("train", "--resume", str(runs / "killed"), *data)
    report["resume_exit"] = done.returncode
    if done.returncode:
        report["resume_stderr"] = done.stderr[-1500:]
    if report["short_a_exit"] == report["short_b_exit"] == report["resume_exit"] == 0:
        a, b, resumed = (results(runs / n) for n in ("a", "b", "killed"))
        report["same_config_identical"] = a == b
        report["same_config_largest_difference"] = largest_difference(list(a), list(b))
        report["resumed_identical"] = a == resumed
        report["resumed_largest_difference"] = largest_difference(list(a), list(resumed))
    text = json.dumps(report, indent=2)
    os.makedirs(args.out, exist_ok=True)
    (args.out / "cuda_check.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
