"""Experiment tracking (--track): runs logged to a real MLflow tracking server, started
here on a free port, and to TensorBoard event files read back with TensorBoard's own
reader; a sweep's trials nested under its study's run; a resumed run continuing its
MLflow run; the one-line errors before anything trains; a backend failing mid-run.

Where MLflow or TensorBoard cannot run (not installed, a server that does not start),
the tests that need them skip, or fail with FASHIONBENCH_REQUIRE_MLFLOW=1 (CI) and
FASHIONBENCH_REQUIRE_TENSORBOARD=1."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from fashionbench import tracking
from fashionbench.tracking import TensorBoard, TrackedRun, Tracking, epoch_metrics, track

from conftest import run_cli, run_main, stop_group, wait_until

# A run of seconds: two epochs of 500 images, an SWA snapshot, small val and test slices.
TINY = ["basic_cnn", "--device", "cpu", "--epochs", "2", "--train-subset", "500", "--set", "data.val_size=200",
        "--set", "data.test_subset=200", "--set", "batch_size=100", "--set", "swa.start=1",
        "--set", "schedule.cycle_epochs=1", "--set", "precision=fp32"]
# The epoch row's keys and the metric each is logged as.
EPOCH_KEYS = {"train_loss": "train_loss", "train_acc": "train_acc", "val_loss": "val_loss", "val_acc": "val_acc",
              "lr": "lr", "images_per_s": "images_per_s", "epoch_seconds": "seconds", "val_seconds": "val_seconds"}


def required(package: str, variable: str) -> None:
    """Skip where ``package`` is not installed; fail instead where ``variable`` is 1 (CI)."""
    if importlib.util.find_spec(package) is None:
        missing(f"{package} is not installed (pip install 'fashionbench[{package}]')", variable)


def missing(message: str, variable: str) -> None:
    if os.environ.get(variable) == "1":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A port nothing listens on (the OS's choice, let go again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 (SQLite store, artifacts served by it),
    waited for by polling its /health, stopped with its workers at the end."""
    required("mlflow", "FASHIONBENCH_REQUIRE_MLFLOW")
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its own group: stopped whole
        # Without MLflow's job runner: a pool of busy consumer processes no test uses.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a loaded CI machine starts it in tens of seconds
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                missing(f"the MLflow server did not start: {(folder / 'server.log').read_text()[-2000:]}",
                        "FASHIONBENCH_REQUIRE_MLFLOW")
            time.sleep(0.2)
        yield url
    finally:
        stop_group(server, timeout=30)
        log.close()


def client(url: str):
    from mlflow.tracking import MlflowClient
    return MlflowClient(url)


def runs_in(url: str, experiment: str) -> list:
    mlflow = client(url)
    found = mlflow.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return mlflow.search_runs([found.experiment_id])


def dotted(values: dict) -> dict[str, str]:
    """A config file's keys as dotted names and text: what the run's parameters must be
    (pandas' json_normalize, MLflow's own dependency, rather than a copy of the code tested)."""
    import pandas as pd
    return {key: str(value) for key, value in pd.json_normalize(values, sep=".").to_dict("records")[0].items()}


def history_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def metric_steps(url: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client(url).get_metric_history(run_id, key))


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard folder, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def one_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- a run, logged and read back ----------------------------------------------------------

