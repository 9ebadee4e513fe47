"""Nothing lost, nothing silent: a diverging run stops, no command overwrites a run
folder, failures of the file system are one line, signals leave a resumable run.
docs/reliability.md lists what these tests hold the code to."""

from __future__ import annotations

import errno
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fashionbench import runs
from fashionbench.cli import main
from fashionbench.errors import FashionbenchError

from conftest import epochs_saved, run_main, wait_until
from test_cli import assert_one_line_error

# A few seconds a run: 4 batches of 100, validation and test on 200 images each.
QUICK = ["--epochs", "1", "--batch-size", "100", "--train-subset", "400", "--set", "data.val_size=200",
         "--set", "data.test_subset=200", "--set", "precision=fp32"]


def train_cli(data_dir, out, name, *args, command="train"):
    return run_main(command, "basic_cnn", *QUICK, "--out", str(out), "--name", name,
                    "--data-dir", str(data_dir), *args)


# -- divergence ------------------------------------------------------------------------

def test_a_diverging_run_stops_at_once_and_writes_no_result(data_dir, tmp_path):
    result = train_cli(data_dir, tmp_path, "nan", "--lr", "1e4", "--epochs", "3")
    assert_one_line_error(result, "diverged", "epoch 1, step", "--lr", status=1)
    assert not (tmp_path / "nan" / "model.pt").exists()
    assert not (tmp_path / "nan" / "summary.json").exists()
    assert "epoch   1/3" not in result.stdout  # stopped inside the first epoch


def test_divergence_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    # Sane through epoch 1; from there SWA's LR glides up to 1e4 and the loss explodes.
    result = train_cli(data_dir, tmp_path, "late", "--epochs", "2", "--set", "swa.start=1",
                       "--set", "swa.lr=1e4", "--set", "schedule.cycle_epochs=1")
    assert_one_line_error(result, "diverged", "epoch 2, step", status=1)
    run = tmp_path / "late"
    assert torch_epoch(run / "checkpoint.pt") == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (run / "model.pt").exists() and not (run / "summary.json").exists()
    assert "fashionbench train --resume" not in result.stderr  # resuming would diverge again


def torch_epoch(path: Path) -> int:
    return runs.load_torch(path)["epoch"]


