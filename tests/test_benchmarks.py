"""The scripts behind published speed figures run: each in its tiny mode (``--tiny``: the
script's own code path end to end, on the CPU, on a few hundred images or a few steps),
whose figures mean nothing but whose exit status and output format are checked, so that
a script cannot break unnoticed. (benchmarks/gpu_table.py is checked in test_deadline.py.)"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """``python benchmarks/NAME.py --tiny ARGS`` as its docstring runs it: a script, with
    benchmarks/ first on its path (some import one another)."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--tiny", *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_machine_recorded(record: dict, script: str) -> None:
    """A benchmark's record names the machine, the code and the command that made it, as a
    run's summary.json does."""
    assert record["cpu"] and record["cpu_cores"] >= 1 and "cpu_bf16" in record and "gpu" in record, record
    assert record["torch"] and record["git_commit"] and script in record["command"], record


def test_the_concurrency_benchmark_runs_and_writes_its_table(data_dir, tmp_path):
    result = run_script("concurrency", "--data-dir", str(data_dir), "--out", str(tmp_path))
    record = json.loads((tmp_path / "concurrency.json").read_text())
    assert_machine_recorded(record, "concurrency.py")
    assert record["tiny"] is True and record["cores"] >= 1 and record["alone_images_per_s"] > 0
    rows = {(row["policy"], row["processes"]): row for row in record["table"]}
    assert set(rows) == {(p, n) for p in ("torch-default", "shared") for n in (1, 2)}
    assert rows[("shared", 1)]["share_median"] == rows[("torch-default", 1)]["share_median"] == 1.0
    for row in rows.values():
        assert 0 < row["share_min"] <= row["share_median"] <= row["share_max"]
    assert "each, of alone (ideal 1/N)" in result.stdout
    assert f"written: {tmp_path / 'concurrency.json'}" in result.stdout


NUMBER = r"[\d.,]+"
ROW_OF_SPEEDS = rf" +{NUMBER} MFLOPs  bf16 +\d+ img/s  fp32 +\d+ img/s  one epoch of 55,000 in bf16: +{NUMBER} s"

# The scripts that print their tables and write nothing: whether each reads the data,
# and its lines, as regular expressions matched against whole lines of its output, with
# how many lines each matches.
PRINTED = {
    "models": (True, [
        (r"round 1  basic_cnn +(fp32|bf16) +\d+ steps +[\d.]+ img/s", 2),
        (re.escape("| model | parameters | batch | fp32 images/s | bf16 images/s | bf16 speed-up "
                   "| s/epoch fp32 | s/epoch bf16 |"), 1),
        (rf"\| basic_cnn \| {NUMBER} \| 128 \| {NUMBER} \| {NUMBER} \| {NUMBER}x \| {NUMBER} \| {NUMBER} \|", 1),
    ]),
    "speedrun_widths": (False, [
        (r"torch \S+, \d+ threads", 1),
        (rf"basic_cnn {ROW_OF_SPEEDS}", 1),
        (rf"\d+, \d+, \d+, \d+ {ROW_OF_SPEEDS}", 5),  # the speedrun_net widths
        (rf"residual \d+, \d+, \d+, \d+ {ROW_OF_SPEEDS}", 2),  # speedrun_resnet's
    ]),
    "throughput": (True, [
        (r"round 1  (conventional (fp32|bf16), DataLoader 2 workers|ours (fp32|bf16)) +\d+ img/s", 4),
        (re.escape("| pipeline | images/s (median) | s/epoch (55,000 images) |"), 1),
        (rf"\| (conventional|ours) [^|]+ \| \d+ \| {NUMBER} \|", 4),
        (rf"\| (ours at defaults \((fp32|bf16)\) vs conventional at defaults \(fp32\)|equal precision, fp32"
         rf"|equal precision, bf16) \| {NUMBER}x \|", 3),
        (rf"basic_cnn: {NUMBER} MFLOPs per training image \(3 x forward\); 128x128 matrix product on \d+ "
         rf"threads: fp32 \d+ GFLOP/s, bf16 \d+ GFLOP/s", 1),
        (r"\| (conventional|ours) [^|]+ \| \d+ \| \d+% \|", 4),
    ]),
    "where_time_goes": (True, [
        (rf"speedrun_net: batch 256, (fp32|bf16), \d+ threads, 3 steps timed: {NUMBER} ms a step, "
         rf"\d+ images/s", 1),
        (re.escape("| phase | ms a step | share of a step |"), 1),
        (rf"\| (augment|forward|loss|backward|optimizer) \| {NUMBER} \| {NUMBER}% \|", 5),
        (rf"one validation pass \(with flip TTA\), 500 images: {NUMBER} s; an epoch's training "
         rf"\(\d+ steps\): {NUMBER} s; validating after every epoch adds \d+% \(untimed in a speedrun\)", 1),
    ]),
}


