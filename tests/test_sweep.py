"""fashionbench sweep: search spaces, workers sharing a study (SQLite and PostgreSQL),
pruning, a killed worker, the best trial as a recipe, and no test figure anywhere."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from fashionbench import training
from fashionbench.config import load_config
from fashionbench.errors import UsageError
from fashionbench.models import MODELS
from fashionbench.rundir import read_summary
from fashionbench.tasks.search_space import default_space, load_space, parse_space, recipe_values
from fashionbench.tasks.study import (
    StudySpec,
    join_study,
    make_pruner,
    make_sampler,
    open_storage,
    safe_url,
    with_driver,
)
from fashionbench.tasks.sweep import run_sweep

from conftest import run_cli, run_main

# Tiny trials: one epoch on 500 training images, judged on 1,000 validation images.
TINY = {"budget": {"epochs": 1, "data.train_subset": 500, "data.val_size": 1000, "batch_size": 100},
        "params": {"optim.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
                   "augment.erase": {"low": 0.0, "high": 0.5}}}


def write_space(folder: Path, space: dict) -> Path:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def study_of(name: str, storage: str):
    return optuna.load_study(study_name=name, storage=storage)


def states(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


# -- the search space (fast) -------------------------------------------------------------------

@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_recipes_default_space_is_valid_and_holds_the_recipe(model):
    cfg = load_config(model)
    space = default_space(cfg)
    space.check(model, "default space")  # every end of every range makes a valid config
    assert space.budget["epochs"] == cfg.epochs
    values = recipe_values(cfg, space)
    assert values is not None and set(values) == set(space.params)  # the recipe is trial 0
    assert values["optim.lr"] == cfg.optim.lr
    if "schedule.base_lr" in space.params:  # every draw of base_lr is below every draw of lr
        assert space.params["schedule.base_lr"].high < space.params["optim.lr"].low


def test_a_space_file_round_trips_and_makes_trial_configs(tmp_path):
    space = load_space(write_space(tmp_path, TINY))
    assert parse_space(space.to_dict(), "again").to_dict() == space.to_dict() == {
        "budget": TINY["budget"], "params": {"optim.lr": {"low": 1e-3, "high": 1e-2, "log": True},
                                             "augment.erase": {"low": 0.0, "high": 0.5}}}
    cfg = space.config("basic_cnn", {"optim.lr": 5e-3, "augment.erase": 0.25}, [{"eval": {"test": False}}])
    assert (cfg.optim.lr, cfg.augment.erase, cfg.epochs, cfg.data.train_subset, cfg.eval.test) == \
        (5e-3, 0.25, 1, 500, False)
    assert cfg.optim.weight_decay == load_config("basic_cnn").optim.weight_decay  # the rest: the recipe


@pytest.mark.parametrize("space, fragment", [
    ({"budget": {"epochs": 1}}, "a search space is a mapping with params"),
    ({"params": {"optim.lr": {"low": 1e-2, "high": 1e-3}}}, "low (0.01) must be below high (0.001)"),
    ({"params": {"optim.lr": {"low": 0, "high": 1e-3, "log": True}}}, "a log range needs low > 0"),
    ({"params": {"optim.lr": {"low": 1e-3, "high": 1e-2, "step": 2}}}, "unknown field(s) step"),
    ({"params": {"optim.lr": {"choices": []}}}, "choices must be a non-empty list"),
    ({"params": {"optim.lr": [1, 2]}}, "params.optim.lr must be a mapping"),
    ({"params": {"optim.lrr": {"low": 1e-3, "high": 1e-2}}}, "params.optim.lrr = 0.001: unknown config key"),
    ({"params": {"augment.flip": {"low": 0.5, "high": 1.5}}}, "augment.flip must be in [0, 1]"),
    ({"params": {"augment.flip": {"low": 0, "high": 1}}, "budget": {"epochs": 0}}, "budget: epochs must be in"),
    ({"params": {"augment.flip": {"low": 0, "high": 1}}, "extra": {}}, "unknown section(s) extra"),
])
def test_a_bad_space_is_refused_with_what_is_wrong(space, fragment):
    with pytest.raises(UsageError, match=None) as e:
        parse_space(space, "space.yaml").check("basic_cnn", "space.yaml")
    assert fragment in str(e.value) and str(e.value).startswith("space.yaml")


def test_a_postgresql_url_without_a_driver_gets_the_installed_one():
    assert with_driver("postgresql://ann@db/fb") == "postgresql+psycopg://ann@db/fb"
    assert with_driver("postgresql+psycopg2://ann@db/fb") == "postgresql+psycopg2://ann@db/fb"
    assert with_driver("sqlite:////tmp/s.db") == "sqlite:////tmp/s.db"


def test_a_storage_url_is_printed_without_its_password():
    assert safe_url("postgresql://ann:secret@db:5432/fb") == "postgresql://ann:***@db:5432/fb"
    assert safe_url("sqlite:////tmp/study.db") == "sqlite:////tmp/study.db"


@pytest.mark.parametrize("args, fragment", [
    (["sweep", "basic_cnn"], "--trials N is needed"),
    (["sweep", "--trials", "3"], "name a MODEL to search"),
    (["sweep", "basic_cnn", "--best", "s"], "--best STUDY reads a finished study; MODEL cannot go with it"),
    (["sweep", "basic_cnn", "--trials", "2", "--study", "a/b"], "--study 'a/b': use letters"),
    (["sweep", "--best", "nothing-here", "--out", "/nonexistent"], "no study nothing-here"),
])
def test_sweep_usage_mistakes_are_one_line(args, fragment):
    result = run_main(*args)
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr


def test_print_space_shows_the_default_with_the_budget_options():
    result = run_main("sweep", "basic_cnn", "--print-space", "--epochs", "8", "--train-subset", "20000")
    space = yaml.safe_load(result.stdout)
    assert space["budget"] == {"epochs": 8, "data.train_subset": 20000}
    assert space["params"]["optim.lr"] == {"low": 0.00075, "high": 0.012, "log": True}


# -- workers, pruning, the best trial (real data) ------------------------------------------------

def start_worker(out: Path, space: Path, study: str, trials: int, *extra: str,
                 stderr: int = subprocess.STDOUT) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fashionbench", "sweep", "basic_cnn", "--trials", str(trials),
         "--space", str(space), "--study", study, "--out", str(out), "--pruner", "none",
         "--device", "cpu", *extra],
        stdout=subprocess.PIPE, stderr=stderr, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # two workers, two cores
        # Python turns SIGINT into KeyboardInterrupt only if it starts with SIGINT at its
        # default, which a test run in the background (SIGINT ignored) would not pass on.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_line(worker: subprocess.Popen, start: str) -> str:
    """Read the worker's output up to a line starting with ``start``: the event a test
    waits for, instead of a fixed sleep. Its output so far; a test failure if it ends first."""
    seen = []
    for line in worker.stdout:
        seen.append(line)
        if line.startswith(start):
            return "".join(seen)
    pytest.fail(f"the worker ended (status {worker.wait()}) before a line {start!r}:\n{''.join(seen)}")


def check_two_workers(data_dir: Path, tmp_path: Path, storage: str | None) -> tuple[Path, str]:
    """Two workers started together on one study finish 6 trials in all, each trial
    trained once, by one of them, into its own run folder, with no test figure."""
    out, space = tmp_path / "sweeps", write_space(tmp_path, TINY)
    extra = ["--data-dir", str(data_dir)] + ([] if storage is None else ["--storage", storage])
    workers = [start_worker(out, space, "two", 6, *extra) for _ in range(2)]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    storage = storage or f"sqlite:///{out / 'two' / 'study.db'}"
    study = study_of("two", storage)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 6 and states(study).get("RUNNING", 0) == 0, states(study)
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in study.trials)
    # A FAIL here is only a trial asked for at the instant another worker took the last.
    assert all("had its 6 trials" in t.user_attrs.get("failed", "") for t in study.trials
               if t.state == TrialState.FAIL)
    trained = [line for log in logs for line in log.splitlines() if ": training in " in line]
    assert sorted(trained) == sorted(f"trial {t.number}: training in {out / 'two' / f'trial-{t.number}'}"
                                     for t in done)  # each once, by one worker
    assert all(any(f"trial {t.number}: training" in log for log in logs) for t in done)
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == 6
    assert done[0].params == {"optim.lr": pytest.approx(3e-3), "augment.erase": 0.0}  # the recipe first
    for t in done:  # ordinary run folders, validation only
        run_dir = out / "two" / f"trial-{t.number}"
        summary = read_summary(run_dir)
        assert summary.test_acc is None and summary.test_size == 0
        assert all(set(splits) == {"val"} for splits in summary.results.values())
        assert summary.val_acc == pytest.approx(t.value)
        assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
        evaluation = yaml.safe_load((run_dir / "config.yaml").read_text())["eval"]
        assert evaluation == {"test": False, "tta": False, "tta_shift": 0, "select_on": "val"}
    return out, storage


def test_two_workers_share_one_sqlite_study_and_the_best_trial_trains(data_dir, tmp_path):
    out, _ = check_two_workers(data_dir, tmp_path, None)
    # table reads trials like any runs: six validation-only rows
    table = run_main("table", str(out / "two"), "--out", str(tmp_path / "table"))
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith("| basic_cnn")]
    assert len(rows) == 6 and all(line.split("|")[3].strip() == "-" for line in rows)
    assert "validation-only runs" in table.stdout and "Smoke runs" not in table.stdout
    # report and ensemble take trials too (the user's own choice of split, after the search)
    report = run_main("report", str(out / "two" / "trial-1"), "--split", "val", "--data-dir", str(data_dir))
    assert report.returncode == 0 and (out / "two" / "trial-1" / "report-val" / "report.html").exists(), \
        report.stderr
    ensemble = run_main("ensemble", str(out / "two" / "trial-0"), str(out / "two" / "trial-1"), "--out",
                       str(tmp_path / "ens"), "--name", "e", "--data-dir", str(data_dir))
    assert ensemble.returncode == 0, ensemble.stderr
    # the best trial as a recipe, which trains (and, as a recipe, is evaluated on test)
    best = run_main("sweep", "--best", "two", "--out", str(out))
    assert best.returncode == 0, best.stderr
    assert "parameter importances" in best.stdout
    recipe = out / "two" / "best.yaml"
    for name in ("best.yaml", "history.png", "importances.png", "importances.json", "trials.csv"):
        assert (out / "two" / name).stat().st_size > 0
    cfg = yaml.safe_load(recipe.read_text())
    assert cfg["eval"] == {"test": True, "tta": False, "tta_shift": 0, "select_on": "val"}
    assert cfg["epochs"] == 1 and cfg["data"]["train_subset"] == 500
    study = study_of("two", f"sqlite:///{out / 'two' / 'study.db'}")
    assert cfg["optim"]["lr"] == pytest.approx(study.best_trial.params["optim.lr"])
    assert set(json.loads((out / "two" / "importances.json").read_text())) == {"optim.lr", "augment.erase"}
    trained = run_cli("train", "--config", str(recipe), "--out", str(tmp_path / "runs"), "--name", "best",
                      "--data-dir", str(data_dir), "--set", "data.test_subset=1000")
    assert trained.returncode == 0, trained.stderr
    assert read_summary(tmp_path / "runs" / "best").test_acc is not None
    # A second worker command on the full study runs nothing more.
    again = start_worker(out, write_space(tmp_path, TINY), "two", 6, "--data-dir", str(data_dir))
    log = again.communicate(timeout=300)[0]
    assert again.returncode == 0 and ": training in" not in log and "6 complete" in log, log


def find_postgres() -> Path | None:
    """The folder of PostgreSQL's server programs: on PATH, or where Debian puts them."""
    on_path = shutil.which("initdb")
    candidates = ([Path(on_path).resolve().parent] if on_path else []) + \
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on a loopback port, in a temporary folder, stopped
    after. With FASHIONBENCH_REQUIRE_POSTGRES=1 (CI) a server that cannot start fails
    the test instead of skipping it."""
    def unavailable(why: str):
        if os.environ.get("FASHIONBENCH_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL: {why}")
        pytest.skip(f"PostgreSQL: {why}")
    bin_dir = find_postgres()
    if bin_dir is None:
        unavailable("no server programs (initdb, pg_ctl); Debian: apt-get install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="fashionbench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as Debian's postgres user
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port, data = free_port(), folder / "data"
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "fashionbench"],
                       check=True, capture_output=True, text=True, timeout=120)
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
                        "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "-w", "start"],
                       check=True, capture_output=True, text=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        shutil.rmtree(folder, ignore_errors=True)
        unavailable(f"the server did not start: {getattr(e, 'stderr', '') or e}")
    yield f"postgresql://fashionbench@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                   capture_output=True, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(data_dir, tmp_path, postgres_url):
    check_two_workers(data_dir, tmp_path, postgres_url)


def test_a_bad_region_is_pruned_and_no_trial_sees_the_test_split(data, tmp_path, monkeypatch):
    """Four good trials, then one from a deliberately bad region (a learning rate that
    learns nothing): the median pruner stops it after its first epoch. Meanwhile every
    evaluation any trial makes is recorded: none is of the test split."""
    evaluated = []
    real_evaluate = training.evaluate

    def recording(model, split, *args, **kwargs):
        evaluated.append(len(split.labels))
        return real_evaluate(model, split, *args, **kwargs)
    monkeypatch.setattr(training, "evaluate", recording)
    space = parse_space({"budget": {**TINY["budget"], "epochs": 2, "data.train_subset": 2000,
                                          "schedule.base_lr": 1e-8, "swa.enabled": False},
                               "params": {"optim.lr": {"low": 1e-7, "high": 3e-3, "log": True}}}, "t")
    out = tmp_path / "sweeps"
    storage = f"sqlite:///{out / 'bad' / 'study.db'}"
    (out / "bad").mkdir(parents=True)
    # The queue, in order: the recipe (3e-3, queued by the study itself), three more good
    # learning rates, then the bad one.
    study = join_study("bad", open_storage(storage), StudySpec("basic_cnn", space, 0),
                             make_sampler(5, 0), make_pruner("median", 2), {"optim.lr": 3e-3})
    for lr in (2.5e-3, 2e-3, 1.5e-3, 1e-7):
        study.enqueue_trial({"optim.lr": lr})
    result = run_sweep("basic_cnn", data, 5, out, "bad", storage, space, "median", fixed=[{"device": "cpu"}])
    study = study_of("bad", storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4 + [TrialState.PRUNED]
    pruned = study.trials[4]
    assert pruned.params["optim.lr"] == 1e-7 and list(pruned.intermediate_values) == [1]
    assert pruned.intermediate_values[1] < min(t.intermediate_values[1] for t in study.trials[:4])
    run_dir = out / "bad" / "trial-4"  # stopped after epoch 1: an interrupted run folder
    assert not (run_dir / "summary.json").exists() and (run_dir / "checkpoint.pt").exists()
    assert result.counts == {"complete": 4, "pruned": 1} and result.best_number is not None
    assert evaluated and set(evaluated) == {1000}, evaluated  # validation (1,000 images) only


def test_a_killed_workers_recipe_is_failed_queued_again_and_run_by_a_rerun_that_waits(data, tmp_path, capsys):
    """kill -9 of the worker training the recipe (trial 0), then the same command again
    at once: trial 0 still looks running, its heartbeat not yet expired. The rerun says
    so and waits; once the heartbeat is older than its grace period, trial 0 is failed,
    the recipe queued again (trial 1) and trained, and the study holds its one trial."""
    out, space = tmp_path / "sweeps", write_space(tmp_path, TINY)
    killed = start_worker(out, space, "killed", 1, "--data-dir", str(data.root), "--heartbeat", "1")
    wait_for_line(killed, "trial 0: training in")  # its heartbeat is on record, the trial running
    killed.kill()
    killed.communicate(timeout=60)
    storage = f"sqlite:///{out / 'killed' / 'study.db'}"
    assert states(study_of("killed", storage)) == {"RUNNING": 1}
    # Its beat was written before training began, not left to Optuna's thread (a worker
    # killed before that thread's first beat left a trial no worker would ever fail).
    with sqlite3.connect(out / "killed" / "study.db") as db:
        assert db.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone() == (1,)
    # Beating every 5 s, the rerun marks a trial failed once its heartbeat is 10 s old:
    # trial 0's is under 2 s old when it starts.
    result = run_sweep("basic_cnn", data, 1, out, "killed", None, load_space(space), "none",
                       fixed=[{"device": "cpu"}], heartbeat=5)
    log = capsys.readouterr().out
    assert "study killed: 1 trial (trial 0) still running, in another worker or in a killed one; " \
           "waiting up to 13 s for each to finish or for its heartbeat to expire" in log, log
    assert "trial 0 failed: its heartbeat stopped (a killed worker); the recipe is queued again" in log, log
    assert "trial 1 (the recipe): augment.erase=0, optim.lr=0.003" in log, log
    study = study_of("killed", storage)
    assert [(t.state, t.user_attrs.get("recipe")) for t in study.trials] == \
        [(TrialState.FAIL, True), (TrialState.COMPLETE, True)], states(study)
    assert study.trials[1].params == study.trials[0].params == {"optim.lr": pytest.approx(3e-3),
                                                                 "augment.erase": 0.0}
    assert result.counts == {"fail": 1, "complete": 1} and result.best_number == 1


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the live worker asks outside optimize
def test_a_rerun_leaves_a_live_workers_trial_to_it_and_says_so(tmp_path, capsys):
    """A trial whose heartbeat goes on beating belongs to a live worker: a worker with
    nothing left to take waits one grace period, sees it beat, leaves it and says so."""
    space = parse_space(TINY, "t")
    out = tmp_path / "sweeps"
    (out / "live").mkdir(parents=True)
    storage = open_storage(f"sqlite:///{out / 'live' / 'study.db'}", heartbeat=1)
    study = join_study("live", storage, StudySpec("basic_cnn", space, 0), make_sampler(1, 0),
                       make_pruner("none", 1), {"optim.lr": 3e-3, "augment.erase": 0.0})
    trial = study.ask()  # the recipe, taken by the "live worker": this test, beating below
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            storage.record_heartbeat(trial._trial_id)
            stop.wait(0.25)
    beating = threading.Thread(target=beat)
    beating.start()
    try:
        result = run_sweep("basic_cnn", None, 1, out, "live", None, space, "none", heartbeat=1)
    finally:
        stop.set()
        beating.join()
    log = capsys.readouterr().out
    assert "study live: 1 trial (trial 0) still running, in another worker or in a killed one; " \
           "waiting up to 5 s" in log, log
    assert "study live: 1 trial (trial 0) still running with a live heartbeat, in live workers; " \
           "the study has its 1 trial once they finish" in log, log
    assert result.counts == {"running": 1}
    assert states(study_of("live", f"sqlite:///{out / 'live' / 'study.db'}")) == {"RUNNING": 1}


def test_joining_a_study_with_other_settings_names_each_difference(tmp_path):
    space = parse_space(TINY, "t")
    other = parse_space({"budget": {**TINY["budget"], "epochs": 2},
                         "params": {**TINY["params"], "label_smoothing": {"low": 0.0, "high": 0.2}}}, "t")
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    join_study("s", storage, StudySpec("basic_cnn", space, 0), make_sampler(2, 0), make_pruner("none", 1), None)
    with pytest.raises(UsageError) as e:
        join_study("s", storage, StudySpec("basic_cnn", other, 1), make_sampler(2, 0), make_pruner("none", 1), None)
    assert str(e.value) == (
        "study s was made with other settings: budget.epochs is 1 in the study, 2 here; "
        "params.label_smoothing is absent in the study, {low: 0.0, high: 0.2} here; seed is 0 in the study, "
        "1 here; run the command that created it to join, or choose another --study")


@pytest.mark.parametrize("url, fragment", [
    ("notaurl", "--storage notaurl: not a database URL (DIALECT://... as in "),
    ("nosuchdb://ann:secret@host/db", "--storage nosuchdb://ann:***@host/db: no database kind nosuchdb"),
    ("postgresql://ann@host:port/db", "--storage postgresql://ann@host:port/db: not a database URL"),
])
def test_a_malformed_storage_url_is_one_line_and_writes_nothing(url, fragment, tmp_path):
    result = run_main("sweep", "basic_cnn", "--trials", "1", "--storage", url, "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr, result.stderr
    assert "secret" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("signum, status, what", [(signal.SIGTERM, 143, "terminated"),
                                                  (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_a_sweep_is_our_one_line_and_its_status(data_dir, tmp_path, signum, status, what):
    out, space = tmp_path / "sweeps", write_space(tmp_path, TINY)
    worker = start_worker(out, space, "stopped", 1, "--data-dir", str(data_dir), stderr=subprocess.PIPE)
    wait_for_line(worker, "trial 0: training in")
    worker.send_signal(signum)
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == status, stderr
    assert stderr.splitlines() == [
        f"fashionbench: error: {what}; continue with: fashionbench sweep basic_cnn --trials 1 --space {space} "
        f"--study stopped --out {out} --pruner none --device cpu --data-dir {data_dir}  "
        "(the interrupted trial is marked failed; a new trial takes its place)"], stderr
    assert states(study_of("stopped", f"sqlite:///{out / 'stopped' / 'study.db'}")) == {"FAIL": 1}