@pytest.mark.slow
def test_a_run_logged_to_mlflow_and_tensorboard_reads_back_whole(mlflow_server, data_dir, tmp_path):
    required("tensorboard", "FASHIONBENCH_REQUIRE_TENSORBOARD")
    out, board = tmp_path / "runs", tmp_path / "board"
    result = run_cli("train", *TINY, "--out", str(out), "--name", "logged", "--data-dir", str(data_dir), "--report",
                     "--track", "mlflow", "--track", "tensorboard", "--tensorboard-dir", str(board),
                     "--tracking-uri", mlflow_server, "--experiment", "runs")
    assert result.returncode == 0, result.stderr
    run_dir = out / "logged"
    history, summary = history_of(run_dir), json.loads((run_dir / "summary.json").read_text())
    assert len(history) == 2

    [run] = runs_in(mlflow_server, "runs")
    run_id = run.info.run_id
    assert run.info.run_name == "logged" and run.info.status == "FINISHED"
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"] == run_id
    # The config as parameters, every key of it and nothing else.
    assert run.data.params == dotted(yaml.safe_load((run_dir / "config.yaml").read_text()))
    # Each epoch's row: one value per epoch, at step = the epoch.
    for metric, key in EPOCH_KEYS.items():
        logged = metric_steps(mlflow_server, run_id, metric)
        assert [step for step, _ in logged] == [1, 2], metric
        assert [value for _, value in logged] == pytest.approx([row[key] for row in history], rel=1e-6), metric
    # The summary's figures at the end.
    assert run.data.metrics["final/test_acc"] == pytest.approx(summary["test_acc"])
    assert run.data.metrics["final/val_acc"] == pytest.approx(summary["val_acc"])
    assert run.data.metrics["final/swa/test_acc"] == pytest.approx(summary["results"]["swa"]["test"]["acc"])
    # The machine as tags, as the summary records it.
    tags = run.data.tags
    for key in ("cpu", "cpu_cores", "cpu_bf16", "gpu", "torch", "python"):
        assert tags[key] == ("none" if summary[key] is None else str(summary[key])), key
    assert tags["precision"] == "fp32" and tags["device"] == summary["device"] and int(tags["threads"]) >= 1
    if summary["git_commit"]:
        assert tags["mlflow.source.git.commit"] == summary["git_commit"].removesuffix("+dirty")
    # The files: summary, model, config, history and the report.
    artifacts = {a.path for a in client(mlflow_server).list_artifacts(run_id)}
    assert {"summary.json", "model.pt", "config.yaml", "metrics.jsonl", "report"} <= artifacts
    copy = client(mlflow_server).download_artifacts(run_id, "summary.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == summary

    # TensorBoard: a folder named as the run under --tensorboard-dir, none in the run folder.
    assert [p.name for p in board.iterdir()] == ["logged"] and not (run_dir / "tensorboard").exists()
    logged = scalars(board / "logged")
    for metric, key in EPOCH_KEYS.items():
        assert [step for step, _ in logged[metric]] == [1, 2], metric
        assert [value for _, value in logged[metric]] == pytest.approx([row[key] for row in history], rel=1e-6)
    assert logged["final/test_acc"] == [(2, pytest.approx(summary["test_acc"]))]


@pytest.mark.slow
def test_a_resumed_run_continues_its_mlflow_run(mlflow_server, data_dir, tmp_path):
    """Interrupted (SIGINT) after epoch 1 was logged: its MLflow run is KILLED; resumed
    with --track mlflow, the same run goes on to FINISHED with one value per epoch."""
    args = [*TINY, "--epochs", "3", "--out", str(tmp_path), "--name", "stopped", "--data-dir", str(data_dir),
            "--track", "mlflow", "--tracking-uri", mlflow_server, "--experiment", "resumed"]
    run_dir = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "fashionbench", "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def epoch_1_logged() -> bool:
        if not (run_dir / "tracking.json").exists():
            return False
        run_id = json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"]
        return bool(client(mlflow_server).get_metric_history(run_id, "val_acc"))
    wait_until(epoch_1_logged, proc, "epoch 1 logged to MLflow")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    [run] = runs_in(mlflow_server, "resumed")
    assert run.info.status == "KILLED"

    done = run_cli("train", "--resume", str(run_dir), "--data-dir", str(data_dir),
                   "--track", "mlflow", "--tracking-uri", mlflow_server, "--experiment", "resumed")
    assert done.returncode == 0, done.stderr
    [again] = runs_in(mlflow_server, "resumed")
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert [step for step, _ in metric_steps(mlflow_server, run.info.run_id, "val_acc")] == [1, 2, 3]
    assert [row["val_acc"] for row in history_of(run_dir)] == pytest.approx(
        [value for _, value in metric_steps(mlflow_server, run.info.run_id, "val_acc")], rel=1e-6)


@pytest.mark.slow
def test_a_sweep_nests_its_trials_under_the_study_s_run(mlflow_server, data_dir, tmp_path):
    required("tensorboard", "FASHIONBENCH_REQUIRE_TENSORBOARD")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "budget": {"epochs": 1, "data.train_subset": 300, "data.val_size": 200, "batch_size": 100},
        "params": {"optim.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True}}}))
    out, board = tmp_path / "sweeps", tmp_path / "board"
    result = run_cli("sweep", "basic_cnn", "--trials", "2", "--space", str(space), "--study", "s", "--out", str(out),
                     "--pruner", "none", "--device", "cpu", "--data-dir", str(data_dir),
                     "--track", "mlflow,tensorboard", "--tensorboard-dir", str(board),
                     "--tracking-uri", mlflow_server, "--experiment", "sweeps")
    assert result.returncode == 0, result.stderr
    found = runs_in(mlflow_server, "sweeps")
    [study] = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    trials = sorted((r for r in found if r is not study), key=lambda r: r.info.run_name)
    assert study.info.run_name == "s" and study.data.params["trials"] == "2" and "space.optim.lr" in study.data.params
    assert [t.info.run_name for t in trials] == ["s/trial-0", "s/trial-1"]
    for number, trial in enumerate(trials):
        assert trial.data.tags["mlflow.parentRunId"] == study.info.run_id
        assert trial.data.tags["optuna.state"] == "complete" and trial.info.status == "FINISHED"
        config = yaml.safe_load((out / "s" / f"trial-{number}" / "config.yaml").read_text())
        assert trial.data.params == dotted(config)
        assert [step for step, _ in metric_steps(mlflow_server, trial.info.run_id, "val_acc")] == [1]
        assert "final/test_acc" not in trial.data.metrics  # a trial never sees the test split
    assert study.data.metrics["best_val_acc"] == pytest.approx(max(t.data.metrics["final/val_acc"] for t in trials))
    assert study.info.status == "FINISHED"
    # TensorBoard: a folder per trial, under the study's.
    assert sorted(p.name for p in (board / "s").iterdir()) == ["trial-0", "trial-1"]
    for number in range(2):
        assert [step for step, _ in scalars(board / "s" / f"trial-{number}")["val_acc"]] == [1]


@pytest.mark.slow
def test_one_vs_all_nests_its_ten_networks_under_the_combined_run(mlflow_server, data_dir, tmp_path):
    result = run_cli("one-vs-all", "basic_cnn", "--device", "cpu", "--epochs", "1", "--batch-size", "50",
                     "--train-subset", "300", "--set", "data.val_size=200", "--set", "data.test_subset=200",
                     "--set", "schedule.cycle_epochs=1", "--set", "swa.start=1", "--out", str(tmp_path),
                     "--name", "ova", "--data-dir", str(data_dir), "--track", "mlflow",
                     "--tracking-uri", mlflow_server, "--experiment", "ova")
    assert result.returncode == 0, result.stderr
    found = runs_in(mlflow_server, "ova")
    [combined] = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    members = sorted((r for r in found if r is not combined), key=lambda r: int(r.info.run_name.split("-")[-1]))
    assert combined.info.run_name == "ova" and combined.info.status == "FINISHED"
    assert [m.info.run_name for m in members] == [f"ova/class-{c}" for c in range(10)]
    assert {m.data.tags["mlflow.parentRunId"] for m in members} == {combined.info.run_id}
    summary = json.loads((tmp_path / "ova" / "summary.json").read_text())
    assert combined.data.metrics["final/test_acc"] == pytest.approx(summary["test_acc"])
    assert {"summary.json", "model.pt", "report"} <= {a.path for a in client(mlflow_server).list_artifacts(
        combined.info.run_id)}
    member = json.loads((tmp_path / "ova" / "class-3" / "summary.json").read_text())
    assert members[3].data.metrics["final/test_acc"] == pytest.approx(member["test_acc"])
    assert [step for step, _ in metric_steps(mlflow_server, members[3].info.run_id, "val_acc")] == [1]


@pytest.mark.slow
def test_what_later_commands_add_to_a_finished_run_is_logged_to_its_run(mlflow_server, data_dir, tmp_path):
    """A run trained without tracking, then exported, measured under a corruption and
    reported with --track mlflow: one MLflow run, named as the folder, with its config as
    parameters and each command's file; the MLflow run's id kept in the folder, so each
    later command adds to the same run. A complete robustness record's figures
    (``attach``'s metrics) land at step = the run's epochs, in MLflow and TensorBoard."""
    required("tensorboard", "FASHIONBENCH_REQUIRE_TENSORBOARD")
    trained = run_cli("train", *TINY, "--epochs", "1", "--out", str(tmp_path), "--name", "later",
                      "--data-dir", str(data_dir))
    assert trained.returncode == 0, trained.stderr
    run_dir = tmp_path / "later"
    assert not (run_dir / "tracking.json").exists()
    logged = ["--track", "mlflow", "--tracking-uri", mlflow_server, "--experiment", "later"]

    exported = run_cli("export", str(run_dir), *logged)
    assert exported.returncode == 0, exported.stderr
    [run] = runs_in(mlflow_server, "later")
    assert run.info.run_name == "later" and run.info.status == "FINISHED"
    assert run.data.params == dotted(yaml.safe_load((run_dir / "config.yaml").read_text()))
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"] == run.info.run_id

    measured = run_cli("robustness", str(run_dir), "--types", "gaussian_noise", "--severities", "1",
                       "--cache-dir", str(tmp_path / "cache"), "--data-dir", str(data_dir), *logged)
    assert measured.returncode == 0, measured.stderr
    reported = run_cli("report", str(run_dir), "--data-dir", str(data_dir), *logged)
    assert reported.returncode == 0, reported.stderr
    [again] = runs_in(mlflow_server, "later")
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    artifacts = {a.path for a in client(mlflow_server).list_artifacts(run.info.run_id)}
    assert {"model.onnx", "robustness.json", "report"} <= artifacts
    # One corruption at one severity is not an mCA: no figure logged for it.
    assert not any(key.startswith("robustness/") for key in again.data.metrics)

    epochs = json.loads((run_dir / "summary.json").read_text())["epochs"]
    both = Tracking(["mlflow", "tensorboard"], tracking_uri=mlflow_server, experiment="later").check()
    tracking.attach(both, run_dir, metrics={"robustness/mca": 0.5})
    assert metric_steps(mlflow_server, run.info.run_id, "robustness/mca") == [(epochs, 0.5)]
    assert scalars(run_dir / "tensorboard")["robustness/mca"] == [(epochs, 0.5)]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "robustness", "report"])
