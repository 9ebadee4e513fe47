"""The reference project's own protocol (recipes/reference/, ``eval.select_on: test``):
off by default and in every other recipe, refused where it would be hidden, and marked
in every output of a run that uses it (summary, console, report, tables, export)."""

from __future__ import annotations

import csv
import io
import json
import statistics
from contextlib import redirect_stdout

import pytest
import torch

from fashionbench import api
from fashionbench.cli import print_results
from fashionbench.config import (
    LEAKY,
    Config,
    ConfigError,
    dump_config,
    load_config,
    override,
    recipes_dir,
    reference_recipe,
)
from fashionbench.models import MODELS
from fashionbench.rundir import read_summary
from fashionbench.schedule import SchedulePlan
from fashionbench.tasks.export import metadata
from fashionbench.tasks.leaderboard import collect, find_runs, recipe_of, to_csv, to_markdown

from conftest import run_main

RECIPES = sorted(recipes_dir().glob("*.yaml"))
REFERENCE = sorted((recipes_dir() / "reference").glob("*.yaml"))


def test_only_the_reference_recipes_select_on_test():
    assert Config().eval.select_on == "val"
    assert {p.stem for p in RECIPES} == set(MODELS)  # every model's own recipe is looked at
    for path in RECIPES:
        assert load_config(config_file=path).eval.select_on == "val", path
    assert {p.stem for p in REFERENCE} == {"basic_cnn", "mini_vgg"}
    for path in REFERENCE:
        cfg = load_config(config_file=path)
        assert reference_recipe(cfg.model) == path
        # What the reference's saved code did (the recipe's comment cites where).
        assert (cfg.eval.select_on, cfg.epochs, cfg.batch_size, cfg.optim.name, cfg.optim.lr) == \
            ("test", 30, 32, "sgd", 0.01)
        assert not cfg.optim.nesterov and cfg.optim.weight_decay == 0 and cfg.label_smoothing == 0
        assert not cfg.swa.enabled and not cfg.eval.tta
        assert (cfg.augment.flip, cfg.augment.zoom, cfg.augment.translate, cfg.augment.erase) == (0, 0, 0, 0)
        assert cfg.schedule.name == "inverse_time" and cfg.schedule.decay == pytest.approx(0.01 / 30)
    assert reference_recipe("resnet18") is None


def test_select_on_test_is_refused_where_it_would_be_hidden():
    basic = reference_recipe("basic_cnn")
    # A sweep's trials evaluate validation only (eval.test false): no test figure to select on.
    with pytest.raises(ConfigError, match="needs eval.test true"):
        load_config(config_file=basic, overrides=[override("eval.test", False)])
    # An averaged model is not an epoch's: the mode reports one epoch's weights.
    with pytest.raises(ConfigError, match="set swa.enabled false"):
        load_config("basic_cnn", overrides=[override("eval.select_on", "test")])
    with pytest.raises(ConfigError, match="eval.select_on must be one of val, test, got 'train'"):
        load_config(config_file=basic, overrides=[override("eval.select_on", "train")])


def test_inverse_time_decay_is_keras_legacy_decay():
    """Keras' SGD(lr, decay): the t-th update (t from 0) uses lr / (1 + decay * t)."""
    cfg = load_config(config_file=reference_recipe("basic_cnn"), overrides=[override("epochs", 2)])
    lrs = SchedulePlan(cfg, 50).learning_rates()
    assert len(lrs) == 100
    assert lrs == pytest.approx([0.01 / (1 + cfg.schedule.decay * t) for t in range(100)], rel=1e-12)


def test_tables_name_the_reference_recipe(tmp_path):
    """A table's recipe column: the model's own recipe, the reference protocol, or custom."""
    configs = {"own": load_config("basic_cnn"),
               "own, fp32 set": load_config("basic_cnn", overrides=[override("precision", "fp32")]),
               "reference": load_config(config_file=reference_recipe("mini_vgg"), overrides=[override("seed", 2)]),
               "changed": load_config(config_file=reference_recipe("mini_vgg"), overrides=[override("epochs", 3)])}
    for name, cfg in configs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(dump_config(cfg))
    assert recipe_of(tmp_path / "own") == "recipe"
    assert recipe_of(tmp_path / "own, fp32 set") == "recipe"  # precision is the machine's: in "trained on"
    assert recipe_of(tmp_path / "reference") == "reference protocol"
    assert recipe_of(tmp_path / "changed").startswith("custom ")


