"""Before/after equivalence: the refactor of issue "Architecture" (engine.py split into
training and inference modules, a schedule object, the CLI rewrite) must not change any
number. The same command, trained at one intra-op thread, must give bit-identical
metrics, summary and model weights with the package as it was and as it is.

BEFORE is REFERENCE_COMMIT, the last commit before that refactor, extracted from this
repository's own git history (``git archive``) into a temporary folder and imported from
there through PYTHONPATH; AFTER is the package this test process imports (the working
tree, through the editable install). Each side trains in a fresh interpreter.

When behaviour is changed on purpose later, REFERENCE_COMMIT moves to the commit that
changed it, with a note beside it saying why, so the test goes on guarding everything else.
A command whose spelling changed gets its own entry in CASES (before_argv, after_argv).
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

import fashionbench

# The last commit before the refactor of issue "Architecture".
REFERENCE_COMMIT = "1e6fdb4b7dad0ba0fa8bb3132bd5541af80202c5"

REPO_ROOT = Path(__file__).resolve().parents[1]

# summary.json entries that must match exactly; the rest are timings and the environment.
SUMMARY_KEYS = ("model", "weights", "results", "val_acc", "test_acc", "swa_snapshots", "parameters",
                "epochs", "train_size", "val_size", "test_size")

MAX_REPORTED = 30  # differences listed in one failure message

# Each side's interpreter: one intra-op thread, and the package from where it must come
# (the first argument), then the CLI with the rest.
CHILD = """\
import os, sys, torch
torch.set_num_threads(1)
import fashionbench
expected = sys.argv.pop(1)
if os.path.realpath(fashionbench.__file__) != expected:
    sys.exit(f"equivalence: fashionbench imported from {fashionbench.__file__}, expected {expected}")
from fashionbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Case(NamedTuple):
    id: str
    before_argv: list[str]   # without --data-dir, --out and --name, which the test adds
    after_argv: list[str]


# Two SWA snapshots and BatchNorm recomputed, on slices small enough for seconds a side.
TRAIN = ["train", "basic_cnn", "--epochs", "2", "--train-subset", "2000", "--set", "data.val_size=500",
         "--set", "data.test_subset=500", "--set", "precision=fp32", "--set", "schedule.cycle_epochs=1",
         "--set", "swa.start=1"]

# Ten binary members and their calibration: the old `train --one-vs-all` is the
# `one-vs-all` command now. Small evaluation slices: each member evaluates both splits
# for each of its weights, which is most of this case's time.
ONE_VS_ALL = ["basic_cnn", "--epochs", "1", "--batch-size", "50", "--train-subset", "500",
              "--set", "data.val_size=200", "--set", "data.test_subset=200", "--set", "precision=fp32",
              "--set", "schedule.cycle_epochs=1", "--set", "swa.start=1"]

CASES = [
    Case("train", TRAIN, TRAIN),
    Case("one-vs-all", ["train", *ONE_VS_ALL, "--one-vs-all"], ["one-vs-all", *ONE_VS_ALL]),
]


# -- the comparison ----------------------------------------------------------------------

def is_timing(key: str) -> bool:
    return "seconds" in key or key == "images_per_s"


def ulps_apart(a: float, b: float) -> int | None:
    """How many float64 steps lie between a and b (None if either is not finite)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return None

    def ordinal(x: float) -> int:
        bits = struct.unpack("<q", struct.pack("<d", x))[0]
        return bits if bits >= 0 else -(bits & 0x7FFF_FFFF_FFFF_FFFF)
    return abs(ordinal(a) - ordinal(b))


def diff_values(where: str, before: Any, after: Any, out: list[str]) -> None:
    """Append to ``out`` every place where ``after`` is not exactly ``before``: same type,
    same value (floats with ==, so bit for bit but for the sign of zero)."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in before:
            if key not in after:
                out.append(f"{where}[{key!r}]: missing in AFTER (BEFORE {before[key]!r})")
            else:
                diff_values(f"{where}[{key!r}]", before[key], after[key], out)
        out.extend(f"{where}[{key!r}]: only in AFTER ({after[key]!r})" for key in after if key not in before)
    elif isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            out.append(f"{where}: {len(before)} items BEFORE, {len(after)} AFTER")
        for i, (b, a) in enumerate(zip(before, after)):
            diff_values(f"{where}[{i}]", b, a, out)
    elif type(before) is not type(after) or before != after:
        note = ""
        if isinstance(before, float) and isinstance(after, float) and (n := ulps_apart(before, after)):
            note = f" ({n} ulp apart)" if n < 1_000_000 else f" (differ by {after - before:.3g})"
        out.append(f"{where}: BEFORE {before!r}, AFTER {after!r}{note}")


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def diff_metrics(before: list[dict], after: list[dict], out: list[str]) -> None:
    """Row by row, the keys BEFORE has that are not timings; AFTER may add keys."""
    if len(before) != len(after):
        out.append(f"metrics.jsonl: {len(before)} rows BEFORE, {len(after)} AFTER")
    for i, (b, a) in enumerate(zip(before, after)):
        where = f"metrics.jsonl epoch {b.get('epoch', f'row {i + 1}')}"
        for key, value in b.items():
            if is_timing(key):
                continue
            if key not in a:
                out.append(f"{where} {key!r}: missing in AFTER (BEFORE {value!r})")
            else:
                diff_values(f"{where} {key!r}", value, a[key], out)


