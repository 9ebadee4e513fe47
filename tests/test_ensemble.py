"""Ensembles: the combination rules by hand, and an ensemble of one run is that run."""

import json

import numpy as np
import pytest

from fashionbench.ensemble import combine, fit_weights, vote

from conftest import run_cli
from test_cli import assert_one_line_error


def test_mean_and_weighted_mean():
    probs = np.array([[[0.6, 0.4], [0.2, 0.8]],
                      [[0.2, 0.8], [0.4, 0.6]]])  # (members, N, classes)
    assert combine(probs, "mean") == pytest.approx(np.array([[0.4, 0.6], [0.3, 0.7]]))
    weighted = combine(probs, "weighted", np.array([0.75, 0.25]))
    assert weighted == pytest.approx(np.array([[0.5, 0.5], [0.25, 0.75]]))


def test_vote_majority_and_ties_by_mean_probability():
    probs = np.array([
        [[0.5, 0.3, 0.2], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1]],
        [[0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.1, 0.2, 0.7]],
        [[0.2, 0.6, 0.2], [0.3, 0.2, 0.5], [0.6, 0.3, 0.1]],
    ])
    combined = vote(probs)
    assert combined.sum(1) == pytest.approx(np.ones(3))
    # sample 0: votes 0, 1, 1 -> class 1, though member 0 alone is surest of class 0
    # sample 1: one vote each; mean probabilities 0.30, 0.40, 0.30 -> class 1
    # sample 2: one vote each; mean probabilities 0.27, 0.43, 0.30 -> class 1
    assert combined.argmax(1).tolist() == [1, 1, 1]
    assert combined[0, 1] == pytest.approx((2 + 0.5 * (0.3 + 0.7 + 0.6) / 3) / 3.5)
    tie = np.array([[[0.9, 0.1]], [[0.2, 0.8]]])  # one vote each, mean 0.55 vs 0.45
    assert vote(tie).argmax(1).tolist() == [0]


def test_weights_favour_the_member_that_is_right():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 400)
    good = np.full((400, 10), 0.02)
    good[np.arange(400), labels] = 0.82
    noise = rng.dirichlet(np.ones(10), 400)
    weights = fit_weights(np.stack([noise, good]), labels)
    assert weights.sum() == pytest.approx(1) and weights[1] > 0.9


def test_an_ensemble_of_one_run_is_that_run(tiny_run, data_dir, tmp_path):
    result = run_cli("ensemble", str(tiny_run), "--out", str(tmp_path), "--name", "one",
                     "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    single = json.loads((tiny_run / "summary.json").read_text())
    assert summary["test_acc"] == pytest.approx(single["test_acc"], abs=1e-6)
    assert summary["val_acc"] == pytest.approx(single["val_acc"], abs=1e-6)
    assert summary["results"]["ensemble"]["test"]["loss"] == pytest.approx(
        single["results"]["swa"]["test"]["loss"], abs=1e-4)
    assert (tmp_path / "one" / "report" / "report.html").exists()
    table = run_cli("table", str(tmp_path / "one"), str(tiny_run), "--out", str(tmp_path / "t"))
    assert table.returncode == 0 and "| ensemble mean: basic_cnn x1 | - |" in table.stdout


def test_ensemble_mistakes_give_one_line_errors(tiny_run, tmp_path):
    assert_one_line_error(run_cli("ensemble", str(tmp_path / "nope")), "not a run folder")
    bad = run_cli("ensemble", str(tiny_run), "--method", "median")
    assert bad.returncode == 2 and "invalid choice: 'median'" in bad.stderr
    assert "Traceback" not in bad.stderr
