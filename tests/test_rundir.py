"""The run folder has one owner, rundir/: its files' names, its kind (one rule), its
state (one rule), creating one, the one-line errors of a folder that is not what a
command needs, the model file in both layouts, and summaries and checkpoints of
earlier versions. Nothing here trains or reads the real dataset."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import fashionbench as fb
from fashionbench import config as config_module
from fashionbench import rundir
from fashionbench.config import dump_config, load_config, parse_override
from fashionbench.data import FashionMNIST
from fashionbench.errors import FashionbenchError, UsageError
from fashionbench.models import build_model
from fashionbench.models.one_vs_all import OneVsAllNetwork
from fashionbench.rundir import (
    CHECKPOINT,
    CONFIG,
    HISTORY,
    MODEL,
    SETUP,
    SUMMARY,
    TRACKING,
    Kind,
    RunDir,
    State,
    Summary,
    kind_of,
    member_name,
    read_summary,
    state_of,
    write_summary,
)
from fashionbench.rundir import folder as rundir_folder
from fashionbench.runs import save_torch

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "fashionbench"


def config_text(*overrides: str) -> str:
    return dump_config(load_config("basic_cnn", overrides=[parse_override(o) for o in overrides]))


def a_summary(**changes) -> Summary:
    fields = dict(kind="run", model="basic_cnn", weights="last", val_acc=0.5, test_acc=0.5,
                  results={"last": {"val": {"acc": 0.5, "loss": 1.0}, "test": {"acc": 0.5, "loss": 1.0}}},
                  seed=0, parameters=732_114, epochs=1, seconds_per_epoch=1.0, device="cpu")
    return Summary(**{**fields, **changes})


def folder_with(path: Path, *files: str, config: str | None = None, summary: Summary | None = None) -> Path:
    """A folder holding ``files`` (empty), a config and a summary."""
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_bytes(b"")
    if config is not None:
        (path / CONFIG).write_text(config)
    if summary is not None:
        write_summary(path, summary)
    return path


def finished_run(path: Path, *overrides: str, summary: Summary | None = None) -> Path:
    """A finished run's folder without training: its config, an untrained model, a summary."""
    folder_with(path, config=config_text(*overrides), summary=summary or a_summary())
    cfg = RunDir(path).config
    RunDir(path).write_model(build_model(cfg.model, cfg.num_classes), cfg.model, "last", cfg.num_classes)
    return path


# -- kind: one rule --------------------------------------------------------------------

def test_the_kind_of_each_folder(tmp_path):
    run = folder_with(tmp_path / "run", config=config_text())
    binary = folder_with(tmp_path / "binary", config=config_text("data.positive_class=3"))
    ova = folder_with(tmp_path / "ova", config=config_text())
    (ova / member_name(0)).mkdir()
    ova_early = tmp_path / "ova-early"  # stopped before even its config was written
    (ova_early / member_name(0)).mkdir(parents=True)
    ensemble = folder_with(tmp_path / "ensemble", summary=a_summary(kind="ensemble", weights="ensemble",
                                                                     results={"ensemble": {}}))
    specialists = folder_with(tmp_path / "specialists", SETUP)  # interrupted: its setup, no summary
    finished_specialists = folder_with(tmp_path / "specialists-done", summary=a_summary(
        kind="specialists", weights="specialists", results={"specialists": {}}))
    # A record without its config (a table's input): a binary run by its summary's variant.
    binary_record = folder_with(tmp_path / "binary-record", summary=a_summary(variant="binary: Shirt against the rest"))
    run_record = folder_with(tmp_path / "run-record", summary=a_summary())
    damaged = folder_with(tmp_path / "damaged", config="model: [unclosed\n")
    empty = folder_with(tmp_path / "empty", "notes.txt")
    expected = {run: Kind.RUN, binary: Kind.BINARY, ova: Kind.ONE_VS_ALL, ova_early: Kind.ONE_VS_ALL,
                ensemble: Kind.ENSEMBLE, specialists: Kind.SPECIALISTS, finished_specialists: Kind.SPECIALISTS,
                binary_record: Kind.BINARY, run_record: Kind.RUN, damaged: Kind.RUN, empty: None,
                tmp_path / "missing": None}
    assert {path: kind_of(path) for path in expected} == expected
    assert {path: RunDir(path).kind for path in expected} == expected
    assert [kind.trained for kind in Kind] == [True, True, False, False, True]