def diff_summaries(before: dict, after: dict, out: list[str]) -> None:
    for key in SUMMARY_KEYS:
        if key in before and key in after:
            diff_values(f"summary.json {key!r}", before[key], after[key], out)
        elif key in before or key in after:
            side, other = ("BEFORE", "AFTER") if key in before else ("AFTER", "BEFORE")
            out.append(f"summary.json {key!r}: only in {side} ({(before | after)[key]!r}), not in {other}")


def diff_tensor(where: str, before: torch.Tensor, after: torch.Tensor, out: list[str]) -> None:
    if before.dtype != after.dtype or before.shape != after.shape:
        out.append(f"{where}: BEFORE {before.dtype} {tuple(before.shape)}, AFTER {after.dtype} {tuple(after.shape)}")
        return
    if torch.equal(before.reshape(-1).view(torch.uint8), after.reshape(-1).view(torch.uint8)):
        return  # the same bits
    unequal = before != after
    if not unequal.any():
        out.append(f"{where}: equal values, different bits (signed zeros or NaN payloads)")
        return
    first = tuple(int(i) for i in unequal.nonzero()[0])
    out.append(f"{where}: {int(unequal.sum())} of {before.numel()} elements differ, first at {first}: "
               f"BEFORE {before[first].item()!r}, AFTER {after[first].item()!r}")


def diff_models(before: dict, after: dict, out: list[str]) -> None:
    """model.pt: BEFORE's entries besides the weights, and every tensor bit for bit."""
    for key, value in before.items():
        if key == "state_dict":
            continue
        if key not in after:
            out.append(f"model.pt {key!r}: missing in AFTER (BEFORE {value!r})")
        else:
            diff_values(f"model.pt {key!r}", value, after[key], out)
    b, a = before["state_dict"], after.get("state_dict", {})
    out.extend(f"model.pt state_dict[{k!r}]: missing in AFTER" for k in b if k not in a)
    out.extend(f"model.pt state_dict[{k!r}]: only in AFTER" for k in a if k not in b)
    for k in b:
        if k in a:
            diff_tensor(f"model.pt state_dict[{k!r}]", b[k], a[k], out)


def compare_runs(before: Path, after: Path) -> list[str]:
    """The differences between two finished run folders, one line each; [] when their
    numbers are identical. A file BEFORE lacks is not compared (one-vs-all's combined run
    has no metrics.jsonl); one AFTER lacks is a difference."""
    out: list[str] = []
    for name, read, diff in (("metrics.jsonl", read_metrics, diff_metrics),
                             ("summary.json", lambda p: json.loads(p.read_text()), diff_summaries),
                             ("model.pt", lambda p: torch.load(p, map_location="cpu", weights_only=True),
                              diff_models)):
        if not (before / name).exists():
            continue
        if not (after / name).exists():
            out.append(f"{name}: written BEFORE, missing AFTER ({after / name})")
            continue
        diff(read(before / name), read(after / name), out)
    return out


def describe(differences: list[str]) -> str:
    shown = differences[:MAX_REPORTED]
    more = len(differences) - len(shown)
    return "\n".join([f"{len(differences)} difference(s) between BEFORE ({REFERENCE_COMMIT[:10]}) and AFTER:",
                      *(f"  {d}" for d in shown), *([f"  ... and {more} more"] if more else [])])


# -- the two sides -----------------------------------------------------------------------

def extract_reference(dest: Path) -> Path:
    """REFERENCE_COMMIT's src/ and recipes/ under ``dest``; fails (never skips) without
    git or without the commit: this test means nothing without its reference."""
    def git(*args: str, **kw) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, **kw)
        except FileNotFoundError:
            pytest.fail("the equivalence test needs git, to extract its reference commit "
                        f"{REFERENCE_COMMIT} from the repository's history")

    found = git("cat-file", "-e", f"{REFERENCE_COMMIT}^{{commit}}")
    if found.returncode != 0:
        pytest.fail(f"reference commit {REFERENCE_COMMIT} is not in a git history at {REPO_ROOT} "
                    f"(not a clone, or a shallow one: git fetch --unshallow): "
                    f"{found.stderr.decode(errors='replace').strip()}")
    archive = git("archive", REFERENCE_COMMIT, "src", "recipes")
    assert archive.returncode == 0, f"git archive failed: {archive.stderr.decode(errors='replace')}"
    dest.mkdir(parents=True)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, capture_output=True)
    assert untar.returncode == 0, f"tar -x failed: {untar.stderr.decode(errors='replace')}"
    assert (dest / "src" / "fashionbench" / "__init__.py").is_file() and (dest / "recipes").is_dir()
    return dest


