"""The speedrun and the reference table on one GPU, in one run of at most ten minutes.

1. ``fashionbench speedrun --device cuda --seeds 5``: the speedrun recipe as written,
   eager and under ``torch.compile`` (``--set compile=true``; its compilation happens
   in the untimed warm-up). Each gives the mean ± std test accuracy over five seeds and
   the median training time; the time to 94% is the faster one's median time among
   those whose mean reaches 94.0%.
2. ``fashionbench reproduce --budget full --seeds 0 --device cuda``: all eight
   architectures at their full recipes, one seed, for whatever time is left before
   ``--deadline``; each finished model's training time and accuracy are read from its
   summary, and the models not reached are listed.

Prints one JSON object and writes it to OUT/gpu_speedrun.json (with every step's exit
status and the tail of its errors). ``--smoke`` runs the same steps on tiny budgets on
any device, to check the script itself; its figures mean nothing.

    python benchmarks/gpu_speedrun.py --out results/gpu-speedrun [--data-dir DIR] [--deadline 570]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from fashionbench.models import reference_figures

SMOKE_SPEEDRUN = ["--seeds", "2", "--epochs", "1", "--train-subset", "1000", "--set", "data.val_size=500",
                  "--set", "data.test_subset=500"]


def fashionbench(args: list[str], timeout: float) -> dict:
    """Run the CLI; its exit status (None: stopped at the deadline), wall time, error tail."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "fashionbench", *args], capture_output=True, text=True,
                              timeout=max(timeout, 1), check=False)
        code, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired as e:
        code, err = None, e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    step = {"command": "fashionbench " + " ".join(args), "exit": code, "wall_seconds": time.perf_counter() - start}
    if code != 0:
        step["stderr_tail"] = err[-1500:]
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--deadline", type=float, default=570.0, help="seconds for everything (default: 570)")
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: check the script, not a figure")
    args = parser.parse_args()
    start = time.perf_counter()

    def left() -> float:
        return args.deadline - (time.perf_counter() - start)

    data = ["--data-dir", args.data_dir] if args.data_dir else []
    report: dict = {"device": args.device, "smoke": args.smoke, "speedrun": {}}
    for name, extra in (("eager", []), ("compiled", ["--set", "compile=true"])):
        step = fashionbench(["speedrun", "--device", args.device, *(SMOKE_SPEEDRUN if args.smoke else ["--seeds", "5"]),
                             *extra, "--out", str(args.out / "speedrun"), "--name", name, *data], left())
        path = args.out / "speedrun" / name / "speedrun.json"
        if step["exit"] == 0 and path.exists():
            result = json.loads(path.read_text())
            step |= {k: result[k] for k in ("epochs", "test_acc_mean", "test_acc_std", "median_seconds",
                                            "warmup_seconds", "data_seconds", "device", "torch")}
            step["seconds_per_seed"] = [s["seconds"] for s in result["seeds"]]
        report["speedrun"][name] = step
    reached = [s for s in report["speedrun"].values() if s.get("test_acc_mean", 0) >= 94.0]
    report["time_to_94_seconds"] = min((s["median_seconds"] for s in reached), default=None)

    table = args.out / "reproduce"
    models = ["--models", "basic_cnn"] if args.smoke else []
    step = fashionbench(["reproduce", "--budget", "smoke" if args.smoke else "full", "--seeds", "0",
                         "--device", args.device, *models, "--out", str(table), *data], left())
    finished = {}
    for summary_path in sorted((table / "runs").glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        finished[summary_path.parent.name] = {k: summary.get(k) for k in (
            "train_seconds", "val_seconds", "epochs", "val_acc", "test_acc", "device", "precision")}
    step["finished"] = finished
    wanted = ["basic_cnn"] if args.smoke else list(reference_figures())
    step["not_finished"] = [m for m in wanted if f"{m}-s0" not in finished]
    step["train_seconds_total"] = sum(r["train_seconds"] for r in finished.values())
    report["reproduce_full_seed0"] = step
    report["wall_seconds"] = time.perf_counter() - start
    text = json.dumps(report, indent=2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_speedrun.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