def test_a_kind_is_its_summary_s_kind_and_a_command_s():
    assert Kind("one-vs-all") is Kind.ONE_VS_ALL and Kind.RUN == "run" and json.dumps(Kind.ENSEMBLE) == '"ensemble"'
    assert Kind.of_command("train") is Kind.RUN and Kind.of_command("one-vs-all") is Kind.ONE_VS_ALL
    assert Kind.of_command(Kind.RUN) is Kind.RUN and Kind.of_command(Kind.ONE_VS_ALL) is Kind.ONE_VS_ALL
    assert (Kind.RUN.command, Kind.BINARY.command, Kind.ONE_VS_ALL.command, Kind.ENSEMBLE.command) == \
        ("train", "train", "one-vs-all", None)
    for other in ("tran", Kind.ENSEMBLE, Kind.BINARY, "specialists"):  # no command trains these
        with pytest.raises(UsageError, match=f"kind must be train or one-vs-all, not {str(other)!r}$"):
            Kind.of_command(other)
    assert a_summary(kind="ensemble").kind is Kind.ENSEMBLE  # given as its value, held as the type
    with pytest.raises(ValueError):
        a_summary(kind="binary-ish")


# -- state: one rule -------------------------------------------------------------------

def test_the_state_of_a_folder(tmp_path):
    cases = {folder_with(tmp_path / "config-only", config=config_text()): State.NEW,  # killed before epoch 1
             tmp_path / "missing": State.NEW,
             folder_with(tmp_path / "interrupted", CHECKPOINT, HISTORY, config=config_text()): State.INTERRUPTED,
             folder_with(tmp_path / "complete", CHECKPOINT, MODEL, summary=a_summary()): State.COMPLETE,
             folder_with(tmp_path / "ensemble", summary=a_summary(kind="ensemble")): State.COMPLETE}
    assert {path: state_of(path) for path in cases} == cases
    assert {path: RunDir(path).state for path in cases} == cases


def test_train_or_resume_and_reproduce_ask_the_same_rule(tmp_path, monkeypatch):
    """A complete folder is read back, not trained (training.train_or_resume)."""
    from fashionbench.training import train_or_resume

    done = folder_with(tmp_path / "done", summary=a_summary(seed=7))
    assert train_or_resume(load_config("basic_cnn"), None, done).seed == 7  # no data needed: nothing trains
    from fashionbench.tasks.reproduce import reproduce_plan

    cfg, run_dir, state = reproduce_plan(["basic_cnn"], [0], "smoke", tmp_path, "cpu")[0]
    assert state is State.NEW
    folder_with(run_dir, CHECKPOINT, config=dump_config(cfg))
    assert reproduce_plan(["basic_cnn"], [0], "smoke", tmp_path, "cpu")[0][2] is State.INTERRUPTED


# -- creating a folder -----------------------------------------------------------------

def test_a_new_folder_is_never_an_existing_one(tmp_path):
    made = RunDir.create(tmp_path, "r", "basic_cnn")
    assert made.path == tmp_path / "r" and not made.path.exists()  # made when its first file is written
    assert re.fullmatch(r"basic_cnn-\d{8}-\d{6}", RunDir.create(tmp_path, None, "basic_cnn").path.name)
    (tmp_path / "r").mkdir()
    with pytest.raises(FashionbenchError, match=rf"^{re.escape(str(tmp_path / 'r'))} already exists; "
                                                r"choose another --name or --resume it$"):
        RunDir.create(tmp_path, "r", "basic_cnn")
    with pytest.raises(FashionbenchError, match=r"already exists; choose another --name$"):
        RunDir.create(tmp_path, "r", "ensemble", resumable=False)
    with pytest.raises(UsageError, match="expected a folder name"):
        RunDir.create(tmp_path, "../r", "basic_cnn")