def start_side(folder: Path, argv: list[str], package: Path, pythonpath: Path | None,
               data_dir: Path) -> subprocess.Popen:
    """One side's training in a fresh interpreter, its output in ``folder``."""
    folder.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    args = [sys.executable, "-c", CHILD, os.path.realpath(package), *argv,
            "--data-dir", str(data_dir), "--out", str(folder / "runs"), "--name", "run"]
    with open(folder / "stdout", "w") as stdout, open(folder / "stderr", "w") as stderr:
        return subprocess.Popen(args, cwd=folder, env=env, stdout=stdout, stderr=stderr)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refactor_changes_no_number(case, data_dir, tmp_path):
    reference = extract_reference(tmp_path / "reference")
    before_package = reference / "src" / "fashionbench" / "__init__.py"
    after_package = Path(fashionbench.__file__).resolve()
    assert reference not in after_package.parents, f"this process imports the reference copy: {after_package}"
    # One thread each: the two sides run side by side, each at a fixed thread count.
    sides = {"BEFORE": start_side(tmp_path / "before", case.before_argv, before_package, reference / "src", data_dir),
             "AFTER": start_side(tmp_path / "after", case.after_argv, after_package, None, data_dir)}
    try:
        statuses = {name: process.wait(timeout=600) for name, process in sides.items()}
    finally:  # a timeout (or Ctrl-C) leaves no training behind
        for process in sides.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, status in statuses.items():
        assert status == 0, (f"{name} exited with {status}: {' '.join(map(str, sides[name].args[3:]))}\n"
                             f"{(tmp_path / name.lower() / 'stderr').read_text()[-3000:]}")
    before, after = tmp_path / "before" / "runs" / "run", tmp_path / "after" / "runs" / "run"
    assert (before / "summary.json").is_file(), f"BEFORE wrote no summary.json in {before}"
    differences = compare_runs(before, after)
    if differences:
        pytest.fail(describe(differences), pytrace=False)


# -- the comparison itself, on hand-made run folders (fast: no data, no training) --------------

def write_run(folder: Path, train_loss: float = 0.5, seconds: float = 1.0) -> Path:
    folder.mkdir()
    rows = [{"epoch": 1, "lr": 0.1, "train_loss": 0.75, "val_acc": 0.5, "seconds": seconds, "images_per_s": 10.0},
            {"epoch": 2, "lr": 0.05, "train_loss": train_loss, "val_acc": 0.625, "seconds": seconds,
             "images_per_s": 100 / seconds}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"model": "basic_cnn", "weights": "swa", "val_acc": 0.625, "test_acc": 0.5,
               "results": {"swa": {"val": {"loss": 0.25, "acc": 0.625}, "test": {"loss": 0.5, "acc": 0.5}}},
               "swa_snapshots": 2, "parameters": 6, "epochs": 2, "train_size": 20, "val_size": 10,
               "test_size": 10, "train_seconds": seconds, "total_seconds": 2 * seconds}
    (folder / "summary.json").write_text(json.dumps(summary))
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(3)}
    torch.save({"model": "basic_cnn", "weights": "swa", "state_dict": state}, folder / "model.pt")
    return folder


def test_compare_runs_passes_identical_runs_and_ignores_timings(tmp_path):
    before = write_run(tmp_path / "before")
    assert compare_runs(before, write_run(tmp_path / "same")) == []
    slower = write_run(tmp_path / "slower", seconds=7.5)
    rows = read_metrics(slower / "metrics.jsonl")
    rows[1]["val_seconds"] = 0.5  # a new timing key, as the refactor adds
    (slower / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert compare_runs(before, slower) == []


def test_compare_runs_reports_one_ulp(tmp_path):
    loss = 0.5
    before = write_run(tmp_path / "before", train_loss=loss)
    after = write_run(tmp_path / "after", train_loss=math.nextafter(loss, 1.0))
    differences = compare_runs(before, after)
    assert differences == [f"metrics.jsonl epoch 2 'train_loss': BEFORE 0.5, AFTER "
                           f"{math.nextafter(loss, 1.0)!r} (1 ulp apart)"]
    assert "1 difference(s)" in describe(differences)


def test_compare_runs_reports_weights_and_summary(tmp_path):
    before = write_run(tmp_path / "before")
    after = write_run(tmp_path / "after")
    saved = torch.load(after / "model.pt", weights_only=True)
    saved["state_dict"]["w"][1, 2] = torch.nextafter(torch.tensor(5.0), torch.tensor(6.0))
    torch.save(saved, after / "model.pt")
    summary = json.loads((after / "summary.json").read_text())
    summary["results"]["swa"]["test"]["acc"] = 0.4
    (after / "summary.json").write_text(json.dumps(summary))
    assert compare_runs(before, after) == [
        "summary.json 'results'['swa']['test']['acc']: BEFORE 0.5, AFTER 0.4 (differ by -0.1)",
        "model.pt state_dict['w']: 1 of 6 elements differ, first at (1, 2): BEFORE 5.0, AFTER 5.000000476837158"]
