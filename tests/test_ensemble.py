"""Ensembles, one-vs-all and specialists: the combination rules by hand, an
ensemble of one run is that run, balanced sampling, calibration, and each kind
end to end on small slices."""

import importlib
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from scipy.special import expit

from fashionbench.cli import main
from fashionbench.combine import combine, fit_weights, vote
from fashionbench.inference import load_run, predict
from fashionbench.rundir import RunDir, finished
from fashionbench.tasks.one_vs_all import platt_scale
from fashionbench.tasks.specialists import apply, choose_threshold, confused_pairs, takes_over
from fashionbench.training import epoch_order

from conftest import run_cli, run_main, wait_until
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
    assert summary["runs"] == [str(tiny_run)] and summary["kind"] == "ensemble"
    assert summary["weights"] == "ensemble" and summary["member_weights"] is None
    assert summary["results"]["ensemble"]["test"]["loss"] == pytest.approx(
        single["results"]["swa"]["test"]["loss"], abs=1e-4)
    assert (tmp_path / "one" / "report" / "report.html").exists()
    # Its members' probabilities are combined as the networks give them, and the combination
    # is temperature-scaled: one run's combination finds the run's own temperature.
    assert summary["temperature_scaling"]["temperature"] == pytest.approx(
        single["temperature_scaling"]["temperature"], rel=1e-2)
    assert summary["temperature_scaling"]["before"]["test"]["ece"] == pytest.approx(
        single["temperature_scaling"]["before"]["test"]["ece"], abs=1e-4)
    assert (tmp_path / "one" / "report" / "reliability.png").exists()
    table = run_main("table", str(tmp_path / "one"), str(tiny_run), "--out", str(tmp_path / "t"))
    assert table.returncode == 0 and "| ensemble mean: basic_cnn x1 | - |" in table.stdout


def test_ensemble_mistakes_give_one_line_errors(tiny_run, tmp_path):
    assert_one_line_error(run_main("ensemble", str(tmp_path / "nope")), "not a run folder", status=1)
    bad = run_main("ensemble", str(tiny_run), "--method", "median")
    assert bad.returncode == 2 and "invalid choice: 'median'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_balanced_epochs_are_half_positives():
    labels = (torch.arange(5000) % 10 == 3).long()  # a tenth positive, like one class
    order = epoch_order(labels, 4800, torch.Generator().manual_seed(0), balanced=True)
    assert len(order) == 4800
    batches = labels[order].view(-1, 100).float().mean(1)
    assert labels[order].sum() == 2400  # exactly half over the epoch
    assert ((batches > 0.35) & (batches < 0.65)).all()  # and about half in every batch
    negatives = order[labels[order] == 0]
    assert len(negatives.unique()) == len(negatives)  # negatives drawn without replacement
    few = epoch_order(labels[:60], 100, torch.Generator().manual_seed(0), balanced=True)
    assert len(few) == 100 and labels[few].sum() == 50  # too few of both: drawn with replacement


def test_platt_scaling_lowers_nll_of_an_overconfident_score():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=4000)  # true log-odds
    positive = rng.random(4000) < 1 / (1 + np.exp(-truth))
    margins = 4 * truth  # four times too confident

    def nll(p):
        return -np.mean(np.where(positive, np.log(p), np.log(1 - p)))

    a, b = platt_scale(margins, positive)
    assert nll(expit(a * margins + b)) < nll(expit(margins)) - 0.1
    assert a == pytest.approx(0.25, abs=0.05)