def test_a_later_command_with_mlflow_down_is_one_line_before_it_writes(command, tiny_run, data_dir):
    required("mlflow", "FASHIONBENCH_REQUIRE_MLFLOW")
    before = sorted(p.name for p in tiny_run.iterdir())
    data = [] if command == "export" else ["--data-dir", str(data_dir)]
    result = run_main(command, str(tiny_run), *data, "--track", "mlflow",
                      "--tracking-uri", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1 and "Connection refused" in one_line(result)
    assert sorted(p.name for p in tiny_run.iterdir()) == before


@pytest.mark.slow
@pytest.mark.parametrize("command, run", [
    (["reproduce", "--models", "basic_cnn", "--seeds", "0", "--budget", "smoke"], "runs/basic_cnn-s0"),
    (["speedrun", "--seeds", "1", "--epochs", "2", "--train-subset", "1000", "--set", "data.val_size=200",
      "--set", "data.test_subset=200"], "sr/seed-0"),
])
def test_reproduce_and_speedrun_log_each_run_they_train(command, run, data_dir, tmp_path):
    """The table's and the speedrun's runs, logged as train's are (the same hook): one
    TensorBoard folder per run, beside its files, one value per epoch of its history."""
    required("tensorboard", "FASHIONBENCH_REQUIRE_TENSORBOARD")
    name = [] if command[0] == "reproduce" else ["--name", "sr"]
    result = run_cli(*command, "--out", str(tmp_path), *name, "--data-dir", str(data_dir), "--track", "tensorboard")
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / run
    logged = scalars(run_dir / "tensorboard")
    history = history_of(run_dir)
    assert [step for step, _ in logged["val_acc"]] == [row["epoch"] for row in history]
    assert [value for _, value in logged["val_acc"]] == pytest.approx([row["val_acc"] for row in history], rel=1e-6)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert logged["final/test_acc"] == [(summary["epochs"], pytest.approx(summary["test_acc"]))]


@pytest.mark.slow  # torchrun and two training processes
def test_under_torchrun_rank_0_alone_logs(data_dir, tmp_path):
    required("tensorboard", "FASHIONBENCH_REQUIRE_TENSORBOARD")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "fashionbench",
         "train", *TINY, "--out", str(tmp_path), "--name", "ddp", "--data-dir", str(data_dir),
         "--track", "tensorboard"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    events = list((tmp_path / "ddp" / "tensorboard").iterdir())
    assert len(events) == 1, events  # one writer: rank 0's
    assert [step for step, _ in scalars(tmp_path / "ddp" / "tensorboard")["val_acc"]] == [1, 2]


# -- before anything trains: one line -----------------------------------------------------

@pytest.mark.slow  # imports MLflow (seconds)
@pytest.mark.parametrize("uri, reason", [("http://127.0.0.1:{port}", "Connection refused"),
                                         ("nonsense://here", "cannot be used")])
def test_an_mlflow_server_down_or_wrong_is_one_line_before_any_folder(uri, reason, tmp_path):
    required("mlflow", "FASHIONBENCH_REQUIRE_MLFLOW")
    start = time.monotonic()
    result = run_main("train", "basic_cnn", "--out", str(tmp_path / "runs"), "--name", "r",
                      "--data-dir", str(tmp_path / "no-data"), "--track", "mlflow",
                      "--tracking-uri", uri.format(port=free_port()))
    assert result.returncode == 1 and reason in one_line(result)
    assert "--tracking-uri or MLFLOW_TRACKING_URI" in result.stderr
    assert time.monotonic() - start < 60  # seconds, not MLflow's minutes of retries
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("backend, modules", [("mlflow", ("mlflow",)),
                                              ("tensorboard", ("tensorboard", "torch.utils.tensorboard"))])
def test_a_missing_extra_is_one_line_naming_it(backend, modules, tmp_path, monkeypatch):
    for module in modules:  # None in sys.modules: its import fails, as if not installed
        monkeypatch.setitem(sys.modules, module, None)
    result = run_main("train", "basic_cnn", "--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "no-data"),
                      "--track", backend)
    assert result.returncode == 1
    assert one_line(result).endswith(f"needs {'MLflow' if backend == 'mlflow' else 'TensorBoard'}: "
                                     f"pip install 'fashionbench[{backend}]'")
    assert not (tmp_path / "runs").exists()


def test_a_tensorboard_dir_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    result = run_main("train", "basic_cnn", "--out", str(tmp_path / "runs"), "--track", "tensorboard",
                      "--tensorboard-dir", str(tmp_path / "file" / "board"))
    assert result.returncode == 1 and "--tensorboard-dir" in one_line(result)
    assert "is a file, not a folder" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--track", "wandb"], "wandb: not a tracking backend (choose from tensorboard, mlflow)"),
    (["--track", "tensorboard,"], None),  # a trailing comma is nothing
    (["--tensorboard-dir", "x"], "--tensorboard-dir set where runs are logged: add --track tensorboard or mlflow"),
    (["--experiment", "e"], "add --track"),
    (["--track", "tensorboard", "--tracking-uri", "http://x"], "--tracking-uri is MLflow's: it needs --track mlflow"),
])
def test_tracking_options_that_do_not_go_together_are_usage_errors(args, fragment, tmp_path):
    result = run_main("train", "basic_cnn", "--dry-run", "--out", str(tmp_path), *args)
    if fragment is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2 and fragment in one_line(result)


