"""Reports: confusion matrix orientation and counts, P/R/F1, confident errors,
the report folder and its self-contained HTML, audits, the LR finder, tables."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from fashionbench.schedule import SchedulePlan
from fashionbench.tasks.lr_find import lr_range_test, smooth
from fashionbench.tasks.report import class_scores, confident_errors, confusion, write_report
from fashionbench.tasks.report_figures import Predictions, curves_plot, scores_plot
from fashionbench.training import Trainer

from conftest import run_cli, run_main, small_config
from test_cli import assert_one_line_error


def fake_predictions(labels, predicted, confidence) -> Predictions:
    n = len(labels)
    probs = np.full((n, 10), 0.0)
    for i, (p, c) in enumerate(zip(predicted, confidence)):
        probs[i] = (1 - c) / 9
        probs[i, p] = c
    images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return Predictions(np.array(labels), probs, images, np.arange(100, 100 + n))


def test_confusion_rows_are_true_classes_and_columns_predictions():
    labels = np.array([0, 0, 1, 2, 2, 2])
    predicted = np.array([0, 1, 1, 0, 2, 2])
    counts = confusion(labels, predicted)
    assert counts.shape == (10, 10) and counts.sum() == 6
    assert counts[0, 0] == 1 and counts[0, 1] == 1  # true 0 predicted as 1: row 0, column 1
    assert counts[2, 0] == 1 and counts[0, 2] == 0  # true 2 predicted as 0: row 2, column 0
    assert counts[1, 1] == 1 and counts[2, 2] == 2


def test_precision_recall_f1_match_a_hand_computation():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 500)
    predicted = np.where(rng.random(500) < 0.7, labels, rng.integers(0, 10, 500))
    scores = class_scores(labels, predicted)
    counts = confusion(labels, predicted)
    f1s = []
    for i, name in enumerate(scores):
        if i == 10:
            break
        precision = counts[i, i] / counts[:, i].sum()
        recall = counts[i, i] / counts[i].sum()
        f1s.append(2 * precision * recall / (precision + recall))
        assert scores[name]["precision"] == pytest.approx(precision)
        assert scores[name]["recall"] == pytest.approx(recall)
        assert scores[name]["f1"] == pytest.approx(f1s[-1])
        assert scores[name]["support"] == counts[i].sum()
    assert scores["macro avg"]["f1"] == pytest.approx(np.mean(f1s))
    support = counts.sum(1)
    assert scores["weighted avg"]["f1"] == pytest.approx(np.dot(f1s, support) / support.sum())


def test_confident_errors_are_only_errors_most_confident_first():
    pred = fake_predictions([0, 1, 2, 3, 4], [0, 2, 2, 5, 1], [0.99, 0.6, 0.9, 0.8, 0.95])
    assert confident_errors(pred).tolist() == [4, 3, 1]


def decode_images(page: str) -> list[Image.Image]:
    images = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()  # raises on a damaged image
        images.append(image)
    return images


def test_report_folder_is_complete_and_self_contained(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 300)
    predicted = np.where(rng.random(300) < 0.8, labels, rng.integers(0, 10, 300))
    pred = fake_predictions(labels, predicted, rng.uniform(0.3, 1.0, 300))
    history = [{"epoch": e, "lr": 0.1 / e, "train_loss": 1 / e, "train_acc": 0.8, "val_loss": 1.1 / e,
                "val_acc": 0.79} for e in range(1, 6)]
    html_path = write_report(tmp_path / "rep", pred, "synthetic", {"model": "x"}, history, 3, 12)
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    assert names == {"confusion.png", "confusion.csv", "scores.png", "scores.csv", "errors.png",
                     "errors.csv", "curves.png", "report.json", "report.html", "report.md"}
    page = html_path.read_text()
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # nothing fetched from anywhere
    assert "http://" not in page and "https://" not in page
    assert len(decode_images(page)) == 4
    assert 'name="viewport"' in page
    errors = (tmp_path / "rep" / "errors.csv").read_text().splitlines()
    assert len(errors) - 1 == int((predicted != labels).sum())
    rows = [line.split(",") for line in errors[1:]]
    assert all(r[1] != r[3] for r in rows)  # true != predicted
    probabilities = [float(r[5]) for r in rows]
    assert probabilities == sorted(probabilities, reverse=True)
    matrix = (tmp_path / "rep" / "confusion.csv").read_text().splitlines()
    assert matrix[0].startswith("true \\ predicted,T-shirt/top,Trouser")
    assert int(matrix[1].split(",")[1]) == int(((labels == 0) & (predicted == 0)).sum())
    assert int(matrix[1].split(",")[2]) == int(((labels == 0) & (predicted == 1)).sum())
    markdown = (tmp_path / "rep" / "report.md").read_text()
    for name in ("confusion.png", "scores.png", "errors.png", "curves.png"):
        assert f"]({name})" in markdown


def test_per_class_scores_chart_shows_the_whole_0_to_1_scale():
    """Bars on an axis cut at the lowest score exaggerate small differences."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 1000)
    predicted = np.where(rng.random(1000) < 0.9, labels, rng.integers(0, 10, 1000))
    scores = class_scores(labels, predicted)
    assert min(scores[c]["recall"] for c in list(scores)[:10]) > 0.8
    fig = scores_plot(scores)
    [ax] = fig.axes
    assert ax.get_ylim() == (0.0, 1.0)
    assert len(ax.patches) == 30 and all(bar.get_y() == 0 for bar in ax.patches)  # bars stand on 0
    plt.close(fig)


