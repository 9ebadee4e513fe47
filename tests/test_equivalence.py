"""Before/after equivalence: a refactor must not change any number. The same commands,
trained at one intra-op thread, must give bit-identical metrics, summaries and model
weights with the package as it was (BEFORE) and as it is (AFTER).

BEFORE is a case's reference commit, extracted from this repository's own git history
(``git archive``) into a temporary folder and imported from there through PYTHONPATH;
AFTER is the package this test process imports (the working tree, through the editable
install or PYTHONPATH), put first on its children's path too. Each command of a
side runs in a fresh interpreter, in that side's folder; both sides run side by side.

The references, and why each case has its own:

- REFERENCE_COMMIT (1e6fdb4), the last commit before the refactor of issue
  "Architecture" (engine.py split into training and inference modules, a schedule
  object, the CLI rewrite): the cases "train" and "one-vs-all" guard it.
- HOOKS_REFERENCE (13501e8), the last commit before SWA, the divergence watch and the
  leaky best-on-test selection became the trainer's hooks (hooks.py), each with its
  state under its own key of the checkpoint: the cases "resume", "resume-old-checkpoint"
  and "ensemble" were added with that refactor and compare with the code just before
  it. 1e6fdb4 could not serve them: it has no eval.select_on (whose best epoch is one
  of the hooks' states) and no fashionbench.training, where the test stops a run after
  its first checkpoint; and "resume-old-checkpoint" needs a checkpoint in the layout
  that runs started before hooks have (swa_model, loss_start and best_on_test at its top
  level), which the new code must resume to the numbers the old code reaches.

When behaviour is changed on purpose later, a case's reference moves to the commit that
changed it, with a note beside it saying why, so the test goes on guarding everything else.
A command whose spelling changed is written per side (one-vs-all: ``train --one-vs-all``
BEFORE, the ``one-vs-all`` command AFTER).
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch

import fashionbench

# The last commit before the refactor of issue "Architecture".
REFERENCE_COMMIT = "1e6fdb4b7dad0ba0fa8bb3132bd5541af80202c5"
# The last commit before the trainer's features became hooks (branch hooks' start).
HOOKS_REFERENCE = "13501e880a8706a88c550105b4e325771a39f3d0"

REPO_ROOT = Path(__file__).resolve().parents[1]

# summary.json entries that must match exactly; the rest are timings and the environment.
SUMMARY_KEYS = ("model", "weights", "results", "val_acc", "test_acc", "swa_snapshots", "parameters",
                "epochs", "train_size", "val_size", "test_size")

MAX_REPORTED = 30  # differences listed in one failure message

# A command stopped after its run's first checkpoint exits with this status, as if killed.
KILLED = 137

# Each command's interpreter: one intra-op thread, and the package from where it must come
# (the first argument), then the CLI with the rest. With EQUIVALENCE_STOP set, the
# process ends the moment its run's first checkpoint is written, as a kill -9 landing
# there would end it: at the same point of the training on both sides (a signal sent from
# outside lands wherever the process has got to). fashionbench.training.Trainer.save_checkpoint
# is where both sides write their checkpoint (and metrics.jsonl after it).
CHILD = """\
import os, sys, torch
torch.set_num_threads(1)
import fashionbench
expected = sys.argv.pop(1)
if os.path.realpath(fashionbench.__file__) != expected:
    sys.exit(f"equivalence: fashionbench imported from {fashionbench.__file__}, expected {expected}")
if os.environ.get("EQUIVALENCE_STOP"):
    from fashionbench.training import Trainer
    save_checkpoint = Trainer.save_checkpoint

    def save_and_die(self):
        save_checkpoint(self)
        os._exit(int(os.environ["EQUIVALENCE_STOP"]))
    Trainer.save_checkpoint = save_and_die
from fashionbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Step(NamedTuple):
    """One command of a side, run in the side's folder (its runs go under runs/):
    ``argv`` after ``fashionbench``, to which the test adds --data-dir."""
    argv: list[str]
    code: str = "side"   # whose package runs it: "side" (each side's own) or "before" (BEFORE's on both)
    stop: bool = False   # stopped after its run's first checkpoint (exit status KILLED)