def test_torchrun_passes_the_tracking_options_on():
    """torchrun reads every option of the command it starts that it knows, abbreviations
    too (--log would be ambiguous to it, --log-dir its own): the options must reach us."""
    from torch.distributed.run import get_args_parser

    ours = ["train", "basic_cnn", "--track", "tensorboard,mlflow", "--tensorboard-dir", "d", "--tracking-uri", "u",
            "--experiment", "e"]
    parsed = get_args_parser().parse_args(["--standalone", "--nproc-per-node", "2", "-m", "fashionbench", *ours])
    assert parsed.training_script_args == ours


# -- never at the cost of the run ---------------------------------------------------------

def test_a_backend_failing_mid_run_is_warned_of_once_and_left_out(tmp_path, monkeypatch, capsys):
    def gone(self, metrics, step):
        raise ConnectionError("the server went away")
    monkeypatch.setattr(TensorBoard, "metrics", gone)
    logging = Tracking(["tensorboard"], tensorboard_dir=tmp_path)
    run = TrackedRun(logging, "r", tmp_path / "r")
    assert run.hooks == (run,)
    run.start({"a": "1"}, {"cpu": "x"})
    for epoch in (1, 2):
        run.on_checkpoint(None, {"epoch": epoch, "val_acc": 0.5})  # no exception: the run trains on
    warning = capsys.readouterr().err
    assert warning.count("warning") == 1 and "the server went away" in warning and "training goes on" in warning
    assert logging.failed == {"tensorboard"} and run.active == []
    assert TrackedRun(logging, "next", tmp_path / "next").hooks == ()  # the next run does not try again
    run.end()


