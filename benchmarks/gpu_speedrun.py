"""The speedrun and the reference table's cost on one GPU, in one run of at most ten minutes.

1. ``fashionbench speedrun --device cuda --seeds 5 --epochs E``: the speedrun recipe at
   the epochs that reach 94% on 2 CPU cores (17: the 300-second budget there), eager
   and under ``torch.compile`` (``--set compile=true``; its compilation happens in the
   untimed warm-up). Each gives the mean ± std test accuracy over five seeds and the
   median training time; the time to 94% is the faster one's median among those whose
   mean reaches 94.0%.
2. The cost of ``fashionbench reproduce --budget full --seeds 0``: eight full recipes
   of 30 to 60 epochs do not fit in ten minutes on one GPU, so each architecture trains
   its full recipe for two epochs (``train MODEL --epochs 2``), and the second epoch's
   time (the first pays cuDNN's algorithm search) times the recipe's epochs is the
   estimate: measured per epoch, extrapolated to the run, and labelled so.

Prints one JSON object and writes it to OUT/gpu_speedrun.json (with every step's exit
status and the tail of its errors); the run folders go to --work. Exits non-zero when a
step failed. ``--tiny`` runs the same steps on tiny budgets, on the CPU unless
``--device`` says otherwise, to check the script itself in seconds; its figures mean
nothing. On the CPU it turns torch.compile off (TORCHDYNAMO_DISABLE=1: compiling takes
minutes there): the compiled step still runs, as an eager one.

    python benchmarks/gpu_speedrun.py --out results/gpu-speedrun [--data-dir DIR] [--deadline 570]
    python benchmarks/gpu_speedrun.py --tiny --out /tmp/gpu-speedrun   # checks the script, figures mean nothing
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fashionbench.config import load_config
from fashionbench.models import reference_figures
from fashionbench.runs import environment

TINY = ["--train-subset", "1000", "--set", "data.val_size=500", "--set", "data.test_subset=500"]


def fashionbench(args: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run the CLI; its exit status (None: stopped at the deadline), wall time, error tail."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "fashionbench", *args], capture_output=True, text=True,
                              timeout=max(timeout, 1), check=False, env=env)
        code, err = done.returncode, done.stderr
    except subprocess.TimeoutExpired as e:
        code, err = None, e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    step = {"command": "fashionbench " + " ".join(args), "exit": code, "wall_seconds": time.perf_counter() - start}
    if code != 0:
        step["stderr_tail"] = err[-1500:]
    print(f"exit {code} after {step['wall_seconds']:.0f} s: {step['command']}", file=sys.stderr, flush=True)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_speedrun.json")
    parser.add_argument("--work", type=Path, help="folder for the run folders (default: OUT/runs)")
    parser.add_argument("--data-dir")
    parser.add_argument("--device", help="cuda (default), or cpu (the default with --tiny)")
    parser.add_argument("--epochs", type=int, default=17, help="the speedrun's epochs (default: 17)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=570.0, help="seconds for everything (default: 570)")
    parser.add_argument("--tiny", "--smoke", action="store_true",
                        help="tiny budgets: a quick check of the script, its figures mean nothing")
    args = parser.parse_args()
    device = args.device or ("cpu" if args.tiny else "cuda")
    work = args.work or args.out / "runs"
    start = time.perf_counter()

    def left() -> float:
        return args.deadline - (time.perf_counter() - start)

    data = ["--data-dir", args.data_dir] if args.data_dir else []
    tiny = TINY if args.tiny else []
    epochs, seeds = (1, 2) if args.tiny else (args.epochs, args.seeds)
    # A tiny check on the CPU runs the compiled step uncompiled: inductor's C++ build would
    # take minutes of a check meant to take seconds (the compiling itself is not the script's).
    env = {**os.environ, "TORCHDYNAMO_DISABLE": "1"} if args.tiny and device == "cpu" else None
    report: dict = {"device": device, "tiny": args.tiny, "speedrun": {}, "epoch_cost": {}, **environment()}
    for name, extra in (("eager", []), ("compiled", ["--set", "compile=true"])):
        step = fashionbench(["speedrun", "--device", device, "--seeds", str(seeds), "--epochs", str(epochs),
                             *tiny, *extra, "--out", str(work / "speedrun"), "--name", name, *data],
                            min(left() - 150, 200), env)  # leave the epoch costs their share
        path = work / "speedrun" / name / "speedrun.json"
        if step["exit"] == 0 and path.exists():
            result = json.loads(path.read_text())
            step |= {k: result[k] for k in ("epochs", "test_acc_mean", "test_acc_std", "median_seconds",
                                            "warmup_seconds", "seconds_per_step", "data_seconds", "device", "torch")}
            step["seconds_per_seed"] = [s["seconds"] for s in result["seeds"]]
            step["val_seconds_per_seed"] = [s["val_seconds"] for s in result["seeds"]]
        report["speedrun"][name] = step
    reached = [s for s in report["speedrun"].values() if s.get("test_acc_mean", 0) >= 94.0]
    report["time_to_94_seconds"] = min((s["median_seconds"] for s in reached), default=None)

    models = ["basic_cnn"] if args.tiny else list(reference_figures())
    for model in models:
        step = fashionbench(["train", model, "--epochs", "2", "--seed", "0", "--device", device, *tiny,
                             "--out", str(work / "epoch-cost"), "--name", model, *data], left())
        metrics = work / "epoch-cost" / model / "metrics.jsonl"
        if step["exit"] == 0 and metrics.exists():
            second = [json.loads(line) for line in metrics.read_text().splitlines()][-1]
            recipe_epochs = load_config(model, None, []).epochs
            step |= {"epoch_seconds": second["seconds"], "val_seconds": second["val_seconds"],
                     "images_per_s": second["images_per_s"], "recipe_epochs": recipe_epochs,
                     "estimated_full_seconds": recipe_epochs * (second["seconds"] + second["val_seconds"])}
        report["epoch_cost"][model] = step
    costs = [s.get("estimated_full_seconds") for s in report["epoch_cost"].values()]
    report["reproduce_full_seed0_estimated_seconds"] = sum(costs) if None not in costs else None
    report["wall_seconds"] = time.perf_counter() - start
    text = json.dumps(report, indent=2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_speedrun.json").write_text(text + "\n")
    print(text)
    steps = [*report["speedrun"].values(), *report["epoch_cost"].values()]
    sys.exit(0 if all(s["exit"] == 0 for s in steps) else 1)


if __name__ == "__main__":
    main()
