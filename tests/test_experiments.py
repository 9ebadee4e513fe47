"""experiments/one_vs_all.py: the budgets it gives each row and the compute it
charges each result, on hand-made run folders (its training is the CLI's, tested
elsewhere)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fashionbench.config import load_config, parse_override

SCRIPT = Path(__file__).parents[1] / "experiments" / "one_vs_all.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("one_vs_all_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(path: Path, epochs: int, train_size: int, seconds: float = 1.0, **extra) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").write_text(json.dumps(
        {"epochs": epochs, "train_size": train_size, "train_seconds": seconds, **extra}))
    return path


def test_budgets_end_on_a_cycle_end_and_average_the_last_third(script):
    assert [script.whole_cycles(x) for x in (0.4, 6.4, 12, 40.9)] == [2, 6, 12, 40]
    # The same cycle shape at every length, averaged at its cycle ends.
    assert script.budget(30) == ["epochs=30", "schedule.mode=triangular", "swa.lr=null"]
    assert script.config(*script.budget(30)).schedule.mode == "triangular"
    # The recipe's fractional swa.start puts averaging where the published runs had it.
    for epochs, start_epoch in ((30, 20), (4, 3), (12, 8), (40, 27), (6, 4)):
        overrides = [parse_override(f"epochs={epochs}"), parse_override("swa.lr=null")]
        assert load_config("basic_cnn", overrides=overrides).swa.start_epoch == start_epoch


def test_compute_of_each_kind_of_result(script, tmp_path):
    single = fake_run(tmp_path / "single", 4, 10_000)
    other = [fake_run(tmp_path / f"s{k}", 4, 10_000) for k in (1, 2)]
    ensemble = fake_run(tmp_path / "ensemble", 4, 10_000, runs=[str(single)] + [str(o) for o in other])
    members = [fake_run(tmp_path / "ova" / f"class-{c}", 4, 10_000) for c in range(10)]
    ova = fake_run(tmp_path / "ova", 4, 10_000, runs=[str(m) for m in members])
    pairs = [fake_run(tmp_path / f"pair-{i}", 4, 2_000) for i in range(3)]
    specialists = fake_run(tmp_path / "spec", 4, 10_000, runs=[str(single)] + [str(p) for p in pairs])

    assert script.images(single) == 40_000
    assert script.images(ensemble) == 3 * 40_000
    assert script.images(ova) == 10 * 40_000  # the members, not the combined folder again
    assert script.images(specialists) == 40_000 + 3 * 8_000
    assert len(script.networks(specialists)) == 4


KERAS_SCRIPT = Path(__file__).parents[1] / "experiments" / "keras_defaults.py"


@pytest.fixture
def keras_defaults(monkeypatch):
    from fashionbench.models import REGISTRY

    spec = importlib.util.spec_from_file_location("keras_defaults_experiment", KERAS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("basic_cnn", "mini_vgg"):  # with_keras_init replaces them: restored after the test
        monkeypatch.setitem(REGISTRY, name, REGISTRY[name])
    return module


def test_keras_initialisation_is_glorot_uniform_with_zero_biases(keras_defaults):
    import math

    import torch
    from torch import nn

    from fashionbench.models import build_model

    keras_defaults.with_keras_init("mini_vgg")
    torch.manual_seed(0)
    model = build_model("mini_vgg")
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 build_model("mini_vgg").state_dict().values()))  # seeded
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 7
    for layer in layers:
        fan_out, fan_in = layer.weight.shape[0], layer.weight[0].numel()
        receptive = layer.weight[0, 0].numel()
        limit = math.sqrt(6 / (fan_in + fan_out * receptive))
        w = layer.weight.detach()
        assert w.abs().max() <= limit and w.abs().max() > 0.9 * limit  # uniform on [-limit, limit]
        assert not layer.bias.any()
    keras_defaults.with_keras_init("basic_cnn")
    norms = [m for m in build_model("basic_cnn").modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    # The reference's BatchNormalization(momentum=0.1, gamma_initializer='uniform') on the
    # convolutions; Keras' defaults on the dense layer's.
    assert [(m.momentum, m.eps) for m in norms] == [(0.9, 1e-5)] * 4 + [(0.01, 1e-3)]
    assert all(m.weight.abs().max() <= 0.05 for m in norms[:4]) and torch.equal(norms[4].weight, torch.ones(200))


ABLATION_SCRIPT = Path(__file__).parents[1] / "experiments" / "ablation.py"


def run_ablation(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ABLATION_SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, "FASHIONBENCH_DATA_DIR": str(data_dir)}, timeout=600)


def test_the_ablation_trains_each_variant_for_each_seed_on_validation_and_pairs_it_with_the_base(data_dir, tmp_path):
    """A tiny ablation (its figures mean nothing): every variant and seed an ordinary run
    that never saw the test set, the table paired by seed, a rerun trains nothing."""
    out = tmp_path / "ablation"
    args = ["--recipe", str(Path(__file__).parents[1] / "recipes" / "speedrun_net.yaml"), "--set", "epochs=1",
            "--set", "data.val_size=500", "--variant", "ema=ema.enabled=true,ema.every=1", "--seeds", "0,1",
            "--train-subset", "500", "--out", str(out)]
    done = run_ablation(*args, data_dir=data_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    summaries = {d.name: json.loads((d / "summary.json").read_text()) for d in (out / "runs").iterdir()}
    assert sorted(summaries) == ["base-s0", "base-s1", "ema-s0", "ema-s1"]
    assert all(s["test_acc"] is None and s["train_size"] == 500 for s in summaries.values())
    assert summaries["ema-s0"]["weights"] == "ema" and summaries["base-s0"]["weights"] == "last"
    record = json.loads((out / "ablation.json").read_text())
    assert record["variants"] == {"base": [], "ema": ["ema.enabled=true", "ema.every=1"]} and record["cpu"]
    ema = record["figures"]["ema"]
    assert ema["1"]["val_acc"] == pytest.approx(100 * summaries["ema-s1"]["val_acc"])
    row = next(line for line in (out / "ablation.md").read_text().splitlines() if line.startswith("| ema |"))
    deltas = [ema[s]["val_acc"] - record["figures"]["base"][s]["val_acc"] for s in ("0", "1")]
    assert f"| {sum(deltas) / 2:.2f} ± " in row and "(2 paired)" in row, row
    written = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    again = run_ablation(*args, data_dir=data_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()} == written  # nothing trained


def test_an_ablation_variant_written_wrong_is_one_line_and_nothing_trains(data_dir, tmp_path):
    recipe = str(Path(__file__).parents[1] / "recipes" / "speedrun_net.yaml")
    done = run_ablation("--recipe", recipe, "--variant", "base=epochs=2", "--out",
                        str(tmp_path / "a"), data_dir=data_dir)
    assert done.returncode == 2 and done.stderr.startswith("error: --variant expects NAME=key=value")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    done = run_ablation("--recipe", recipe, "--variant", "x=ema.decay=2", "--out",
                        str(tmp_path / "a"), data_dir=data_dir)
    assert done.returncode == 2 and "ema.decay must be in (0, 0.9999], got 2" in done.stderr, done.stderr