def history_of(cfg, steps_per_epoch=10) -> list[dict]:
    """metrics.jsonl as training writes it: row ``epoch`` (1-based) is measured at the
    end of that epoch, with the SWA snapshots taken up to then."""
    snapshots = SchedulePlan(cfg, steps_per_epoch).snapshot_steps
    return [{"epoch": e, "lr": 0.01, "train_loss": 1 / e, "train_acc": 0.8, "val_loss": 1.1 / e,
             "val_acc": 0.79, "swa_snapshots": sum(s <= e * steps_per_epoch for s in snapshots)}
            for e in range(1, cfg.epochs + 1)]


def swa_markers(fig) -> list[float]:
    return [x for ax in fig.axes for line in ax.get_lines() if line.get_linestyle() == "--"
            for x in set(line.get_xdata())]


@pytest.mark.parametrize("overrides, first_snapshot", [
    # The recipe's constant LR while averaging: snapshots at the end of epochs 4, 5, 6.
    (["epochs=6", "swa.start=4", "swa.lr=0.001"], 4),
    # Cyclic LR averaged at cycle ends (2 epochs): from epoch 3 the first falls at the end of 4.
    (["epochs=8", "swa.start=3", "swa.lr=null", "schedule.cycle_epochs=2"], 4),
])
def test_swa_marker_sits_where_the_first_snapshot_is_plotted(overrides, first_snapshot):
    cfg = small_config(*overrides)
    history = history_of(cfg)
    assert cfg.swa.start_epoch == int(overrides[1].split("=")[1])
    assert [r["epoch"] for r in history if r["swa_snapshots"]][0] == first_snapshot
    fig = curves_plot(history, cfg.swa.start_epoch)
    assert swa_markers(fig) == [first_snapshot] * 3  # on each of the three panels
    # The curves' points are plotted at their row's epoch: the marker is on the first
    # point measured after averaging began, the end of the start epoch or later.
    assert list(fig.axes[0].get_lines()[0].get_xdata()) == list(range(1, cfg.epochs + 1))
    if cfg.swa.lr:
        assert swa_markers(fig)[0] == cfg.swa.start_epoch
    plt.close(fig)


def test_no_swa_marker_without_swa():
    cfg = small_config("epochs=4", "swa.enabled=false")
    fig = curves_plot(history_of(cfg), None)
    assert swa_markers(fig) == []
    plt.close(fig)


def test_train_report_agrees_with_the_summary(tiny_run):
    summary = json.loads((tiny_run / "summary.json").read_text())
    report = json.loads((tiny_run / "report" / "report.json").read_text())
    assert report["accuracy"] == pytest.approx(summary["test_acc"], abs=1e-4)
    assert sum(map(sum, report["confusion"])) == summary["test_size"] == 2000
    assert report["headline"]["accuracy, SWA model"] == f"{100 * summary['test_acc']:.2f}%"
    # The headline in the order a reader asks: accuracy, calibration, time and machine, then the rest.
    keys = list(report["headline"])
    order = ["accuracy, SWA model", "calibration error (ECE)", "training time", "trained on", "macro F1"]
    assert [keys.index(k) for k in order] == sorted(keys.index(k) for k in order), keys
    assert report["headline"]["trained on"] == summary["device"]
    assert "accuracy under corruptions" not in keys  # no robustness.json: no line (test_corruptions has one)
    assert len(decode_images((tiny_run / "report" / "report.html").read_text())) == 5  # and the reliability diagram


