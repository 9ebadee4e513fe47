import json

import pytest

from fashionbench.config import dump_config, load_config, parse_override
from fashionbench.models import MODELS

from conftest import run_cli, run_main


def assert_one_line_error(result, *fragments, status=2):
    """One line on stderr, no traceback; exit status 2 for a usage error, 1 for others."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("args, fragments, status", [
    (["train", "resnet9000"], ["unknown model 'resnet9000'", "basic_cnn"], 2),
    (["train"], ["name a MODEL", "basic_cnn"], 2),
    (["train", "basic_cnn", "--set", "optim.lrr=1"], ["unknown config key 'optim.lrr'", "optim.lr"], 2),
    (["train", "basic_cnn", "--set", "schedule.mode=sawtooth"],
     ["schedule.mode must be one of triangular, triangular2, exp_range"], 2),
    (["train", "basic_cnn", "--epochs", "-1"], ["argument --epochs: must be at least 1, got -1",
                                                 "see fashionbench train --help"], 2),
    (["train", "basic_cnn", "--set", "epochs=0"], ["epochs must be in [1, 100000], got 0"], 2),
    (["reproduce", "--seeds", "0,x"], ["argument --seeds: expected comma-separated int values"], 2),
    (["reproduce", "--models", "basic_cnn,resnet9000"], ["unknown model 'resnet9000'"], 2),
    (["specialists", "r", "--pairs", "46"], ["argument --pairs: must be between 1 and 45, got 46"], 2),
    (["train", "basic_cnn", "--device", "gpu"], ["argument --device: expected auto, cpu, cuda or cuda:N"], 2),
    (["lr-find", "basic_cnn", "--start", "1", "--end", "0.1"], ["need --start < --end"], 2),
    (["train", "basic_cnn", "--set", "swa.start_epoch=3"], ["set swa.start instead"], 2),
    (["train", "basic_cnn", "--config", "/nonexistent.yaml"], ["/nonexistent.yaml: cannot read"], 1),
    (["train", "basic_cnn", "--set", "data.negative_class=3"],
     ["data.negative_class needs a different data.positive_class"], 2),
    (["one-vs-all", "basic_cnn", "--set", "head=ova"], ["head=ova is the one-network form"], 2),
    (["one-vs-all", "basic_cnn", "--set", "data.positive_class=3"], ["sets data.positive_class"], 2),
    (["train", "basic_cnn", "--one-vs-all"], ["unrecognized arguments: --one-vs-all"], 2),
    (["train", "basic_cnn", "--batch-size", "60000", "--dry-run"], ["larger than the training set"], 2),
    (["specialists", "/nonexistent-run"], ["not a run folder"], 1),
    (["train", "--resume", "/nonexistent-run"], ["not a run folder"], 1),
    (["evaluate", "/nonexistent-run"], ["not a run folder"], 1),
])
def test_user_mistakes_give_one_line_errors(args, fragments, status, tmp_path):
    """In this process (main() as the command line calls it), to spare an interpreter
    start-up each; the test below runs one mistake through the installed entry point."""
    assert_one_line_error(run_main(*args), *fragments, status=status)


def test_argparse_errors_are_short_too():
    """Through a real interpreter: what a user's shell shows, exit status included."""
    result = run_cli("train", "basic_cnn", "--epochs", "x")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == ("fashionbench train: error: argument --epochs: expected a whole number, "
                             "got 'x' (see fashionbench train --help)\n")


def test_help_lists_commands_and_options():
    top = run_main("--help")
    assert top.returncode == 0
    for command in ("train", "one-vs-all", "evaluate", "reproduce", "report", "lr-find", "table", "audit",
                    "models", "ensemble", "specialists", "predict", "export", "data"):
        assert command in top.stdout
    train = run_main("train", "--help")
    for option in ("--epochs", "--batch-size", "--lr", "--seed", "--device", "--data-dir", "--out",
                   "--name", "--train-subset", "--config", "--set", "--resume"):
        assert option in train.stdout


def test_models_command_lists_every_architecture_with_its_cost():
    from fashionbench.models import MODELS, build_model, count_parameters

    result = run_main("models")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(lines) == set(MODELS)
    for name, line in lines.items():
        assert f"{count_parameters(build_model(name)):,}" in line and "(N, 10)" in line
    assert "52.3" in lines["basic_cnn"]  # MFLOPs: 2 x 26.1M multiply-adds
    assert "He et al. 2016" in lines["resnet18"]


def test_data_command_prints_location_and_sums(data_dir):
    result = run_main("data", "--data-dir", str(data_dir))
    assert result.returncode == 0 and str(data_dir) in result.stdout
    assert "8d4fb7e6c68d591d4c3dfef9ec88bf0d  train-images-idx3-ubyte.gz" in result.stdout