def test_a_run_that_never_finished_an_epoch_is_discarded_and_no_other(tmp_path):
    new = folder_with(tmp_path / "new", config=config_text())
    kept = folder_with(tmp_path / "kept", CHECKPOINT, config=config_text())
    logged = folder_with(tmp_path / "logged", TRACKING, config=config_text())  # its MLflow run's record
    RunDir(new).discard_new()
    RunDir(kept).discard_new()
    RunDir(logged).discard_new()
    RunDir(tmp_path / "gone").discard_new()  # nothing to remove: no error
    assert not new.exists() and sorted(p.name for p in kept.iterdir()) == [CHECKPOINT, CONFIG]
    assert not logged.exists()


# -- requirements: one line each -------------------------------------------------------

def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def test_what_is_not_a_finished_trained_run_is_said_in_one_line(tmp_path):
    with pytest.raises(FashionbenchError) as e:
        RunDir(folder_with(tmp_path / "empty")).finished()
    assert one_line(e) == f"{tmp_path / 'empty'}: not a run folder (no {CONFIG})"

    ensemble = folder_with(tmp_path / "ens", summary=a_summary(kind="ensemble"))
    with pytest.raises(FashionbenchError) as e:
        RunDir(ensemble).finished()
    assert one_line(e).startswith(f"{ensemble} is an ensemble, not a trained run: it has no model of its own. "
                                  "fashionbench table lists it")
    assert CONFIG not in str(e.value)
    with pytest.raises(FashionbenchError, match="is a run with specialists, not a trained run"):
        RunDir(folder_with(tmp_path / "spec", summary=a_summary(kind="specialists"))).finished()

    unfinished = folder_with(tmp_path / "unfinished", CHECKPOINT, config=config_text())
    with pytest.raises(FashionbenchError) as e:
        RunDir(unfinished).finished()
    assert one_line(e) == f"{unfinished}: no {SUMMARY} (run not finished?)"

    damaged = folder_with(tmp_path / "damaged", config="epochs: -3\nmodel: basic_cnn\n", summary=a_summary())
    with pytest.raises(FashionbenchError) as e:
        RunDir(damaged).finished()
    assert one_line(e).startswith(f"{damaged / CONFIG}: epochs must be in")

    no_model = folder_with(tmp_path / "no-model", config=config_text(), summary=a_summary())
    with pytest.raises(FashionbenchError) as e:
        RunDir(no_model).finished()
    assert one_line(e) == f"{no_model}: no {MODEL} (run not finished?)"


def test_a_command_asks_for_the_kinds_it_takes(tmp_path):
    member = finished_run(tmp_path / "member", "data.positive_class=3")
    assert RunDir(member).finished().kind is Kind.BINARY  # evaluate, predict, export take it
    with pytest.raises(FashionbenchError) as e:
        RunDir(member).finished((Kind.RUN, Kind.ONE_VS_ALL), "is one binary member; not this")
    assert one_line(e) == f"{member} is one binary member; not this"
    with pytest.raises(FashionbenchError, match=r"is a binary run; this takes a single run$"):
        RunDir(member).finished((Kind.RUN,))
    loaded = RunDir(member).finished()
    assert rundir.finished(loaded) is loaded  # a finished run is not read again...
    with pytest.raises(FashionbenchError, match=r"is a binary run; this takes a single run or a one-vs-all run$"):
        rundir.finished(loaded, (Kind.RUN, Kind.ONE_VS_ALL))  # ...but its kind is still asked for
    with pytest.raises(FashionbenchError, match="is one binary member of a one-vs-all run; its parent folder"):
        fb.report(member)  # before any data is asked for
    with pytest.raises(FashionbenchError, match="is not a ten-class run"):
        fb.specialists(member, out=tmp_path)