@pytest.mark.parametrize("script", PRINTED)
def test_a_printing_benchmark_runs_and_prints_its_tables(script, data_dir):
    reads_data, lines = PRINTED[script]
    result = run_script(script, *(["--data-dir", str(data_dir)] if reads_data else []))
    printed = result.stdout.splitlines()
    for pattern, count in lines:
        matching = [line for line in printed if re.fullmatch(pattern, line)]
        assert len(matching) == count, f"{count} line(s) like {pattern!r} expected in:\n{result.stdout}"


def test_the_distributed_benchmark_runs_one_and_two_processes_and_writes_its_table(data_dir, tmp_path):
    result = run_script("distributed", "--data-dir", str(data_dir), "--out", str(tmp_path))
    record = json.loads((tmp_path / "distributed.json").read_text())
    assert_machine_recorded(record, "distributed.py")
    assert record["args"]["tiny"] is True and record["cores"] >= 1
    rows = record["rows"]
    assert [r["processes"] for r in rows] == [1, 2] and all(r["device"].startswith("cpu") for r in rows)
    assert rows[0]["speedup"] == 1.0 and rows[1]["backend"] == "gloo"
    for row in rows:
        assert row["seconds_per_epoch"] > 0 and row["images_per_s"] > 0 and 0 <= row["val_acc"] <= 1
    assert "| processes | s/epoch | speed-up | img/s | val acc | test acc (2,000) |" in result.stdout
    for processes in (1, 2):
        assert re.search(rf"^\| {processes} \| [\d.]+ \| [\d.]+x \| \d+ \| [01]\.\d{{4}} \| [01]\.\d{{4}} \|$",
                         result.stdout, re.M), result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["distributed.json", "ranks1-0", "ranks2-0"]


