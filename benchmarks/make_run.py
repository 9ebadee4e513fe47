"""The README's first command, timed as a newcomer meets it: `make run` in a fresh clone.

Each of --runs runs clones the repository into an empty folder and times, one after
the other, the set-up (`make .venv/.installed`: the virtual environment, torch and the
package) and the job (`make run`: the speedrun recipe for its 300-second budget, one
seed, and its report). The data comes from --data-dir (or $FASHIONBENCH_DATA_DIR), as
offline use documents. Prints each run and the median and range of the whole, and
writes OUT/make_run.json: each run's seconds, the speedrun's epochs, training seconds
and test accuracy, and the machine. With --keep DIR, the last run's run folder (its
report and weights among its files) is copied to DIR: the README's picture of the
report is taken from it (`make report-picture`), and its record is committed.

Run it alone on the machine: anything beside it is in its times.

    python benchmarks/make_run.py --runs 3 --data-dir DIR --out results/benchmarks/make_run --keep /tmp/made
    python benchmarks/make_run.py --tiny --data-dir DIR --out /tmp/make_run   # checks the script, figures mean nothing

--tiny reuses this interpreter's environment in the clone (no set-up is timed) and
trains one short epoch on a slice of the data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = ".venv/.installed"
# --tiny: `make run` with one short epoch on a slice, its report still written.
TINY_OPTIONS = ("--epochs 1 --seeds 1 --train-subset 512 --set data.val_size=200 "
                "--set data.test_subset=200 --report")


def timed(command: list[str], cwd: Path, env: dict, what: str) -> float:
    """Seconds ``command`` took; its output goes to cwd/WHAT.log, and a failure ends the script."""
    start = time.perf_counter()
    with open(cwd / f"{what}.log", "w") as log:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"make_run: {what} failed (exit {done.returncode}): "
                 f"{(cwd / f'{what}.log').read_text()[-1500:]}")
    return seconds


def one_run(index: int, args: argparse.Namespace, env: dict, keep: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="make-run-") as tmp:
        clone = Path(tmp) / "fashionbench"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        if args.tiny:  # this environment, as if set up: nothing to time
            (clone / ".venv").symlink_to(Path(sys.prefix))
            setup = 0.0
        else:
            setup = timed(["make", READY], clone, env, "setup")
        # --tiny: -o: the borrowed environment counts as set up, though older than the clone.
        job = ["make", "run"] + (["-o", READY, f"RUN_OPTIONS={TINY_OPTIONS}"] if args.tiny else [])
        seconds = timed(job, clone, env, "run")
        [record_path] = (clone / "runs" / "speedrun").glob("*/speedrun.json")
        record = json.loads(record_path.read_text())
        [seed] = record["seeds"]
        if keep is not None:
            shutil.rmtree(keep, ignore_errors=True)
            shutil.copytree(record_path.parent, keep)
    row = {"setup_seconds": setup, "run_seconds": seconds, "total_seconds": setup + seconds,
           "epochs": record["epochs"], "train_seconds": seed["seconds"], "test_acc": seed["test_acc"]}
    print(f"run {index + 1}/{args.runs}: set-up {setup:.0f} s + make run {seconds:.0f} s = {setup + seconds:.0f} s; "
          f"{row['epochs']} epochs, {row['train_seconds']:.0f} s of training, test {100 * row['test_acc']:.2f}%",
          flush=True)
    return row


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh clones timed one after another (default: 3)")
    parser.add_argument("--data-dir", default=os.environ.get("FASHIONBENCH_DATA_DIR"),
                        help="the dataset folder (default: $FASHIONBENCH_DATA_DIR)")
    parser.add_argument("--keep", metavar="DIR", help="copy the last run's run folder to DIR")
    parser.add_argument("--tiny", action="store_true", help="a quick check of the script: its figures mean nothing")
    parser.add_argument("--out", default="results/benchmarks/make_run")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("--data-dir (or $FASHIONBENCH_DATA_DIR): the dataset folder, as offline use has it")
    if args.tiny:
        args.runs = 1
    env = {**os.environ, "FASHIONBENCH_DATA_DIR": str(Path(args.data_dir).resolve())}
    env.pop("VIRTUAL_ENV", None)

    from fashionbench.runs import environment  # the record's code, machine and command, as a run's summary has them

    rows = [one_run(i, args, env, Path(args.keep) if args.keep and i == args.runs - 1 else None)
            for i in range(args.runs)]
    totals = spread([r["total_seconds"] for r in rows])
    print(f"make run from a fresh clone, {len(rows)} runs: median {totals['median']:.0f} s "
          f"(range {totals['min']:.0f}-{totals['max']:.0f} s), set-up included")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"tiny": args.tiny, "runs": rows, "total_seconds": totals,
              "setup_seconds": spread([r["setup_seconds"] for r in rows]),
              "run_seconds": spread([r["run_seconds"] for r in rows]),
              "train_seconds": spread([r["train_seconds"] for r in rows]),
              "test_acc": spread([r["test_acc"] for r in rows]), **environment()}
    (out / "make_run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out / 'make_run.json'}")


if __name__ == "__main__":
    main()
