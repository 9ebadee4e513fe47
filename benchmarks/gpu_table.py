"""The reference table's large models on a GPU machine held for a short time: one
command, whose finished runs come back as one archive of records (no weights) to commit.

On the GPU machine, from the root of a copy of the checkout with the data in .data/
(docs/benchmarks.md gives the steps; the command is sized for a 10-minute limit):

    python3 benchmarks/gpu_table.py run --out OUT

runs ``fashionbench reproduce --deadline`` over the six large models and seeds 0-2 into
results/gpu (cheapest model first, seed 0 of each before any seed 1; runs already
recorded there are skipped; only runs whose measured cost fits are started), with the
deadline --seconds (default 570) less what has passed and RESERVE, then packs into
OUT/gpu_table.tar.gz the finished runs' config.yaml, metrics.jsonl and summary.json,
the cost table results/gpu/costs.json and a record of the call
(results/gpu/sessions/UTC-TIME.json), beside OUT/costs.json and OUT/reproduce.log.
Needs only the Python standard library itself, and of fashionbench's dependencies none
that a bare machine's Python may lack (no install: src/ through PYTHONPATH).

Here, afterwards:

    python benchmarks/gpu_table.py unpack OUT/gpu_table.tar.gz

writes those files into the checkout (a run already recorded here is kept as it is),
ready for ``git add results/gpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LARGE = "shufflenet_v2,mobilenet_v2,wide_resnet16_4,resnet18,resnet34,shake_shake34"
ARCHIVE = "gpu_table.tar.gz"
ROOT = "results/gpu"  # where the records live in the checkout, and in the archive
RECORDS = ("config.yaml", "metrics.jsonl", "summary.json")  # what comes back of a run: no weights
# Seconds kept from reproduce's deadline: its hard stop's unwinding, its tables and
# summary line, and the packing, all before the machine's own time limit.
RESERVE = 30.0
# Seconds past its deadline after which reproduce is sent SIGTERM, then SIGKILL.
GRACE = 15.0
# What an archive may hold: the records of runs, the cost table, session records.
MEMBER = re.compile(rf"^{ROOT}/(costs\.json|sessions/[\w.-]+\.json"
                    rf"|runs/[\w.-]+/({'|'.join(map(re.escape, RECORDS))}))$")
DATA_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def environment() -> dict:
    """The code, the machine (CPU, GPU, driver, CUDA) and this command, as every run's
    summary records them; from src/, as the runs themselves (nothing is installed there)."""
    sys.path.insert(0, str(REPO / "src"))
    from fashionbench.runs import environment as recorded
    return recorded()


def fail(message: str, status: int = 1):
    print(f"gpu_table: error: {message}", file=sys.stderr)
    sys.exit(status)


def tee(stream, log) -> None:
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)
        log.flush()


def reproduce(args: argparse.Namespace, results: Path, seconds: float) -> tuple[int | None, str]:
    """``fashionbench reproduce --deadline seconds``, its output to stdout and
    OUT/reproduce.log; its exit status (None: killed past its deadline) and command."""
    command = ["reproduce", "--models", args.models, "--seeds", args.seeds, "--budget", args.budget,
               "--device", args.device, "--out", str(results), "--deadline", str(int(seconds)),
               *(["--compile"] if args.compile else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
           "FASHIONBENCH_DATA_DIR": str(args.data), "PYTHONUNBUFFERED": "1"}
    print(f"gpu_table: fashionbench {' '.join(command)}", flush=True)
    with open(args.out / "reproduce.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fashionbench", *command], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        reader = threading.Thread(target=tee, args=(proc.stdout, log))
        reader.start()
        try:
            status = proc.wait(timeout=seconds + GRACE)
        except subprocess.TimeoutExpired:  # its hard stop failed to end it: end it from outside
            proc.terminate()
            try:
                proc.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            status = None
        reader.join()
    return status, "fashionbench " + " ".join(command)


def finished_runs(results: Path) -> list[Path]:
    return sorted(p.parent for p in (results / "runs").glob("*/summary.json"))


def pack(args: argparse.Namespace, results: Path, session: dict) -> Path:
    """OUT/gpu_table.tar.gz: the finished runs' records, the cost table and ``session``."""
    archive = args.out / ARCHIVE
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive, "w:gz") as tar:
        record = Path(tmp) / "session.json"
        record.write_text(json.dumps(session, indent=2) + "\n")
        tar.add(record, f"{ROOT}/sessions/{stamp}.json")
        if (results / "costs.json").exists():
            tar.add(results / "costs.json", f"{ROOT}/costs.json")
        for run in finished_runs(results):
            for name in RECORDS:
                if (run / name).exists():
                    tar.add(run / name, f"{ROOT}/runs/{run.name}/{name}")
    return archive


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    missing = [name for name in DATA_FILES if not (args.data / name).is_file()]
    if missing:
        fail(f"{args.data}: missing {', '.join(missing)} (carry the data: docs/benchmarks.md)")
    results = args.results
    before = {p.name for p in finished_runs(results)}
    seconds = args.seconds - (time.monotonic() - start) - RESERVE
    if seconds < 1:
        fail(f"--seconds {args.seconds:g} leaves no time to train (the driver keeps {RESERVE:g} s)", 2)
    status, command = reproduce(args, results, seconds)
    after = finished_runs(results)
    lost = sorted(p.parent.name for p in (results / "runs").glob("*/checkpoint.pt")
                  if not (p.parent / "summary.json").exists())
    devices = sorted({json.loads((run / "summary.json").read_text()).get("device") for run in after
                      if run.name not in before})
    session = {"reproduce_command": command, "exit": status, "seconds": round(time.monotonic() - start, 1),
               "finished_now": [run.name for run in after if run.name not in before],
               "finished_before": sorted(before), "partial_not_brought_back": lost, "devices": devices,
               **environment()}
    archive = pack(args, results, session)
    if (results / "costs.json").exists():  # beside the archive too: readable at once
        (args.out / "costs.json").write_bytes((results / "costs.json").read_bytes())
    print(f"gpu_table: {len(session['finished_now'])} runs finished now "
          f"({', '.join(session['finished_now']) or 'none'}), {len(before)} before; "
          f"partial, not brought back: {', '.join(lost) or 'none'}; packed {archive}", flush=True)
    return 0 if status == 0 else 1