def test_one_vs_all_head_trains(data_dir, tmp_path):
    result = run_cli("train", "basic_cnn", "--head", "ova", "--out", str(tmp_path), "--name", "h",
                     "--epochs", "1", "--train-subset", "2000", "--set", "data.val_size=1000",
                     "--set", "data.test_subset=1000", "--set", "schedule.cycle_epochs=1", "--set", "swa.start=1",
                     "--report",
                     "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "h" / "summary.json").read_text())
    assert summary["variant"] == "one-vs-all head" and summary["val_acc"] > 0.6
    scaling = summary["temperature_scaling"]  # T divides the logits before the sigmoids
    assert scaling["temperature"] != 1.0 and scaling["after"]["val"]["nll"] < scaling["before"]["val"]["nll"]
    assert (tmp_path / "h" / "report" / "report.html").exists()


# Small evaluation slices: every member evaluates both splits, most of a run's time.
ONE_VS_ALL = ["one-vs-all", "basic_cnn", "--epochs", "1", "--batch-size", "50",
              "--train-subset", "500", "--set", "data.val_size=200", "--set", "data.test_subset=200",
              "--set", "schedule.cycle_epochs=1", "--set", "swa.start=1"]


@pytest.fixture(scope="module")
def ova_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ova")
    result = run_cli(*ONE_VS_ALL, "--out", str(out), "--name", "ova", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    return out / "ova", result.stdout


def test_one_vs_all_trains_ten_members_and_resumes_member_by_member(ova_run, data_dir, tmp_path):
    run, _ = ova_run
    summary = json.loads((run / "summary.json").read_text())
    assert sorted(p.name for p in run.glob("class-*")) == [f"class-{c}" for c in range(10)]
    member = json.loads((run / "class-3" / "summary.json").read_text())
    assert member["variant"] == "binary: Dress against the rest" and member["test_size"] == 200
    assert summary["weights"] == "ova" and summary["test_size"] == 200 and summary["test_acc"] > 0.3
    assert summary["kind"] == "one-vs-all" and summary["schema"] == 2
    assert "one_vs_all" not in (run / "config.yaml").read_text()  # the command, not a config key
    assert len(summary["calibration"]) == 10 and (run / "report" / "report.html").exists()
    assert summary["temperature_scaling"]["fitted_on"] == "val" and (run / "report" / "reliability.png").exists()
    assert summary["runs"] == [str(run / f"class-{c}") for c in range(10)]
    # The same run killed with SIGKILL just after its fourth member (class 3) saved its
    # checkpoint, before that member finished, then resumed.
    proc = subprocess.Popen([sys.executable, "-m", "fashionbench", *ONE_VS_ALL, "--out", str(tmp_path),
                             "--name", "killed", "--data-dir", str(data_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = tmp_path / "killed"
    wait_until((killed / "class-3" / "checkpoint.pt").exists, proc, "class 3's checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "class-2" / "summary.json").exists()
    assert not (killed / "class-3" / "summary.json").exists() and not (killed / "summary.json").exists()
    wrong = run_main("train", "--resume", str(killed), "--data-dir", str(data_dir))
    assert wrong.returncode == 2 and f"resume it with fashionbench one-vs-all --resume {killed}" in wrong.stderr
    resumed = run_cli("one-vs-all", "--resume", str(killed), "--data-dir", str(data_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert "[1/10] T-shirt/top against the rest: already complete" in resumed.stdout
    assert "[4/10] Dress against the rest: resuming" in resumed.stdout
    assert "[5/10] Coat against the rest: training" in resumed.stdout
    again = json.loads((killed / "summary.json").read_text())
    assert again["results"] == summary["results"] and again["calibration"] == summary["calibration"]


def test_one_vs_all_says_each_stage_as_it_starts_without_a_terminal(ova_run):
    """With its output to a pipe, no stage of a one-vs-all run is silent: each member
    says what it does after its epoch lines (the final evaluation) before doing it,
    then the calibration and the report say so too; plain lines, no carriage returns."""
    _, stdout = ova_run
    assert "\r" not in stdout
    lines = stdout.splitlines()
    starts = [next(i for i, line in enumerate(lines) if line.startswith(f"[{c + 1}/10] ")) for c in range(10)]
    for c, (start, end) in enumerate(zip(starts, starts[1:] + [len(lines)])):
        member = lines[start:end]
        last_epoch = max(i for i, line in enumerate(member) if line.startswith("epoch "))
        assert any(line.startswith("final evaluation: last, swa models on val, test")
                   for line in member[last_epoch + 1:]), (c, member)
    tail = lines[starts[-1]:]
    stages = ["final evaluation: ", "one-vs-all: each network's predictions on val and test",
              "writing the report in ", " ova model: "]
    at = [next(i for i, line in enumerate(tail) if line.startswith(stage)) for stage in stages]
    assert at == sorted(at), tail


def test_one_vs_all_combines_its_networks_predicting_each_split_once(ova_run, data, tmp_path, monkeypatch):
    """The combination after the ten members: each network predicts val and test once
    (its validation margins are calibrated and combined as they are, not predicted
    again), on one copy of the splits, and gives the run's results."""
    from fashionbench.models.one_vs_all import OneVsAllNetwork

    inference, one_vs_all = (importlib.import_module(f"fashionbench.{m}") for m in ("inference", "tasks.one_vs_all"))
    run, _ = ova_run
    copy = tmp_path / "ova"  # the finished members, as if stopped before their combination
    for c in range(10):
        shutil.copytree(run / f"class-{c}", copy / f"class-{c}")
    shutil.copy(run / "config.yaml", copy / "config.yaml")
    predicted, split_copies = [], []

    def counted(name, record):
        original = getattr(inference, name)

        def wrapper(*args, **kwargs):
            record(*args)
            return original(*args, **kwargs)
        for where in (inference, one_vs_all):
            monkeypatch.setattr(where, name, wrapper, raising=False)

    # network-images: a call on the ten networks as one model counts ten times
    counted("predict", lambda model, images, *_: predicted.append(
        len(images) * (len(model.members) if isinstance(model, OneVsAllNetwork) else 1)))
    counted("prepare_splits", lambda *_: split_copies.append(1))
    summary = one_vs_all.train_one_vs_all(RunDir(run).config, data, copy)
    expected = json.loads((run / "summary.json").read_text())
    assert summary.results == expected["results"] and summary.extra["calibration"] == expected["calibration"]
    assert sum(predicted) == 10 * (expected["val_size"] + expected["test_size"]), predicted
    assert len(split_copies) == 1


def test_a_weighted_flip_ensemble_says_each_stage_as_it_starts(tiny_run, data_dir, tmp_path):
    """``ensemble --method weighted --tta flip`` with its output to a pipe: a line as each
    member's predictions start, then the weight fitting and the report, no carriage returns."""
    result = run_cli("ensemble", str(tiny_run), "--method", "weighted", "--tta", "flip",
                     "--out", str(tmp_path), "--name", "e", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    stages = [f"ensemble: member 1/1 ({tiny_run}): predictions on val and test, and on their mirror images",
              "ensemble: fitting the members' weights on val", "writing the report in ",
              "ensemble weighted +flip: "]
    at = [next((i for i, line in enumerate(lines) if line.startswith(stage)), None) for stage in stages]
    assert None not in at and at == sorted(at), result.stdout


def test_a_finished_one_vs_all_run_is_a_run_like_any_other(ova_run, data, tmp_path, capsys):
    run, stdout = ova_run
    summary = json.loads((run / "summary.json").read_text())
    printed = re.findall(r"\S+\.(?:pt|json|jsonl|html)\b", stdout)
    assert f"{run}/model.pt" in printed and all(Path(p).exists() for p in printed), printed
    data_dir = ["--data-dir", str(data.root)]

    def cli(*args):
        capsys.readouterr()
        assert main([*args]) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    evaluated = json.loads(cli("evaluate", str(run), "--split", "test", *data_dir))
    assert evaluated["acc"] == pytest.approx(summary["test_acc"], abs=1e-6)
    assert evaluated["weights"] == "ova"
    cli("report", str(run), "--split", "val", *data_dir)
    assert (run / "report-val" / "report.html").exists()
    cli("audit", str(run), "--split", "val", "--top", "4", *data_dir)
    assert (run / "audit-val" / "suspects.csv").exists()
    cli("ensemble", str(run), "--out", str(tmp_path), "--name", "e", *data_dir)
    ensemble = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert ensemble["test_acc"] == pytest.approx(summary["test_acc"], abs=1e-6)
    table = cli("table", str(run.parent), "--out", str(tmp_path / "table"))
    assert "one-vs-all, 10 binary" in table and "binary: " not in table
    # The model file serves it: the first test images, as PNG files and through ONNX.
    loaded = load_run(finished(run), data)
    probs = loaded.probs("test")[:3]
    for i in range(3):
        Image.fromarray(loaded.splits["test"].images[i, 0].cpu().numpy()).save(tmp_path / f"{i}.png")
    lines = cli("predict", str(run), *(str(tmp_path / f"{i}.png") for i in range(3)), "--json").splitlines()
    for i, line in enumerate(lines):
        top = json.loads(line)["top_k"][0]
        assert top["probability"] == pytest.approx(probs[i].max().item(), abs=1e-5)
    cli("export", str(run), "--out", str(tmp_path / "ova.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "ova.onnx"))
    pixels = loaded.splits["test"].images[:3].float().cpu().numpy()
    served = session.run(["probabilities"], {"pixels": pixels})[0]
    fp32 = predict(loaded.model, loaded.splits["test"].images[:3], "fp32", False)  # as exported: at its temperature
    fp32 = (fp32 / loaded.temperature).softmax(1)
    assert served == pytest.approx(fp32.numpy(), abs=1e-5)


def test_specialist_takes_over_only_its_pair_below_the_threshold():
    probs = np.full((4, 10), 0.0)
    probs[0, [6, 0]] = [0.50, 0.45]  # top two {shirt, t-shirt}, margin 0.05
    probs[1, [6, 0]] = [0.80, 0.15]  # same pair, margin 0.65
    probs[2, [6, 4]] = [0.50, 0.45]  # another pair
    probs[3, [0, 6]] = [0.47, 0.46]  # the pair in the other order
    probs += (1 - probs.sum(1, keepdims=True)) / 10
    assert takes_over(probs, (0, 6), 0.1).tolist() == [True, False, False, True]
    p_tshirt = np.array([0.9, 0.9, 0.9, 0.1])
    out = apply(probs, (0, 6), p_tshirt, 0.1)
    assert out.argmax(1).tolist() == [0, 6, 6, 6]
    assert out.sum(1) == pytest.approx(np.ones(4))
    labels = np.array([0, 6, 6, 6])
    assert choose_threshold(probs, labels, (0, 6), p_tshirt) == pytest.approx(0.05 + 1e-9)
    assert confused_pairs(np.array([[0, 5, 1], [2, 0, 0], [9, 0, 0]]), 2) == [(0, 2), (0, 1)]


def test_specialists_end_to_end(tiny_run, data_dir, tmp_path):
    result = run_cli("specialists", str(tiny_run), "--pairs", "2", "--epochs", "1", "--out", str(tmp_path),
                     "--name", "s", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert len(summary["specialists"]) == 2 and (tmp_path / "s" / "report" / "report.html").exists()
    assert summary["runs"] == [str(tiny_run)] + [s["run"] for s in summary["specialists"]]
    generalist = json.loads((tiny_run / "summary.json").read_text())
    assert summary["results"]["generalist"]["test"]["acc"] == pytest.approx(generalist["test_acc"], abs=1e-6)
    # thresholds are chosen on validation, where taking over can only help
    assert summary["val_acc"] >= summary["results"]["generalist"]["val"]["acc"]
    scaling = summary["temperature_scaling"]  # the combination's, fitted on validation
    assert scaling["after"]["val"]["nll"] <= scaling["before"]["val"]["nll"]
    assert set(scaling["after"]) == {"val", "test"}
    member = json.loads((Path(summary["specialists"][0]["run"]) / "summary.json").read_text())
    assert member["variant"].startswith("binary: ") and " against the rest" not in member["variant"]
    again = ["specialists", str(tiny_run), "--pairs", "2", "--epochs", "1", "--out", str(tmp_path),
             "--name", "s", "--data-dir", str(data_dir)]
    assert_one_line_error(run_main(*again), f"{tmp_path / 's'} already exists and is complete", status=1)
    (tmp_path / "s" / "summary.json").unlink()  # as if stopped after its specialists finished
    resumed = run_main(*again)
    assert resumed.returncode == 0 and resumed.stdout.count("already complete") == 2
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["results"] == summary["results"]