class Case(NamedTuple):
    id: str
    before: list[Step]
    after: list[Step]
    reference: str = REFERENCE_COMMIT    # BEFORE's commit
    compared: tuple[str, ...] = ("run",)  # the folders under runs/ compared


RUN = ["--out", "runs", "--name", "run"]

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

# Every hook with a state in the checkpoint, each run stopped after epoch 1 and resumed:
# "run" has SWA (its average of one snapshot by then) and the divergence watch (the
# first loss); "leaky" the best epoch on the test set (eval.select_on test, which
# excludes SWA) and the divergence watch.
SWA_RUN = [*TRAIN, *RUN]
LEAKY_RUN = [*TRAIN, "--set", "swa.enabled=false", "--set", "eval.select_on=test", "--out", "runs", "--name", "leaky"]


def resumed(argv: list[str], first: str = "side") -> list[Step]:
    """``argv``'s run stopped after its first checkpoint (by ``first``'s code), then resumed."""
    return [Step(argv, first, stop=True), Step(["train", "--resume", f"runs/{argv[-1]}"])]


# Two members of one epoch (seeds 0 and 1), then their ensemble.
MEMBER = [*TRAIN, "--epochs", "1", "--out", "runs"]
ENSEMBLE = [Step([*MEMBER, "--name", "a"]), Step([*MEMBER, "--seed", "1", "--name", "b"]),
            Step(["ensemble", "runs/a", "runs/b", *RUN])]

CASES = [
    Case("train", [Step([*TRAIN, *RUN])], [Step([*TRAIN, *RUN])]),
    Case("one-vs-all", [Step(["train", *ONE_VS_ALL, "--one-vs-all", *RUN])], [Step(["one-vs-all", *ONE_VS_ALL, *RUN])]),
    # Each side stops its runs after epoch 1 and resumes them.
    Case("resume", [*resumed(SWA_RUN), *resumed(LEAKY_RUN)], [*resumed(SWA_RUN), *resumed(LEAKY_RUN)],
         reference=HOOKS_REFERENCE, compared=("run", "leaky")),
    # Checkpoints of the code before hooks resumed by the code of now, to the numbers of
    # the old code's uninterrupted runs: runs in progress when the code changes finish as
    # they would have.
    Case("resume-old-checkpoint", [Step(SWA_RUN), Step(LEAKY_RUN)],
         [*resumed(SWA_RUN, first="before"), *resumed(LEAKY_RUN, first="before")],
         reference=HOOKS_REFERENCE, compared=("run", "leaky")),
    Case("ensemble", ENSEMBLE, ENSEMBLE, reference=HOOKS_REFERENCE, compared=("a", "b", "run")),
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


def describe(differences: list[str], reference: str = REFERENCE_COMMIT) -> str:
    shown = differences[:MAX_REPORTED]
    more = len(differences) - len(shown)
    return "\n".join([f"{len(differences)} difference(s) between BEFORE ({reference[:10]}) and AFTER:",
                      *(f"  {d}" for d in shown), *([f"  ... and {more} more"] if more else [])])


# -- the two sides -----------------------------------------------------------------------

def extract_reference(dest: Path, commit: str) -> Path:
    """``commit``'s src/ and recipes/ under ``dest``; fails (never skips) without git or
    without the commit: this test means nothing without its reference."""
    def git(*args: str, **kw) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, **kw)
        except FileNotFoundError:
            pytest.fail("the equivalence test needs git, to extract its reference commit "
                        f"{commit} from the repository's history")

    found = git("cat-file", "-e", f"{commit}^{{commit}}")
    if found.returncode != 0:
        pytest.fail(f"reference commit {commit} is not in a git history at {REPO_ROOT} "
                    f"(not a clone, or a shallow one: git fetch --unshallow): "
                    f"{found.stderr.decode(errors='replace').strip()}")
    archive = git("archive", commit, "src", "recipes")
    assert archive.returncode == 0, f"git archive failed: {archive.stderr.decode(errors='replace')}"
    dest.mkdir(parents=True)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, capture_output=True)
    assert untar.returncode == 0, f"tar -x failed: {untar.stderr.decode(errors='replace')}"
    assert (dest / "src" / "fashionbench" / "__init__.py").is_file() and (dest / "recipes").is_dir()
    return dest