def test_resuming_asks_for_an_unfinished_folder_of_its_own_command(tmp_path):
    run = folder_with(tmp_path / "run", CHECKPOINT, config=config_text())
    ova = folder_with(tmp_path / "ova", config=config_text())
    (ova / member_name(0)).mkdir()
    assert RunDir(run).resumable(Kind.RUN).model == "basic_cnn"
    assert RunDir(ova).resumable(Kind.ONE_VS_ALL).model == "basic_cnn"
    with pytest.raises(UsageError) as e:
        RunDir(run).resumable(Kind.ONE_VS_ALL)
    assert one_line(e) == f"{run} is a single run; resume it with fashionbench train --resume {run}"
    with pytest.raises(UsageError, match=f"is a one-vs-all run; resume it with fashionbench one-vs-all --resume {ova}"):
        RunDir(ova).resumable(Kind.RUN)
    write_summary(run, a_summary())
    with pytest.raises(FashionbenchError) as e:
        RunDir(run).resumable(Kind.RUN)
    assert one_line(e) == f"{run} is already complete ({SUMMARY} exists)"
    with pytest.raises(FashionbenchError, match="not a run folder"):
        RunDir(tmp_path / "nothing").resumable(Kind.RUN)
    # The API's kind: a Kind, or the command's name as the command line gives it.
    from fashionbench.api._train import prepare_run

    interrupted = folder_with(tmp_path / "interrupted", CHECKPOINT, config=config_text())
    assert prepare_run("train", resume=interrupted, start=False)[1:] == (interrupted, True)
    assert prepare_run(Kind.ONE_VS_ALL, resume=ova, start=False)[1:] == (ova, False)
    with pytest.raises(UsageError, match="resume it with fashionbench one-vs-all"):
        fb.resume(ova, kind="train")
    with pytest.raises(UsageError, match="kind must be train or one-vs-all"):
        fb.resume(run, kind="ensemble")


# -- the model: both layouts -------------------------------------------------------------

def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("num_classes", [10, 2])
def test_a_single_network_round_trips(tmp_path, num_classes):
    torch.manual_seed(0)
    network = build_model("basic_cnn", num_classes)
    RunDir(tmp_path).write_model(network, "basic_cnn", "swa", num_classes)
    saved = torch.load(tmp_path / MODEL, weights_only=True)
    assert list(saved) == ["model", "weights", "num_classes", "state_dict"]  # the layout every version reads
    loaded = RunDir(tmp_path).read_model()
    assert loaded.weights == "swa" and type(loaded.network) is type(network)
    assert same_weights(loaded.network, network)


def test_one_vs_all_s_combined_model_round_trips(tmp_path):
    torch.manual_seed(0)
    members = [build_model("basic_cnn", 2) for _ in range(10)]
    combined = OneVsAllNetwork(members, torch.linspace(0.5, 1.5, 10), torch.linspace(-1, 1, 10))
    RunDir(tmp_path).write_model(combined, "basic_cnn", "ova", 10)
    saved = torch.load(tmp_path / MODEL, weights_only=True)
    assert list(saved) == ["model", "kind", "weights", "num_classes", "state_dict"] and saved["kind"] == "one-vs-all"
    loaded = RunDir(tmp_path).read_model()
    assert isinstance(loaded.network, OneVsAllNetwork) and loaded.weights == "ova"
    assert same_weights(loaded.network, combined)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded.network.eval()(x), combined.eval()(x))


def test_a_model_file_of_before_num_classes_was_saved_still_reads(tmp_path):
    network = build_model("basic_cnn", 10)
    save_torch(tmp_path / MODEL, {"model": "basic_cnn", "weights": "last", "state_dict": network.state_dict()})
    assert same_weights(RunDir(tmp_path).read_model().network, network)


def test_a_model_file_of_another_shape_is_one_line(tmp_path):
    save_torch(tmp_path / MODEL, {"model": "basic_cnn", "weights": "last", "num_classes": 10,
                                  "state_dict": build_model("mini_vgg", 10).state_dict()})
    with pytest.raises(FashionbenchError) as e:
        RunDir(tmp_path).read_model()
    assert one_line(e).startswith(f"{tmp_path / MODEL}: not a model of this fashionbench")