def test_dry_run_says_so():
    result = run_main("train", "--config", str(reference_recipe("mini_vgg")), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "inverse_time, 0.01 / (1 + 0.000333333 x step)" in result.stdout
    assert f"selection:  {LEAKY.upper()}" in result.stdout


@pytest.fixture(scope="module")
def leaky_runs(data, tmp_path_factory):
    """A short run of the reference protocol, the same run stopped after its second epoch
    and resumed, and an honest run beside them."""
    out = tmp_path_factory.mktemp("reference")
    # A high LR on few images gives a test accuracy that goes up and down; the tests need a
    # run whose best epoch is not its last. Where that happens depends on the CPU's
    # arithmetic (fp32 convolutions differ between instruction sets), so the first seed
    # that gives one is used, and the same seed for the stopped-and-resumed run.
    small = {"epochs": 5, "optim.lr": 0.5, "data.train_subset": 640, "data.val_size": 500,
             "data.test_subset": 500, "precision": "fp32"}
    seen = {}
    for seed in range(4):
        small["seed"] = seed
        whole = api.train(config_file=reference_recipe("basic_cnn"), overrides=small, out=out,
                          name=f"leaky-s{seed}", data=data)
        seen[seed] = tests = [row["test_acc"] for row in whole.history]
        if tests.index(max(tests)) < len(tests) - 1:
            break
    else:
        pytest.fail(f"no seed gave a run that peaks before its last epoch (test accuracy by seed: {seen})")

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train_stopping(out, small, data, stop_after_two)
    resumed = api.resume(out / "stopped", data=data)
    honest = api.train("basic_cnn", overrides={**small, "optim.lr": 3e-3, "swa.enabled": False, "epochs": 1}, out=out,
                       name="honest", data=data)
    return whole, resumed, honest


def _train_stopping(out, small, data, on_epoch):
    """The reference run, stopped by ``on_epoch`` (a KeyboardInterrupt after its checkpoint)."""
    from fashionbench.training import train_or_resume

    cfg = load_config(config_file=reference_recipe("basic_cnn"),
                      overrides=[override(k, v) for k, v in small.items()])
    train_or_resume(cfg, data, out / "stopped", on_epoch=on_epoch)


def test_the_best_epoch_on_test_is_reported_and_marked(leaky_runs, data):
    run, _, _ = leaky_runs
    s = run.summary
    tests = [row["test_acc"] for row in run.history]  # the test split after every epoch
    assert len(tests) == 5 and all("val_acc" in row for row in run.history)
    best = tests.index(max(tests)) + 1  # the first of equals: a later epoch must do strictly better
    assert best < 5, f"the fixture's run should peak before its last epoch (test accuracy {tests})"
    assert s.selected_on == "test" and s.leaky and s.weights == "best_on_test"
    assert s.extra["best_epoch"] == best and s.test_acc == max(tests)
    assert s.accuracy("last", "test") == tests[-1]
    assert read_summary(run.path).selected_on == "test"  # written to summary.json
    assert json.loads((run.path / "summary.json").read_text())["selected_on"] == "test"
    # The model written is that epoch's: evaluated again, it gives the figure reported.
    assert api.evaluate(run, split="test", data=data)["acc"] == pytest.approx(s.test_acc, abs=1e-9)
    assert LEAKY in repr(run)
    assert metadata(run.config, s, s.weights)["selected_on"] == "test"  # what an exported file says


def test_a_resumed_run_keeps_the_best_epoch(leaky_runs):
    run, resumed, _ = leaky_runs
    assert resumed.summary.extra["best_epoch"] == run.summary.extra["best_epoch"]
    assert resumed.summary.results == run.summary.results
    a, b = (torch.load(r.path / "model.pt", weights_only=True)["state_dict"] for r in (run, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_report_and_tables_say_selected_on_test(leaky_runs, data):
    run, _, honest = leaky_runs
    report = api.report(run, data=data)
    page = report.read_text()
    assert f"({LEAKY.upper()})" in page and f"{LEAKY.upper()}: the best of 5 epochs" in page
    headline = json.loads((report.parent / "report.json").read_text())["headline"]
    assert headline["selection"].startswith(LEAKY.upper())
    assert "selection" not in json.loads((api.report(honest, data=data).parent
                                          / "report.json").read_text())["headline"]
    rows = collect(find_runs([run.path, honest.path]))
    # Never ranked beside honest runs: after them whatever its accuracy, marked, its recipe named.
    assert [r.leaky for r in rows] == [False, True]
    table = to_markdown(rows, "t")
    assert f"basic_cnn [{LEAKY.upper()}]" in table and "not ranked with them" in table
    assert [r["selected_on"] for r in csv.DictReader(io.StringIO(to_csv(rows)))] == ["val", "test"]


def test_train_prints_the_mark(leaky_runs):
    """The console lines of a finished run, as ``fashionbench train`` prints them."""
    run, _, honest = leaky_runs
    for r, marked in ((run, True), (honest, False)):
        out = io.StringIO()
        with redirect_stdout(out):
            print_results(r.summary)
        assert (f"{LEAKY.upper()}: the reported model is epoch {r.summary.extra.get('best_epoch')} of 5"
                in out.getvalue()) == marked


def test_an_ensemble_of_a_leaky_run_is_leaky(leaky_runs, data, tmp_path):
    run, resumed, _ = leaky_runs
    combined = api.ensemble([run, resumed], out=tmp_path, name="both", data=data)
    assert combined.summary.leaky


def test_reproduce_the_reference_protocol(data, tmp_path):
    """``reproduce --protocol reference`` at the smoke budget: two seeds, their table
    marked, and protocol.md, the best epoch beside the last."""
    paths = api.reproduce(["basic_cnn"], [0, 1], "smoke", protocol="reference", out=tmp_path, data=data)
    assert [p.name for p in paths] == ["table.md", "table.csv", "table.html", "protocol.md"]
    assert "--protocol reference" in paths[0].read_text() and f"[{LEAKY.upper()}]" in paths[0].read_text()
    protocol = paths[3].read_text()
    runs = [read_summary(tmp_path / "runs" / f"basic_cnn-s{seed}") for seed in (0, 1)]
    best = [100 * s.test_acc for s in runs]
    gap = [100 * (s.test_acc - s.accuracy("last", "test")) for s in runs]
    header, row = (next(line for line in protocol.splitlines() if line.startswith(start))
                   for start in ("| model", "| basic_cnn"))
    cells = dict(zip(*([c.strip() for c in line.strip("|").split("|")] for line in (header, row)), strict=True))
    assert cells["reference published %"] == "94.21"
    assert cells[f"best epoch on test % ({LEAKY})"] == f"{statistics.fmean(best):.2f} ± {statistics.stdev(best):.2f}"
    assert cells["its range over seeds %"] == f"{min(best):.2f} to {max(best):.2f}"
    assert cells["best epochs"] == ", ".join(str(s.extra["best_epoch"]) for s in runs)
    assert cells["best - last (points)"] == f"{statistics.fmean(gap):.2f} ± {statistics.stdev(gap):.2f}"
    # The same training read honestly: the test accuracy of the epoch with the best
    # validation accuracy (the first of equals), never above the best on test.
    epochs = [[json.loads(line) for line in
               (tmp_path / "runs" / f"basic_cnn-s{seed}" / "metrics.jsonl").read_text().splitlines()]
              for seed in (0, 1)]
    on_val = [100 * next(r["test_acc"] for r in rows if r["val_acc"] == max(x["val_acc"] for x in rows))
              for rows in epochs]
    assert cells["epoch chosen on val: test %"] == f"{statistics.fmean(on_val):.2f} ± {statistics.stdev(on_val):.2f}"
    assert all(v <= b for v, b in zip(on_val, best))
    assert all(g >= 0 for g in gap)  # the best epoch on test is never below the last one on test


def test_reproduce_protocol_mistakes_are_one_line():
    result = run_main("reproduce", "--protocol", "reference", "--models", "resnet18", "--dry-run")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("no reference-protocol recipe for resnet18 (recipes/reference/ has "
                                          "basic_cnn, mini_vgg)")
    assert len(result.stderr.strip().splitlines()) == 1
    planned = run_main("reproduce", "--protocol", "reference", "--seeds", "0", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "basic_cnn seed 0" in planned.stdout and "mini_vgg seed 0" in planned.stdout
    assert "resnet18" not in planned.stdout and f"selection:  {LEAKY.upper()}" in planned.stdout