def test_without_tracking_a_run_has_no_hook_and_writes_nothing(tmp_path):
    with track(None, tmp_path / "r", "r") as run:
        assert run.hooks == ()
        run.start({"a": "1"}, {})
        run.metrics({"val_acc": 0.5}, 1)
    assert not (tmp_path / "r").exists()


def test_an_epoch_row_as_metrics():
    row = {"epoch": 3, "lr": 0.1, "train_loss": 0.5, "seconds": 2.0, "swa_snapshots": 1, "note": "x",
           "val_loss": float("nan")}
    assert epoch_metrics(row) == {"lr": 0.1, "train_loss": 0.5, "epoch_seconds": 2.0, "swa_snapshots": 1.0}


def test_backends_parse_from_repeats_and_commas():
    assert tracking.parse_backends(["mlflow,tensorboard", "mlflow"]) == ("mlflow", "tensorboard")
    assert tracking.parse_backends(None) == ()


@pytest.mark.slow  # a new interpreter
def test_without_log_neither_backend_is_imported(tmp_path):
    code = ("import sys; from fashionbench.cli import main; "
            f"main(['train', 'basic_cnn', '--dry-run', '--out', {str(tmp_path)!r}]); "
            "print(sorted(m for m in ('mlflow', 'tensorboard', 'torch.utils.tensorboard') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