def unpack(args: argparse.Namespace) -> int:
    """The archive's files into the checkout ``--into``: the cost table and session
    records as they come, each run's records unless that run is recorded here already."""
    try:
        tar = tarfile.open(args.archive, "r:gz")
    except (OSError, tarfile.TarError) as e:
        fail(f"{args.archive}: cannot read ({e})")
    with tar:
        members = tar.getmembers()
        odd = [m.name for m in members if not (m.isfile() and MEMBER.match(m.name))]
        if odd:
            fail(f"{args.archive}: not an archive of gpu_table.py run: it holds {', '.join(odd[:3])}")
        kept = {m.name.split("/")[3] for m in members if m.name.endswith("/summary.json")
                and (args.into / m.name).exists()}
        for member in members:
            parts = member.name.split("/")
            if parts[2] == "runs" and parts[3] in kept:
                continue
            path = args.into / member.name
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(tar.extractfile(member).read())
            os.replace(tmp, path)  # never half a file
    for name in sorted({m.name.split("/")[3] for m in members if m.name.endswith("/summary.json")}):
        summary = json.loads((args.into / ROOT / "runs" / name / "summary.json").read_text())
        state = "already here, kept" if name in kept else "finished"
        print(f"{ROOT}/runs/{name}: {state} ({summary.get('device')}, test {100 * summary['test_acc']:.2f}%)")
    print(f"then: git add {ROOT}  (and: fashionbench table {ROOT}/runs)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="on the device machine: train what fits, pack the records into OUT")
    r.add_argument("--out", type=Path, required=True, help="where the archive goes ($OUT on the device machine)")
    r.add_argument("--seconds", type=float, default=570.0,
                   help="seconds this command may take in all (default 570: a 600-second limit less 30)")
    r.add_argument("--results", type=Path, default=REPO / ROOT, help=f"the run folders' parent (default: {ROOT})")
    r.add_argument("--data", type=Path, default=REPO / ".data" / "fashion-mnist",
                   help="the carried Fashion-MNIST files (default: .data/fashion-mnist)")
    r.add_argument("--models", default=LARGE, help=f"comma-separated (default: {LARGE})")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--budget", default="full", help="full (default) or smoke, to check the driver itself")
    r.add_argument("--device", default="cuda")
    r.add_argument("--compile", action="store_true", help="reproduce --compile (torch.compile each run)")
    u = sub.add_parser("unpack", help="here: the archive's records into the checkout")
    u.add_argument("archive", type=Path)
    u.add_argument("--into", type=Path, default=REPO, help="the checkout (default: this one)")
    args = parser.parse_args()
    return run(args) if args.command == "run" else unpack(args)


if __name__ == "__main__":
    sys.exit(main())
