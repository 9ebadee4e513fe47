"""``fashionbench speedrun``: its budget is kept (or refused up front), its options are
checked as the command line is read, and the command it prints when stopped continues
the speedrun."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest

from fashionbench.config import MAX_EPOCHS
from fashionbench.errors import UsageError
from fashionbench.tasks.speedrun import MAX_BUDGET_SECONDS, Warmup, epochs_for

from conftest import run_main, wait_until

# A speedrun small enough for a test: 1,000 training images (3 steps of 256 an epoch).
TINY = ["--train-subset", "1000", "--set", "data.val_size=200", "--set", "data.test_subset=200"]


def one_line_error(result: subprocess.CompletedProcess, status: int = 2) -> str:
    assert result.returncode == status, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_budget_shorter_than_one_epoch_is_refused_by_epochs_for():
    warm = Warmup(seconds=1.0, seconds_per_step=0.1, steps_per_epoch=10)  # 1 s an epoch
    assert [epochs_for(b, warm) for b in (1.0, 4.99, 5.0, 120.0)] == [1, 4, 5, 120]
    with pytest.raises(UsageError, match=r"an epoch takes about 1\.0 s .*--budget 1 or more"):
        epochs_for(0.3, warm)
    # A week of 1-s epochs is more than the epochs' bound: the bound is trained.
    assert epochs_for(604800, warm) == MAX_EPOCHS


@pytest.mark.parametrize("option, value, says", [
    ("--budget", "1e9", "at most 604800"),
    ("--budget", "604801", "at most 604800"),
    ("--target", "200", "at most 100"),
    ("--target", "0", "more than 0"),
    ("--target", "-5", "more than 0"),
])
def test_budget_and_target_out_of_range_are_one_line_usage_errors(option, value, says, tmp_path):
    """Checked as the command line is read: nothing loaded (the data folder does not
    exist), nothing written."""
    result = run_main("speedrun", option, value, "--out", str(tmp_path / "out"),
                      "--data-dir", str(tmp_path / "no-data"))
    line = one_line_error(result)
    assert option in line and says in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "no-data").exists()


def test_the_budget_bound_is_a_week():
    assert MAX_BUDGET_SECONDS == 7 * 24 * 3600


def test_a_budget_shorter_than_one_epoch_stops_before_training(data_dir, tmp_path):
    """--budget that no epoch fits: one line with the measured cost of an epoch and the
    smallest budget that fits, exit status 2, no folder (not one epoch trained anyway)."""
    result = run_main("speedrun", "--seeds", "1", "--budget", "0.001", *TINY, "--out", str(tmp_path),
                      "--name", "short", "--data-dir", str(data_dir))
    line = one_line_error(result)
    assert "--budget 0.001 s is less than one epoch" in line and "measured" in line, line
    assert "or more" in line
    assert not (tmp_path / "short").exists()


def test_a_budget_dry_run_shows_the_epochs_the_budget_chooses(data_dir, tmp_path):
    """--budget S --dry-run: the epochs the budget would choose, estimated from the same
    warm-up the run measures (a few steps), not the recipe's 8; nothing written."""
    result = run_main("speedrun", "--seeds", "1", "--budget", "300", *TINY, "--out", str(tmp_path),
                      "--name", "dry", "--data-dir", str(data_dir), "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    head = result.stdout.splitlines()[0]
    chosen = int(head.split("epochs: ")[1].split()[0])
    step_ms = int(re.search(r"for 300 s: (\d+) ms a step measured", head).group(1))
    # The epochs that fit 300 s at the step cost it measured (rounding of the ms aside),
    # not the recipe's 8: even at 10 s a step, 3 steps an epoch fit 10 epochs.
    assert abs(chosen - 300 / (3 * step_ms / 1000)) <= 1 + chosen * 0.01 and chosen != 8, head
    assert f"epochs:     {chosen} x 3 steps" in result.stdout, result.stdout
    assert not (tmp_path / "dry").exists()
    short = run_main("speedrun", "--budget", "0.001", *TINY, "--out", str(tmp_path), "--data-dir",
                     str(data_dir), "--dry-run")
    assert "is less than one epoch" in one_line_error(short)


def test_the_command_a_stopped_speedrun_prints_continues_it(data_dir, tmp_path):
    """SIGTERM while seed 1 trains (after its first checkpoint): exit status 143 and one
    line with the command that continues it; that command, run as printed, keeps seed 0,
    resumes seed 1 from its checkpoint and writes speedrun.json. With --name given, as
    a scheduler's script would (it once printed the same command again, refused as the
    folder existed). With --report (make run's), the continued speedrun still writes each
    seed's report."""
    args = ["speedrun", "--seeds", "2", "--epochs", "3", *TINY, "--target", "50", "--out", str(tmp_path),
            "--name", "sr", "--data-dir", str(data_dir), "--report"]
    proc = subprocess.Popen([sys.executable, "-m", "fashionbench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_until((tmp_path / "sr" / "seed-1" / "checkpoint.pt").exists, proc, "seed 1's first checkpoint")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    line = one_line_error(subprocess.CompletedProcess(args, proc.returncode, "", err), status=143)
    assert line.startswith("fashionbench: error: terminated; continue with: fashionbench speedrun "), line
    assert not (tmp_path / "sr" / "seed-1" / "summary.json").exists()  # stopped inside seed 1
    printed = shlex.split(line.split("continue with: ")[1])
    resumed = subprocess.run([sys.executable, "-m", *printed], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "seed 0: already complete" in resumed.stdout and "seed 1: resuming" in resumed.stdout
    report = json.loads((tmp_path / "sr" / "speedrun.json").read_text())
    assert [(s["seed"], s["resumed"]) for s in report["seeds"]] == [(0, False), (1, True)]
    assert report["epochs"] == 3 and report["target"] == 50
    assert json.loads((tmp_path / "sr" / "seed-1" / "summary.json").read_text())["epochs"] == 3
    for seed in (0, 1):
        report = tmp_path / "sr" / f"seed-{seed}" / "report" / "report.html"
        assert f"report: {report}" in resumed.stdout and report.stat().st_size > 0
    again = subprocess.run([sys.executable, "-m", *printed], capture_output=True, text=True, timeout=120)
    assert "already complete" in one_line_error(again, status=1)


def test_any_recipe_file_is_timed_with_config(data_dir, tmp_path):
    """--config FILE: the speedrun trains that recipe (here BasicCNN's, not speedrun_net),
    each seed's config is the file's with the command's overrides; a file that is not
    there is one line, before anything is written."""
    result = run_main("speedrun", "--config", "recipes/basic_cnn.yaml", "--seeds", "1", "--epochs", "1", *TINY,
                      "--target", "10", "--out", str(tmp_path), "--name", "cnn", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "cnn" / "speedrun.json").read_text())
    assert report["model"] == "basic_cnn" and report["epochs"] == 1
    config = (tmp_path / "cnn" / "seed-0" / "config.yaml").read_text()
    assert "model: basic_cnn" in config and "name: adamw" in config  # the recipe's own optimizer
    missing = run_main("speedrun", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path),
                       "--name", "none", "--data-dir", str(data_dir))
    assert "none.yaml" in one_line_error(missing, status=1)
    assert not (tmp_path / "none").exists()
    resumed = run_main("speedrun", "--resume", str(tmp_path / "cnn"), "--config", "recipes/basic_cnn.yaml")
    assert "--config" in one_line_error(resumed)


def test_resume_continues_exactly_as_planned(tmp_path):
    """--resume takes no option that would change the speedrun (only --data-dir), and
    refuses a folder that is not a speedrun's."""
    both = run_main("speedrun", "--resume", str(tmp_path), "--seeds", "3")
    assert "--seeds" in one_line_error(both) and "--resume" in both.stderr
    (tmp_path / "other").mkdir()
    other = run_main("speedrun", "--resume", str(tmp_path / "other"))
    assert "not a speedrun folder" in one_line_error(other, status=1)


def test_speedrun_refuses_an_existing_folder_and_says_how_to_continue(tmp_path):
    (tmp_path / "taken").mkdir()
    result = run_main("speedrun", "--out", str(tmp_path), "--name", "taken", "--epochs", "1")
    assert "--resume it" in one_line_error(result, status=1)
    assert os.listdir(tmp_path / "taken") == []


def test_the_api_checks_budget_and_target_as_the_cli_does(tmp_path):
    import fashionbench as fb

    with pytest.raises(UsageError, match="a week"):
        fb.speedrun(budget=1e9, out=tmp_path, data_dir=tmp_path / "no-data")
    with pytest.raises(UsageError, match="at most 100"):
        fb.speedrun(target=200, out=tmp_path, data_dir=tmp_path / "no-data")
    with pytest.raises(UsageError, match="a week"):
        fb.speedrun_plan(budget=1e9, data_dir=tmp_path / "no-data")
    assert list(tmp_path.iterdir()) == []  # nothing written, no data looked for