def test_train_then_evaluate_then_refuse_to_overwrite(data_dir, tmp_path):
    args = ["train", "basic_cnn", "--out", str(tmp_path), "--name", "r", "--data-dir", str(data_dir),
            "--epochs", "1", "--train-subset", "1000", "--set", "data.val_size=500",
            "--set", "data.test_subset=1000", "--set", "schedule.cycle_epochs=1", "--set", "swa.start=1"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert f"results: {tmp_path}/r/summary.json" in result.stdout
    assert "epoch   1/1  lr" in result.stdout and "\r" not in result.stderr  # plain lines off a tty
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    evaluated = run_main("evaluate", str(tmp_path / "r"), "--split", "test", "--data-dir", str(data_dir))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["weights"] == "swa" and report["split"] == "test"
    assert report["acc"] == pytest.approx(summary["test_acc"], abs=1e-6)
    assert_one_line_error(run_main(*args), "already exists", status=1)
    assert_one_line_error(run_main("train", "--resume", str(tmp_path / "r"), "--data-dir", str(data_dir)),
                          "already complete", status=1)
    assert_one_line_error(run_main("train", "--resume", str(tmp_path / "r"), "--epochs", "3"),
                          "drop the other training options")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    result = run_main("train", "basic_cnn", "--out", str(tmp_path / "runs"), "--name", "x", "--dry-run",
                     env={"FASHIONBENCH_DATA_DIR": str(tmp_path / "no-data")})  # needs no dataset
    assert result.returncode == 0, result.stderr
    for line in ("basic_cnn, 732,114 parameters", "55,000 training / 5,000 validation / 10,000 test",
                 "30 x 429 steps of 128", "ends of epochs 20, 21, ..., 30 (11 snapshots)",
                 f"run folder: {tmp_path}/runs/x", "nothing written"):
        assert line in result.stdout
    reproduce = run_main("reproduce", "--models", "mini_vgg", "--seeds", "0,1", "--out", str(tmp_path / "r"),
                        "--dry-run")
    assert reproduce.returncode == 0, reproduce.stderr
    assert "[2/2] mini_vgg seed 1: would train in" in reproduce.stdout
    assert "ends of epochs 40, 42, ..., 60 (11 snapshots)" in reproduce.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_recipe_plans_any_number_of_epochs(model):
    from fashionbench.plan import training_plan

    for epochs in (1, 2, 3, 5):
        cfg = load_config(model, overrides=[parse_override(f"epochs={epochs}")])
        swa = next(line for line in training_plan(cfg) if line.startswith("SWA:"))
        if not cfg.swa.enabled:
            assert swa.split() == ["SWA:", "off"]
            continue
        assert "snapshot" in swa and (epochs > 1 or "training without SWA" in swa or "end of epoch 1" in swa)


def test_a_run_too_short_to_average_warns_once_and_trains_without_swa(data_dir, tmp_path):
    result = run_cli("train", "mini_vgg", "--out", str(tmp_path), "--name", "m", "--data-dir", str(data_dir),
                     "--epochs", "1", "--train-subset", "500", "--set", "data.val_size=500",
                     "--set", "data.test_subset=500")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == ["fashionbench: warning: SWA cannot average in 1 epoch: no snapshot point from epoch 1 "
                        "(swa.start 0.67) to epoch 1; snapshots fall at cycle ends, every 2 epochs; "
                        "training without SWA"]
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["weights"] == "last" and summary["swa_snapshots"] == 0 and "swa" not in summary["results"]
    assert "start_epoch: 1" in (tmp_path / "m" / "config.yaml").read_text()


def test_a_runs_config_repeats_it_without_naming_the_model(tiny_run, tmp_path):
    result = run_main("train", "--config", str(tiny_run / "config.yaml"), "--out", str(tmp_path), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "model:      basic_cnn" in result.stdout and "2,000 training / 1,000 validation" in result.stdout


def test_resume_takes_a_folder_of_its_own_command_only(tmp_path):
    """A one-vs-all folder (class-0/ made before anything else) resumes with one-vs-all,
    however early it stopped; a single run's with train; each refuses the other's."""
    config = dump_config(load_config("basic_cnn"))
    single, ova = tmp_path / "single", tmp_path / "ova"
    for folder in (single, ova):
        folder.mkdir()
        (folder / "config.yaml").write_text(config)
    (ova / "class-0").mkdir()
    for command, folder, other in (("train", single, "one-vs-all"), ("one-vs-all", ova, "train")):
        assert run_main(command, "--resume", str(folder), "--dry-run").returncode == 0
        refused = run_main(other, "--resume", str(folder), "--dry-run")
        assert refused.returncode == 2
        assert f"resume it with fashionbench {command} --resume {folder}" in refused.stderr