class Package(NamedTuple):
    init: Path         # its fashionbench/__init__.py, which the child checks it imports
    pythonpath: Path   # the folder that holds fashionbench/, put first on the child's path


def run_side(folder: Path, steps: list[Step], packages: dict[str, Package], data_dir: Path) -> str | None:
    """One side's commands in order, each in a fresh interpreter in ``folder``, their
    output in ``folder``/N.stdout and N.stderr; None when each ended as it should (0, or
    KILLED after its first checkpoint where stopped), else what went wrong."""
    folder.mkdir(parents=True)
    for n, step in enumerate(steps, 1):
        package = packages[step.code]
        env = {k: v for k, v in os.environ.items() if k != "EQUIVALENCE_STOP"}
        env["PYTHONPATH"] = str(package.pythonpath)
        # One thread for good: a thread count fashionbench's CpuShare (threads.py) leaves
        # alone, where it would otherwise give a side that runs alone more of the cores.
        env["OMP_NUM_THREADS"] = "1"
        if step.stop:
            env["EQUIVALENCE_STOP"] = str(KILLED)
        args = [sys.executable, "-c", CHILD, os.path.realpath(package.init), *step.argv, "--data-dir", str(data_dir)]
        with open(folder / f"{n}.stdout", "w") as stdout, open(folder / f"{n}.stderr", "w") as stderr:
            try:
                status = subprocess.run(args, cwd=folder, env=env, stdout=stdout, stderr=stderr,
                                        timeout=600).returncode
            except subprocess.TimeoutExpired:  # run() kills it: no training left behind
                return f"command {n} ({' '.join(step.argv)}) took over 600 s"
        expected = KILLED if step.stop else 0
        if status != expected:
            return (f"command {n} ({' '.join(step.argv)}) exited with {status}, not {expected}:\n"
                    f"{(folder / f'{n}.stderr').read_text()[-3000:]}")
        if step.stop:  # what it leaves: an unfinished run, with the checkpoint of epoch 1
            left = [(d.name, torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True)["epoch"])
                    for d in (folder / "runs").iterdir() if not (d / "summary.json").exists()]
            if [epoch for _, epoch in left] != [1]:
                return f"command {n} ({' '.join(step.argv)}) was to leave one run at epoch 1, left {left}"
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refactor_changes_no_number(case, data_dir, tmp_path):
    reference = extract_reference(tmp_path / "reference", case.reference)
    after = Path(fashionbench.__file__).resolve()  # the working tree, whether installed or on PYTHONPATH
    packages = {"before": Package(reference / "src" / "fashionbench" / "__init__.py", reference / "src"),
                "after": Package(after, after.parents[1])}
    assert reference not in packages["after"].init.parents, f"this process imports the reference copy: {packages}"
    sides = {"before": [step._replace(code="before") for step in case.before],
             "after": [step._replace(code="after") if step.code == "side" else step for step in case.after]}
    # One thread each: the two sides run side by side, each at a fixed thread count.
    with ThreadPoolExecutor(2) as pool:
        failures = {name: pool.submit(run_side, tmp_path / name, steps, packages, data_dir)
                    for name, steps in sides.items()}
    for name, failure in failures.items():
        assert failure.result() is None, f"{name.upper()}: {failure.result()}"
    differences = []
    for folder in case.compared:
        before, after = tmp_path / "before" / "runs" / folder, tmp_path / "after" / "runs" / folder
        assert (before / "summary.json").is_file(), f"BEFORE wrote no summary.json in {before}"
        differences += [f"{folder}: {d}" if len(case.compared) > 1 else d for d in compare_runs(before, after)]
    if differences:
        pytest.fail(describe(differences, case.reference), pytrace=False)


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