# -- checkpoint, history, summary ------------------------------------------------------

def test_a_checkpoint_and_its_history_round_trip(tmp_path):
    history = [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.6}]
    RunDir(tmp_path).write_checkpoint({"epoch": 2, "weights": torch.arange(3.0)}, history)
    state = RunDir(tmp_path).read_checkpoint()
    assert state["epoch"] == 2 and torch.equal(state["weights"], torch.arange(3.0))
    assert RunDir(tmp_path).read_history() == history and fb.Run(tmp_path).history == history
    assert state_of(tmp_path) is State.INTERRUPTED


def test_a_schema_1_summary_reads_and_says_its_folder_s_kind(tmp_path):
    """A summary as fashionbench wrote them before the schema had a number."""
    (tmp_path / SUMMARY).write_text(json.dumps(
        {"model": "basic_cnn", "test_acc": 0.9, "val_acc": 0.9, "seed": 0, "parameters": 1, "epochs": 2,
         "seconds_per_epoch": 3.0, "device": "cpu", "weights": "ova", "results": {"ova": {}},
         "variant": "one-vs-all, 10 binary"}))
    summary = read_summary(tmp_path)
    assert summary.kind is Kind.ONE_VS_ALL and summary.schema == 2 and summary.val_seconds is None
    assert kind_of(tmp_path) is Kind.ONE_VS_ALL and state_of(tmp_path) is State.COMPLETE
    assert json.loads(json.dumps(summary.to_dict()))["kind"] == "one-vs-all"


def test_every_committed_record_reads(tmp_path):
    """results/ holds records written by earlier versions: each finished folder reads,
    and has a kind."""
    folders = rundir.finished_under(REPO / "results")
    assert folders
    for folder in folders:
        assert read_summary(folder).model and kind_of(folder) in (Kind.RUN, Kind.ENSEMBLE), folder


# -- read once on the way to a report ------------------------------------------------------

def fake_data(tmp_path: Path) -> FashionMNIST:
    generator = torch.Generator().manual_seed(0)

    def images(n):
        return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=generator)
    return FashionMNIST(tmp_path, images(600), torch.arange(600) % 10, images(100), torch.arange(100) % 10, {})


def test_a_report_reads_the_run_s_config_and_summary_once(tmp_path, monkeypatch):
    run = finished_run(tmp_path / "run", "data.val_size=100", "data.test_subset=100", "device=cpu")
    calls = {"yaml": 0, "validate": 0, "summary": 0}

    def counted(module, name, key):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[key] += 1
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)
    counted(rundir_folder, "read_yaml", "yaml")
    counted(config_module, "validate", "validate")
    counted(rundir_folder, "read_summary", "summary")
    report = fb.report(run, data=fake_data(tmp_path), errors=2)
    assert report == run / "report" / "report.html" and report.exists()
    assert calls == {"yaml": 1, "validate": 1, "summary": 1}


# -- nothing else spells the folder's files --------------------------------------------

# The names only rundir/ may spell (in rundir/files.py).
FOLDER_FILES = ("summary.json", "config.yaml", "checkpoint.pt", "model.pt", "metrics.jsonl", "tracking.json",
                "class-0")


def test_only_rundir_spells_a_run_folder_s_files():
    owner_dir = PACKAGE / "rundir"
    spelled = [f"{path.relative_to(PACKAGE)}:{n}: {name}"
               for path in sorted(PACKAGE.rglob("*.py")) if owner_dir not in path.parents
               for n, line in enumerate(path.read_text().splitlines(), 1)
               for name in FOLDER_FILES if name in line]
    assert not spelled, "a run folder's file spelled outside rundir/ (ask rundir):\n" + "\n".join(spelled)
    owner = (owner_dir / "files.py").read_text()
    assert all(name in owner for name in FOLDER_FILES[:-1]) and member_name(0) == "class-0"
