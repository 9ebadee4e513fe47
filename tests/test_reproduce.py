"""``fashionbench reproduce --budget smoke``: all eight models end to end through
the CLI, then the table, skipping, resuming and refusing mixed budgets."""

from __future__ import annotations

import json

import pytest

from fashionbench.models import reference_figures

from conftest import run_cli, run_main
from test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def smoke(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    # All eight models train in about 80 s alone on 2 cores; beside the other test files'
    # training (the notebook's kernel, two workers) it took 474 s on an Intel Xeon with
    # AMX and over 600 s within the whole suite: the limit is a hang's, not a speed test.
    result = run_cli("reproduce", "--budget", "smoke", "--seeds", "0", "--out", str(out),
                     "--data-dir", str(data_dir), timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_every_model_trains_averages_and_reports(smoke):
    out, result = smoke
    for model in reference_figures():
        summary = json.loads((out / "runs" / f"{model}-s0" / "summary.json").read_text())
        assert summary["model"] == model and summary["weights"] == "swa"
        assert summary["swa_snapshots"] == 2 and summary["train_size"] == 160
        assert summary["test_size"] == 100 and summary["epochs"] == 2
    table = (out / "table.md").read_text()
    assert "Smoke runs" in table and table in result.stdout
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert sorted(row.split(" | ")[0][2:] for row in rows[1:]) == sorted(reference_figures())
    assert len((out / "table.csv").read_text().splitlines()) == 1 + len(reference_figures())


def test_complete_runs_are_skipped_and_interrupted_ones_resumed(smoke, data_dir):
    out, _ = smoke
    run = out / "runs" / "basic_cnn-s0"
    before = json.loads((run / "summary.json").read_text())
    (run / "summary.json").unlink()  # as if killed after the last checkpoint
    (run / "model.pt").unlink()
    result = run_cli("reproduce", "--budget", "smoke", "--seeds", "0", "--out", str(out),
                     "--models", "mini_vgg,basic_cnn", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "[1/2] mini_vgg seed 0: already complete" in result.stdout
    assert "[2/2] basic_cnn seed 0: resuming" in result.stdout
    after = json.loads((run / "summary.json").read_text())
    assert after["results"] == before["results"]


def test_a_different_budget_never_reuses_runs(smoke, data_dir):
    out, _ = smoke
    assert_one_line_error(
        run_main("reproduce", "--models", "basic_cnn", "--seeds", "0", "--out", str(out),
                "--data-dir", str(data_dir)),
        "trained with another configuration", status=1)


@pytest.mark.parametrize("args, fragment", [
    (["--models", "basic_cnn,resnet9000"], "unknown model 'resnet9000'"),
    (["--seeds", "0,x"], "argument --seeds: expected comma-separated int values, got '0,x'"),
    (["--models", ","], "argument --models: is empty"),
])
def test_bad_options_give_one_line_errors(args, fragment, tmp_path):
    assert_one_line_error(run_main("reproduce", "--out", str(tmp_path), *args), fragment)
