"""Calibration: ECE, NLL and Brier against a case worked by hand; temperature scaling
fitted on validation, stored in the summary and used by predict, the API and the
exported model; the calibrate command for runs finished without it; the report's
reliability diagram and the table's ECE column."""

from __future__ import annotations

import base64
import json
import math
import shutil

import numpy as np
import pytest
import torch

from fashionbench import api
from fashionbench.calibration import (
    fit_temperature,
    log_of,
    log_probabilities,
    probabilities,
    reliability,
    scores,
    temperature_scaling,
)
from fashionbench.inference import load_run
from fashionbench.rundir import RunDir, finished, read_summary
from fashionbench.summary import parse_summary
from fashionbench.tasks.leaderboard import cells, collect
from fashionbench.tasks.report_figures import TemperatureScaled, reliability_plot

from conftest import run_main
from test_cli import assert_one_line_error

# Five images, three classes. Top-label confidences and 15 bins of width 1/15:
#   0: 0.70, bin 10 [0.667, 0.733), right     3: 0.45, bin 6 [0.400, 0.467), wrong
#   1: 0.62, bin  9 [0.600, 0.667), wrong     4: 0.88, bin 13 [0.867, 0.933), right
#   2: 0.90, bin 13 [0.867, 0.933), right
# ECE = sum over bins of (images in it / 5) * |accuracy - mean confidence|
#     = (1 * |0 - 0.45| + 1 * |0 - 0.62| + 1 * |1 - 0.70| + 2 * |1 - (0.90 + 0.88) / 2|) / 5
#     = (0.45 + 0.62 + 0.30 + 0.22) / 5 = 0.318
# NLL = -(ln 0.70 + ln 0.28 + ln 0.90 + ln 0.30 + ln 0.88) / 5
#     = (0.356675 + 1.272966 + 0.105361 + 1.203973 + 0.127833) / 5 = 0.6133616
# Brier = mean over images of the sum over classes of (p - onehot)^2
#     = (0.09 + 0.04 + 0.01  |  0.01 + 0.3844 + 0.5184  |  0.0025 + 0.0025 + 0.01
#        |  0.2025 + 0.49 + 0.0625  |  0.0064 + 0.0144 + 0.0016) / 5
#     = (0.14 + 0.9128 + 0.015 + 0.755 + 0.0224) / 5 = 0.36904
HAND_PROBS = [[0.70, 0.20, 0.10],
              [0.10, 0.62, 0.28],
              [0.05, 0.05, 0.90],
              [0.45, 0.30, 0.25],
              [0.08, 0.88, 0.04]]
HAND_LABELS = [0, 2, 2, 1, 1]


def test_scores_match_a_hand_computation():
    probs, labels = torch.tensor(HAND_PROBS, dtype=torch.float64), torch.tensor(HAND_LABELS)
    got = scores(probs.log(), labels)
    assert got["ece"] == pytest.approx(0.318, abs=1e-6)
    assert got["nll"] == pytest.approx(0.6133616, abs=1e-6)
    assert got["brier"] == pytest.approx(0.36904, abs=1e-9)
    bins = reliability(probs.numpy(), labels.numpy())
    assert bins["count"].tolist() == [0] * 6 + [1, 0, 0, 1, 1, 0, 0, 2, 0]
    assert bins["accuracy"][13] == 1.0 and bins["confidence"][13] == pytest.approx(0.89)
    assert math.isnan(bins["accuracy"][0])  # an empty bin


def synthetic(temperature: float, n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits, and labels drawn from softmax(logits / temperature): their true temperature."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 10, generator=generator) * 4
    labels = torch.multinomial((logits / temperature).softmax(1), 1, generator=generator)[:, 0]
    return logits, labels


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with():
    logits, labels = synthetic(2.0)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.0, rel=0.1)
    nll = {t_: float(-log_probabilities(logits, "softmax", t_).gather(1, labels[:, None]).mean())
           for t_ in (1.0, t, 0.9 * t, 1.1 * t)}
    assert nll[t] < min(nll[1.0], nll[0.9 * t], nll[1.1 * t])  # the minimum, between its neighbours
    assert fit_temperature(*synthetic(2.0)) == t  # deterministic


