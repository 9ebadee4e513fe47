import json

import pytest

from conftest import run_cli


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("args, fragments", [
    (["train", "resnet9000"], ["unknown model 'resnet9000'", "basic_cnn"]),
    (["train"], ["name a MODEL", "basic_cnn"]),
    (["train", "basic_cnn", "--set", "optim.lrr=1"], ["unknown config key 'optim.lrr'", "optim.lr"]),
    (["train", "basic_cnn", "--set", "schedule.mode=sawtooth"],
     ["schedule.mode must be one of triangular, triangular2, exp_range"]),
    (["train", "basic_cnn", "--epochs", "-1"], ["epochs must be in [1, inf]"]),
    (["train", "basic_cnn", "--config", "/nonexistent.yaml"], ["/nonexistent.yaml: cannot read"]),
    (["train", "basic_cnn", "--set", "data.negative_class=3"],
     ["data.negative_class needs a different data.positive_class"]),
    (["train", "basic_cnn", "--head", "ova", "--one-vs-all"], ["head=ova is the one-network form"]),
    (["specialists", "/nonexistent-run"], ["not a run folder"]),
    (["train", "--resume", "/nonexistent-run"], ["not a run folder"]),
    (["evaluate", "/nonexistent-run"], ["not a run folder"]),
])
def test_user_mistakes_give_one_line_errors(args, fragments, tmp_path):
    assert_one_line_error(run_cli(*args), *fragments)


def test_argparse_errors_are_short_too():
    result = run_cli("train", "basic_cnn", "--epochs", "x")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "invalid int value" in result.stderr


def test_help_lists_commands_and_options():
    top = run_cli("--help")
    assert top.returncode == 0
    for command in ("train", "evaluate", "reproduce", "report", "lr-find", "table", "audit", "models",
                    "data"):
        assert command in top.stdout
    train = run_cli("train", "--help")
    for option in ("--epochs", "--batch-size", "--lr", "--seed", "--device", "--data-dir", "--out",
                   "--name", "--train-subset", "--config", "--set", "--resume"):
        assert option in train.stdout


def test_models_command_lists_every_architecture_with_its_cost():
    from fashionbench.models import MODELS, build_model, count_parameters

    result = run_cli("models")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(lines) == set(MODELS)
    for name, line in lines.items():
        assert f"{count_parameters(build_model(name)):,}" in line and "(N, 10)" in line
    assert "52.3" in lines["basic_cnn"]  # MFLOPs: 2 x 26.1M multiply-adds
    assert "He et al. 2016" in lines["resnet18"]


def test_data_command_prints_location_and_sums(data_dir):
    result = run_cli("data", "--data-dir", str(data_dir))
    assert result.returncode == 0 and str(data_dir) in result.stdout
    assert "8d4fb7e6c68d591d4c3dfef9ec88bf0d  train-images-idx3-ubyte.gz" in result.stdout


def test_train_then_evaluate_then_refuse_to_overwrite(data_dir, tmp_path):
    args = ["train", "basic_cnn", "--out", str(tmp_path), "--name", "r", "--data-dir", str(data_dir),
            "--epochs", "1", "--train-subset", "1000", "--set", "data.val_size=500",
            "--set", "schedule.cycle_epochs=1", "--set", "swa.start_epoch=1"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert f"results: {tmp_path}/r/summary.json" in result.stdout
    assert "epoch   1/1  lr" in result.stdout and "\r" not in result.stderr  # plain lines off a tty
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    evaluated = run_cli("evaluate", str(tmp_path / "r"), "--split", "test", "--data-dir", str(data_dir))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["weights"] == "swa" and report["split"] == "test"
    assert report["acc"] == pytest.approx(summary["test_acc"], abs=1e-6)
    assert_one_line_error(run_cli(*args), "already exists")
    assert_one_line_error(run_cli("train", "--resume", str(tmp_path / "r"), "--data-dir", str(data_dir)),
                          "already complete")
    assert_one_line_error(run_cli("train", "--resume", str(tmp_path / "r"), "--epochs", "3"),
                          "drop the other training options")