def test_report_command_on_validation_and_errors(tiny_run, data_dir):
    result = run_cli("report", str(tiny_run), "--split", "val", "--errors", "10",
                     "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    report = json.loads((tiny_run / "report-val" / "report.json").read_text())
    assert sum(map(sum, report["confusion"])) == 1000
    assert_one_line_error(run_main("report", str(tiny_run), "--errors", "0"), "--errors")
    assert_one_line_error(run_main("report", str(tiny_run.parent / "nope")), "not a run folder", status=1)


def test_audit_lists_confident_disagreements(tiny_run, data_dir):
    result = run_cli("audit", str(tiny_run), "--split", "train", "--top", "8",
                     "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    rows = [line.split(",") for line in
            (tiny_run / "audit-train" / "suspects.csv").read_text().splitlines()[1:]]
    assert f"{len(rows)} images of the train split disagree" in result.stdout
    assert rows and all(r[1] != r[3] for r in rows)
    probabilities = [float(r[5]) for r in rows]
    assert probabilities == sorted(probabilities, reverse=True)
    assert Image.open(tiny_run / "audit-train" / "suspects.png").size[0] > 100


def test_table_command_writes_three_formats(tiny_run, tmp_path):
    result = run_main("table", str(tiny_run.parent), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "| basic_cnn | custom" in result.stdout  # 2 epochs on a subset is not the recipe
    assert {p.name for p in tmp_path.iterdir()} == {"table.md", "table.csv", "table.html"}
    assert "https://" not in (tmp_path / "table.html").read_text()
    assert_one_line_error(run_main("table", str(tmp_path / "empty-nothing")), "no such folder", status=1)


def test_smoothing_is_a_bias_corrected_moving_average():
    # beta 0.5: averages 0.5, 1.25, 2.125 divided by 1 - 0.5^k.
    assert smooth([1.0, 2.0, 3.0], beta=0.5) == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    assert smooth([5.0] * 4) == pytest.approx([5.0] * 4)  # a constant stays itself from the start


def test_lr_finder_sweeps_then_restores_the_model(data, tmp_path):
    trainer = Trainer(small_config("batch_size=50"), data, tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    schedule = trainer.schedule
    result = lr_range_test(trainer, 1e-5, 10.0, 60)
    assert result.lrs[0] == pytest.approx(1e-5)
    ratios = np.diff(np.log(result.lrs))
    assert np.allclose(ratios, ratios[0])  # exponential sweep
    assert result.diverged and len(result.lrs) < 60  # an LR of 10 blows BasicCNN up
    assert result.lrs[0] < result.suggestion < result.lrs[-1]
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert trainer.schedule is schedule and not trainer.optimizer.state


def test_lr_find_command(data_dir, tmp_path):
    result = run_cli("lr-find", "basic_cnn", "--steps", "30", "--batch-size", "32", "--out",
                     str(tmp_path), "--set", "data.train_subset=1000", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "suggested max LR:" in result.stdout
    assert Image.open(tmp_path / "lr_find-basic_cnn.png").size[0] > 100
    assert len((tmp_path / "lr_find-basic_cnn.csv").read_text().splitlines()) > 20
    assert_one_line_error(run_main("lr-find", "basic_cnn", "--start", "1", "--end", "0.1"),
                          "need --start < --end", status=2)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "headless Chromium not installed (Debian package chromium)"
        if os.environ.get("FASHIONBENCH_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_report_renders_its_figures_in_a_browser(tiny_run, tmp_path):
    """A phone-width screenshot of report.html shows the confusion matrix's blues and
    the bar chart's orange: the embedded figures were decoded and laid out."""
    shot = tmp_path / "shot.png"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=412,5000",
                    f"--screenshot={shot}", (tiny_run / "report" / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    dark_blue = (b > 90) & (r < 60) & (g < 110)  # the confusion matrix's diagonal
    orange = (r > 220) & (g > 100) & (g < 160) & (b < 60)  # the recall bars
    assert dark_blue.sum() > 500 and orange.sum() > 100
    rows_with_ink = np.flatnonzero((pixels.sum(2) < 600).any(1))
    assert rows_with_ink.max() > 2500  # the page goes on down to the training curves