def test_temperature_scaling_changes_no_prediction_and_fits_on_validation_only():
    val, test = synthetic(0.5, seed=1), synthetic(3.0, seed=2)  # test drawn otherwise: the fit must not see it
    entry = temperature_scaling({"val": val[0], "test": test[0]}, {"val": val[1], "test": test[1]})
    assert entry["temperature"] == pytest.approx(0.5, rel=0.1) and entry["fitted_on"] == "val"
    assert entry["after"]["val"]["nll"] < entry["before"]["val"]["nll"]
    assert entry["after"]["val"]["ece"] < entry["before"]["val"]["ece"]
    for head in ("softmax", "ova"):
        p, q = probabilities(val[0], head), probabilities(val[0], head, 3.0)
        assert torch.equal(p.argmax(1), q.argmax(1)) and torch.allclose(q.sum(1), torch.ones(len(q)))
    # The one-vs-all head: T divides the logits before the sigmoids, and lowers NLL there too.
    t = fit_temperature(val[0], val[1], "ova")
    assert t != 1.0
    nll = [float(-log_probabilities(val[0], "ova", t_).gather(1, val[1][:, None]).mean()) for t_ in (1.0, t)]
    assert nll[1] < nll[0]
    # A combination's probabilities, as logits: softmax gives them back.
    combined = val[0].softmax(1).double().numpy()
    assert np.allclose(probabilities(log_of(combined)).numpy(), combined)


def test_a_summary_without_temperature_scaling_still_reads(tmp_path):
    old = {"schema": 2, "kind": "run", "model": "basic_cnn", "weights": "swa", "test_acc": 0.9, "val_acc": 0.9,
           "results": {"swa": {"val": {"acc": 0.9, "loss": 0.3}, "test": {"acc": 0.9, "loss": 0.3}}},
           "seed": 0, "parameters": 1, "epochs": 1, "seconds_per_epoch": 1.0, "device": "cpu"}
    summary = parse_summary(json.dumps(old), tmp_path / "summary.json")
    assert summary.temperature_scaling is None and summary.temperature == 1.0
    assert summary.calibration("test") is None
    damaged = {**old, "temperature_scaling": {"temperature": 0, "before": {}, "after": {}}}
    with pytest.raises(Exception, match="temperature_scaling is damaged"):
        parse_summary(json.dumps(damaged), tmp_path / "summary.json")


# -- a trained run -----------------------------------------------------------------------

def test_a_trained_run_is_calibrated_as_it_finishes(tiny_run, data):
    summary = read_summary(tiny_run)
    scaling = summary.temperature_scaling
    assert set(scaling["before"]) == set(scaling["after"]) == {"val", "test"}
    assert scaling["after"]["val"]["nll"] <= scaling["before"]["val"]["nll"]
    # The scores are of the reported model's logits: NLL before T is the run's validation loss.
    assert scaling["before"]["val"]["nll"] == pytest.approx(summary.reported["val"]["loss"], abs=1e-5)
    t = summary.temperature
    assert t != 1.0
    # The API serves the temperature-scaled probabilities, and the network's own on request.
    loaded = load_run(finished(tiny_run), data)
    assert loaded.temperature == t
    logits = loaded.logits(loaded.splits["val"].images)
    assert torch.allclose(loaded.probs("val"), (logits / t).softmax(1), atol=1e-6)
    assert torch.allclose(loaded.probs("val", temperature=False), logits.softmax(1), atol=1e-6)
    images = loaded.splits["test"].images[:4].cpu()
    served = api.predict(tiny_run, list(images[:, 0].numpy()), top_k=1)
    raw = api.predict(tiny_run, list(images[:, 0].numpy()), top_k=1, temperature=False)
    expected = loaded.probabilities(images)
    assert np.allclose(np.stack([p.probabilities for p in served]), expected.numpy(), atol=1e-6)
    assert [p.indices for p in served] == [p.indices for p in raw]  # T changes no prediction
    assert not np.allclose(served[0].probabilities, raw[0].probabilities)