def test_the_time_to_accuracy_benchmark_runs_its_four_pipelines_and_writes_its_curves_and_plot(data_dir, tmp_path):
    """Its speedrun pipeline on a recipe of its own (--speedrun-recipe: speedrun_net's with
    the moving average, whose final point is the average's)."""
    recipe = tmp_path / "recipe" / "ema.yaml"
    recipe.parent.mkdir()
    recipe.write_text((ROOT / "recipes" / "speedrun_net.yaml").read_text() + "ema:\n  enabled: true\n")
    tmp_path = tmp_path / "out"
    result = run_script("speedrun", "--data-dir", str(data_dir), "--out", str(tmp_path), "--repeats", "1",
                        "--speedrun-recipe", str(recipe))
    first = (tmp_path / "repeat-1.json").read_text()
    record = json.loads((tmp_path / "speedrun_benchmark.json").read_text())
    assert_machine_recorded(record, "speedrun.py")
    assert record["tiny"] is True and record["train_subset"] == 1000 and record["repeats"] == 1
    curves = record["curves"]
    assert list(curves) == list(record["pipelines"]) == ["speedrun", "basic_cnn recipe",
                                                          "engine, conventional settings", "conventional"]
    # The engine's pipeline trains as the conventional one does (the equal-network comparison).
    assert record["pipelines"]["engine, conventional settings"] == "basic_cnn: 2 epochs, batch 128, sgd peak 0.01, fp32"
    for curve in curves.values():
        assert [p["epoch"] for p in curve] == [1, 2] and 0 < curve[0]["seconds"] < curve[1]["seconds"]
    assert curves["basic_cnn recipe"][-1]["weights"] == "swa"  # its recipe's averaged model, as published
    assert curves["speedrun"][-1]["weights"] == "ema" and record["pipelines"]["speedrun"].startswith(str(recipe))
    assert record["stopped"] == {"speedrun": "end of its recipe", "basic_cnn recipe": "end of its recipe",
                                 "engine, conventional settings": "end of its recipe", "conventional": "2 epochs"}
    assert all(list(row) == ["90", "92", "93", "94"] for row in record["seconds_to"].values())
    # Ratios are the conventional pipeline's and the engine's over the others, never engine/conventional.
    assert all(key.split("/")[0] in ("conventional", "engine, conventional settings")
               and not key.startswith("engine, conventional settings/conventional")
               for key in [*record["ratios"], *record["ratios_at_least"]])
    assert (tmp_path / "speedrun_benchmark.png").read_bytes().startswith(PNG)
    assert "| pipeline | s to 90% | s to 92% | s to 93% | s to 94% | best val % | epochs | stopped at |" \
        in result.stdout
    assert re.search(r"^\| conventional \|( (\d+|-) \|){4} [\d.]+ \| 2 \| 2 epochs \|$", result.stdout, re.M)
    assert f"wrote {tmp_path / 'speedrun_benchmark.json'} and {tmp_path / 'speedrun_benchmark.png'}" \
        in result.stdout

    # A second repeat: the first is kept, not run again, and the figures become median and range.
    result = run_script("speedrun", "--data-dir", str(data_dir), "--out", str(tmp_path), "--repeats", "2",
                        "--speedrun-recipe", str(recipe))
    assert f"repeat 1 of 2: kept from {tmp_path / 'repeat-1.json'}" in result.stdout
    assert (tmp_path / "repeat-1.json").read_text() == first
    record = json.loads((tmp_path / "speedrun_benchmark.json").read_text())
    assert record["repeats"] == 2 and len(record["per_repeat"]) == 2
    for name, row in record["summary"]["seconds_to"].items():
        for t, figure in row.items():
            reached = [r["seconds_to"][name][t] for r in record["per_repeat"] if r["seconds_to"][name][t] is not None]
            assert figure is None if not reached else \
                figure == {"median": statistics.median(reached), "min": min(reached), "max": max(reached),
                           "n": len(reached)}
    assert "Over 2 repeats, median (range)" in result.stdout

    # Kept repeats of other settings are refused, not mixed in.
    other = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speedrun.py"), "--tiny", "--data-dir",
                            str(data_dir), "--out", str(tmp_path), "--repeats", "2", "--max-minutes", "1"],
                           capture_output=True, text=True, timeout=600)
    assert other.returncode != 0 and "was run with other settings" in other.stderr, other.stderr[-2000:]