def test_json_is_strict(tmp_path):
    with pytest.raises(FashionbenchError, match="not a finite number"):
        runs.write_json(tmp_path / "x.json", {"acc": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_ensembles_refuse_a_member_that_is_not_a_finished_finite_run(tiny_run, data_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_run, bad)
    summary = json.loads((bad / "summary.json").read_text())
    (bad / "summary.json").write_text(json.dumps({**summary, "test_acc": float("nan")}))
    result = run_main("ensemble", str(tiny_run), str(bad), "--out", str(tmp_path), "--name", "e",
                     "--data-dir", str(data_dir))
    assert_one_line_error(result, str(bad / "summary.json"), "NaN", status=1)
    assert not (tmp_path / "e").exists()


# -- refusing existing run folders -----------------------------------------------------

def finished_copy(tiny_run: Path, out: Path, name: str) -> tuple[Path, dict]:
    """A copy of a finished run, and the bytes of every file in it (to see none changed)."""
    shutil.copytree(tiny_run, out / name)
    return out / name, {p: p.read_bytes() for p in (out / name).rglob("*") if p.is_file()}


def unchanged(files: dict) -> bool:
    return all(p.read_bytes() == b for p, b in files.items())


def test_specialists_refuse_a_folder_that_is_not_theirs(tiny_run, data_dir, tmp_path):
    existing, files = finished_copy(tiny_run, tmp_path, "taken")
    result = run_main("specialists", str(tiny_run), "--pairs", "1", "--epochs", "1", "--out", str(tmp_path),
                     "--name", "taken", "--data-dir", str(data_dir))
    assert_one_line_error(result, f"{existing} already exists", "--name", status=1)
    assert unchanged(files) and not (existing / "pair-0-6").exists()


def test_ensemble_refuses_an_existing_folder_without_suggesting_resume(tiny_run, data_dir, tmp_path):
    existing, files = finished_copy(tiny_run, tmp_path, "taken")
    result = run_main("ensemble", str(tiny_run), "--out", str(tmp_path), "--name", "taken",
                     "--data-dir", str(data_dir))
    assert_one_line_error(result, f"{existing} already exists", "--name", status=1)
    assert "--resume" not in result.stderr and unchanged(files)


def test_one_vs_all_refuses_an_existing_folder(tiny_run, data_dir, tmp_path):
    existing, files = finished_copy(tiny_run, tmp_path, "taken")
    result = train_cli(data_dir, tmp_path, "taken", command="one-vs-all")
    assert_one_line_error(result, f"{existing} already exists", status=1)
    assert unchanged(files) and not (existing / "class-0").exists()


def test_reproduce_refuses_a_folder_it_did_not_train(tiny_run, tmp_path):
    existing, files = finished_copy(tiny_run, tmp_path / "runs", "basic_cnn-s0")
    (existing / "config.yaml").unlink()
    result = run_main("reproduce", "--models", "basic_cnn", "--seeds", "0", "--budget", "smoke",
                     "--out", str(tmp_path))
    assert_one_line_error(result, str(existing), "not a run", status=1)
    del files[existing / "config.yaml"]
    assert unchanged(files)


# -- the file system -------------------------------------------------------------------

def test_out_pointing_at_a_file_is_one_line(tiny_run, data_dir, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    for args in (["train", "basic_cnn", "--dry-run"], ["train", "basic_cnn", *QUICK, "--data-dir", str(data_dir)],
                 ["table", str(tiny_run)]):
        result = run_main(*args, "--out", str(tmp_path / "file"))
        assert_one_line_error(result, str(tmp_path / "file"), "not a folder", status=1)
    assert (tmp_path / "file").read_text() == "not a folder"


def test_out_where_nothing_may_be_written_is_one_line(data_dir):
    # /sys refuses new folders even to root, as a read-only mount does.
    result = run_main("train", "basic_cnn", *QUICK, "--out", "/sys/fashionbench-runs", "--data-dir", str(data_dir))
    assert_one_line_error(result, "/sys/fashionbench-runs", "cannot write", status=1)


@pytest.mark.parametrize("code, cause", [(errno.EROFS, "read-only file system"),
                                         (errno.ENOSPC, "no space left on device"),
                                         (errno.EACCES, "permission denied")])
def test_write_failures_name_the_path_and_the_cause(tmp_path, monkeypatch, code, cause):
    def fail(*args, **kwargs):
        raise OSError(code, "os message")
    monkeypatch.setattr(runs.os, "replace", fail)
    with pytest.raises(FashionbenchError) as info:
        runs.write_text(tmp_path / "a.txt", "x")
    assert str(info.value) == f"{tmp_path / 'a.txt'}: cannot write ({cause})"
    assert list(tmp_path.iterdir()) == []  # no temp file left behind


def test_a_full_disk_while_checkpointing_is_one_line(data_dir, tmp_path):
    # A file-size limit makes every write past 1 MB fail as a full disk does; the
    # data is read before and config.yaml is small, so the first checkpoint fails.
    limit = ("import resource, signal, sys, runpy; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)); "
             "sys.argv = ['fashionbench'] + sys.argv[1:]; runpy.run_module('fashionbench', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", limit, "train", "mini_vgg", *QUICK, "--out", str(tmp_path),
                             "--name", "full", "--data-dir", str(data_dir), "--set", "swa.enabled=false"],
                            capture_output=True, text=True, timeout=600)
    assert_one_line_error(result, str(tmp_path / "full" / "checkpoint.pt"), "cannot write (file too large)",
                          status=1)
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["config.yaml"]  # no temp files


def test_a_config_that_is_not_text_is_one_line(tmp_path):
    png = tmp_path / "recipe.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    result = run_main("train", "basic_cnn", "--config", str(png), "--dry-run")
    assert_one_line_error(result, str(png), "not a text file", status=1)


# -- signals ---------------------------------------------------------------------------

def test_sigterm_keeps_the_checkpoint_and_says_how_to_resume(data_dir, tmp_path):
    args = ["train", "basic_cnn", *QUICK, "--epochs", "50", "--out", str(tmp_path), "--name", "term",
            "--data-dir", str(data_dir)]
    proc = subprocess.Popen([sys.executable, "-m", "fashionbench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_until(lambda: epochs_saved(tmp_path / "term") >= 1, proc, "the checkpoint of epoch 1")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert f"fashionbench train --resume {tmp_path / 'term'}" in stderr
    assert torch_epoch(tmp_path / "term" / "checkpoint.pt") >= 1
    assert not (tmp_path / "term" / "summary.json").exists()
    assert not [p for p in (tmp_path / "term").iterdir() if p.name.startswith(".")]  # no temp files


# -- ensembles -------------------------------------------------------------------------

def test_ensemble_counts_a_run_once_however_it_is_written(tiny_run, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tiny_run.parent)
    status = main(["ensemble", tiny_run.name, f"./{tiny_run.name}", str(tiny_run), "--out", str(tmp_path),
                   "--name", "e", "--data-dir", str(data_dir)])
    assert status == 0
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["runs"] == [tiny_run.name]
    err = capsys.readouterr().err
    assert "warning: an ensemble of one run" in err


# -- small messages --------------------------------------------------------------------

def test_resuming_a_run_whose_epochs_are_all_trained_says_so(tiny_run, data_dir, tmp_path):
    run, _ = finished_copy(tiny_run, tmp_path, "done")
    (run / "summary.json").unlink()  # killed while evaluating, after its last checkpoint
    (run / "model.pt").unlink()
    result = run_main("train", "--resume", str(run), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "epoch 3 of 2" not in result.stdout
    assert "2 of 2 epochs already trained" in result.stdout
    assert json.loads((run / "summary.json").read_text())["results"] == \
        json.loads((tiny_run / "summary.json").read_text())["results"]