def test_the_report_shows_the_reliability_diagram_and_the_ece(tiny_run):
    report = json.loads((tiny_run / "report" / "report.json").read_text())
    summary = read_summary(tiny_run)
    before, after = summary.calibration("test")
    line = report["headline"]["calibration error (ECE)"]
    assert line.startswith(f"{before['ece']:.4f}, {after['ece']:.4f} after temperature scaling")
    assert f"T = {summary.temperature:.3f}" in line
    assert (tiny_run / "report" / "reliability.png").stat().st_size > 10_000
    page = (tiny_run / "report" / "report.html").read_text()
    assert "Reliability before and after temperature scaling" in page
    image = base64.b64decode(page.split('alt="Reliability before and after temperature scaling" '
                                        'src="data:image/png;base64,')[1].split('"')[0])
    assert image == (tiny_run / "report" / "reliability.png").read_bytes()


def test_the_reliability_plot_has_a_panel_before_and_after():
    probs = np.array(HAND_PROBS)
    scaled = TemperatureScaled.of(torch.from_numpy(probs).log(), "softmax", 2.0)
    assert np.allclose(scaled.before, probs)
    fig = reliability_plot(np.array(HAND_LABELS), scaled)
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert titles[0].endswith("ECE 0.3180") and "T = 2.000" in titles[1]


def test_calibrate_fits_a_run_finished_before_it_once(tiny_run, tmp_path, data_dir):
    """A run whose summary has no temperature scaling (as runs finished before it):
    calibrate fits it, writes it into the summary, and a second call changes nothing."""
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns("report*", "audit*"))
    written = json.loads((tiny_run / "summary.json").read_text())
    expected = written.pop("temperature_scaling")
    (old / "summary.json").write_text(json.dumps(written))
    assert RunDir(old).summary.temperature == 1.0  # served at T = 1 until calibrated
    result = run_main("calibrate", str(old), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert f"\n{old}: calibrated: temperature " in result.stdout
    assert "val " in result.stdout and "test " in result.stdout
    summary = json.loads((old / "summary.json").read_text())
    # The same model on the same images: the temperature it fitted as it finished.
    assert summary["temperature_scaling"]["temperature"] == pytest.approx(expected["temperature"], rel=1e-4)
    assert summary["temperature_scaling"]["after"]["test"]["ece"] == pytest.approx(
        expected["after"]["test"]["ece"], abs=1e-4)
    assert {k: v for k, v in summary.items() if k != "temperature_scaling"} == {
        k: v for k, v in written.items() if k != "temperature_scaling"}  # nothing else changed
    again = run_main("calibrate", str(old), "--data-dir", str(data_dir))
    assert again.returncode == 0 and f"{old}: already calibrated" in again.stdout
    assert json.loads((old / "summary.json").read_text()) == summary
    # A table of it has its test ECE, before and after.
    (row,) = collect([old])
    ece = summary["temperature_scaling"]
    assert cells(row)[5] == f"{100 * ece['before']['test']['ece']:.2f} → {100 * ece['after']['test']['ece']:.2f}"


def test_calibrate_refuses_what_is_not_a_finished_run(tmp_path):
    """Said in one line, before any data loads (no data folder is given)."""
    assert_one_line_error(run_main("calibrate", str(tmp_path / "nope")), "not a run folder", status=1)
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    (interrupted / "config.yaml").write_text("model: basic_cnn\n")
    assert_one_line_error(run_main("calibrate", str(interrupted)), "run not finished", status=1)
    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    (ensemble / "summary.json").write_text(json.dumps({
        "schema": 2, "kind": "ensemble", "model": "ensemble mean: basic_cnn x2", "weights": "ensemble",
        "test_acc": 0.9, "results": {"ensemble": {}}, "seed": "0+1", "parameters": 2, "epochs": 1,
        "seconds_per_epoch": 1.0, "device": "cpu"}))
    assert_one_line_error(run_main("calibrate", str(ensemble)), "is an ensemble, not a trained run", status=1)


def test_a_table_row_without_calibration_shows_a_dash(tiny_run, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    summary = json.loads((tiny_run / "summary.json").read_text())
    del summary["temperature_scaling"]
    (old / "summary.json").write_text(json.dumps(summary))
    shutil.copy(tiny_run / "config.yaml", old / "config.yaml")
    (row,) = collect([old])
    assert cells(row)[5] == "—"


def test_predict_and_calibrate_document_their_options():
    assert "--no-temperature" in run_main("predict", "--help").stdout
    result = run_main("calibrate", "--help")
    assert result.returncode == 0 and "validation" in result.stdout