def test_the_make_run_timing_runs_make_run_in_a_fresh_clone_and_keeps_its_run(data_dir, tmp_path):
    """Tiny mode: one fresh clone, this environment in it (no set-up timed), `make run`
    with one short epoch; the record, its line, and the kept run folder with its report
    (the README's picture is taken from such a folder)."""
    kept = tmp_path / "kept"
    result = run_script("make_run", "--data-dir", str(data_dir), "--out", str(tmp_path), "--keep", str(kept))
    record = json.loads((tmp_path / "make_run.json").read_text())
    assert_machine_recorded(record, "make_run.py")
    assert record["tiny"] is True
    [row] = record["runs"]
    assert row["setup_seconds"] == 0 and row["run_seconds"] > 0 and row["epochs"] == 1
    assert row["total_seconds"] == row["setup_seconds"] + row["run_seconds"] == record["total_seconds"]["median"]
    assert 0 < row["train_seconds"] < row["run_seconds"] and 0 <= row["test_acc"] <= 1
    assert re.search(r"^run 1/1: set-up 0 s \+ make run \d+ s = \d+ s; 1 epochs, \d+ s of training, test [\d.]+%$",
                     result.stdout, re.M), result.stdout
    assert "make run from a fresh clone, 1 runs: median" in result.stdout
    assert (kept / "speedrun.json").is_file() and (kept / "seed-0" / "report" / "report.html").is_file()
    assert (kept / "seed-0" / "model.pt").is_file()


def test_the_cuda_check_runs_its_steps_on_the_cpu(data_dir, tmp_path):
    """Its CUDA steps, on the CPU in tiny mode: the default job with its report, two runs
    of one configuration compared, and one killed with SIGKILL inside its second epoch
    then resumed (on a CPU, exactly to the uninterrupted run's numbers)."""
    result = run_script("cuda_check", "--data-dir", str(data_dir), "--out", str(tmp_path))
    record = json.loads((tmp_path / "cuda_check.json").read_text())
    assert_machine_recorded(record, "cuda_check.py")
    assert json.loads(result.stdout) == record
    assert record["device"] == "cpu" and record["tiny"] is True
    job = record["default_job"]
    assert job["exit"] == 0 and job["wall_seconds"] > 0 and job["precision"] in ("fp32", "bf16"), job
    assert 0 <= job["val_acc"] <= 1 and 0 <= job["test_acc"] <= 1 and job["seconds_per_epoch"] > 0
    assert (tmp_path / "runs" / "default" / "report" / "report.html").exists()
    assert record["short_a_exit"] == record["short_b_exit"] == record["resume_exit"] == 0, record
    assert record["killed_after_epochs"] == 1 and record["killed_before_finishing"] is True
    assert record["same_config_identical"] is True and record["same_config_largest_difference"] == 0
    assert record["resumed_identical"] is True and record["resumed_largest_difference"] == 0


def test_the_gpu_speedrun_runs_its_steps_on_the_cpu(data_dir, tmp_path):
    """Its steps on the CPU in tiny mode: the speedrun eager and with compile=true (run
    uncompiled there), then the epoch cost of BasicCNN's recipe."""
    result = run_script("gpu_speedrun", "--data-dir", str(data_dir), "--out", str(tmp_path))
    record = json.loads((tmp_path / "gpu_speedrun.json").read_text())
    assert_machine_recorded(record, "gpu_speedrun.py")
    assert json.loads(result.stdout) == record
    assert record["device"] == "cpu" and record["tiny"] is True and record["wall_seconds"] > 0
    assert list(record["speedrun"]) == ["eager", "compiled"]
    for step in record["speedrun"].values():
        assert step["exit"] == 0 and step["device"].startswith("cpu") and step["epochs"] == 1, step
        assert len(step["seconds_per_seed"]) == len(step["val_seconds_per_seed"]) == 2
        assert 0 <= step["test_acc_mean"] <= 100 and step["median_seconds"] > 0
    assert "--set compile=true" in record["speedrun"]["compiled"]["command"]
    assert "time_to_94_seconds" in record  # None: a tiny run reaches no 94%
    assert list(record["epoch_cost"]) == ["basic_cnn"]
    cost = record["epoch_cost"]["basic_cnn"]
    assert cost["exit"] == 0 and cost["recipe_epochs"] == 30 and cost["estimated_full_seconds"] > 0, cost
    assert record["reproduce_full_seed0_estimated_seconds"] == cost["estimated_full_seconds"]
    assert len(re.findall(r"^exit 0 after \d+ s: fashionbench ", result.stderr, re.M)) == 3, result.stderr
