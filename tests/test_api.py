"""The Python API (fashionbench.api, docs/api.md), called directly: what a notebook or
script does, without the command line."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import fashionbench as fb
from fashionbench import api
from fashionbench.errors import FashionbenchError, UsageError

# A quick run: small slices, fp32 (exact), two epochs with SWA averaging the second.
SMALL = {"data.train_subset": 2000, "data.val_size": 1000, "data.test_subset": 1000, "batch_size": 100,
         "precision": "fp32", "swa.start": 1, "schedule.cycle_epochs": 1}


@pytest.fixture(scope="module")
def api_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("api-runs")
    started = []
    run = fb.train("basic_cnn", epochs=2, seed=0, overrides=SMALL, out=out, name="a", data=data,
                   on_start=started.append)
    assert started == [out / "a"]  # called with the folder before training
    return run


def test_top_level_names_are_the_api_loaded_on_first_use_and_no_module_shares_one():
    """``import fashionbench`` does not import torch; each API name, asked for, is the API's
    own; and no module or package of fashionbench bears an API function's name (the
    commands' modules are fashionbench.tasks.*), so importing every module changes nothing."""
    code = ("import sys, pkgutil, importlib, fashionbench as fb; "
            "print('torch' in sys.modules); "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(fb.__path__, 'fashionbench.') "
            "if m.name not in ('fashionbench.__main__',)]; "
            "from fashionbench import api; "
            "print(all(getattr(fb, n) is getattr(api, n) for n in fb.__all__ if n != '__version__'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]
    assert fb.train is api.train and fb.Run is api.Run and fb.report is api.report
    assert all(callable(getattr(fb, name)) for name in fb.__all__ if name != "__version__")
    top_level = {m.name for m in pkgutil.iter_modules(fb.__path__)}  # what would be fashionbench.NAME
    assert "tasks" in top_level and not top_level & set(fb.__all__), "an API name is also a module's"
    with pytest.raises(AttributeError):
        fb.no_such_name  # noqa: B018


def test_named_options_and_overrides_resolve_like_the_cli():
    cfg = fb.resolve_config("basic_cnn", epochs=3, lr=0.01, train_subset=500,
                            overrides={"swa.start": 0.5, "augment.flip": 0.0})
    assert (cfg.epochs, cfg.optim.lr, cfg.data.train_subset, cfg.swa.start, cfg.augment.flip) == \
        (3, 0.01, 500, 0.5, 0.0)
    as_text = fb.resolve_config("basic_cnn", overrides=["swa.start=0.5", "augment.flip=0"])
    assert (as_text.swa.start, as_text.augment.flip) == (0.5, 0.0)
    # The named option comes first, so an explicit override of the same key wins, as --set does.
    assert fb.resolve_config("basic_cnn", epochs=3, overrides={"epochs": 4}).epochs == 4


def test_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown option.*epoch"):
        fb.resolve_config("basic_cnn", epoch=3)
    with pytest.raises(UsageError, match="unknown model"):
        fb.resolve_config("no_such_net")
    with pytest.raises(UsageError, match="name a MODEL"):
        fb.train()
    with pytest.raises(UsageError, match="unknown config key"):
        fb.train("basic_cnn", overrides={"optim.nope": 1}, out=tmp_path)
    with pytest.raises(FashionbenchError, match="config.yaml"):
        fb.load_run(tmp_path)  # not a run folder
    with pytest.raises(UsageError, match="need --start < --end"):
        fb.lr_find("basic_cnn", start=1.0, end=0.1)
    assert list(tmp_path.iterdir()) == []  # nothing written by any of them


def test_train_returns_the_finished_run(api_run):
    summary = api_run.summary
    assert summary.model == "basic_cnn" and summary.epochs == 2 and summary.weights == "swa"
    assert set(summary.results) == {"swa", "last"} and 0.1 < summary.test_acc <= 1
    assert [row["epoch"] for row in api_run.history] == [1, 2]
    assert api_run.config.data.train_subset == 2000
    logits = api_run.model(torch.zeros(3, 1, 28, 28))
    assert logits.shape == (3, 10)
    assert "basic_cnn" in repr(api_run) and f"{summary.test_acc:.4f}" in repr(api_run)


def test_load_run_and_evaluate_agree_with_the_summary(api_run, data):
    run = fb.load_run(api_run.path)
    assert run.summary.to_dict() == api_run.summary.to_dict()
    val = fb.evaluate(run, "val", data=data)
    assert val["weights"] == "swa"
    assert val["acc"] == pytest.approx(run.summary.results["swa"]["val"]["acc"], abs=1e-6)
    with pytest.raises(UsageError, match="split must be val or test"):
        fb.evaluate(run, "train", data=data)


def test_predictions_and_predict_agree(api_run, data):
    test = fb.predictions(api_run, "test", data=data)
    assert test.probs.shape == (1000, 10) and test.accuracy == pytest.approx(api_run.summary.test_acc, abs=1e-6)
    # predict() on the same test images, given as Fashion-MNIST arrays: the same classes.
    images = list(test.images[:20])
    predicted = fb.predict(api_run, images, top_k=2)
    assert [p.label for p in predicted] == [fb_class(i) for i in test.predicted[:20]]
    assert all(len(p.top_k) == 2 and p.top_k[0][1] >= p.top_k[1][1] for p in predicted)
    assert np.allclose([p.probabilities for p in predicted], test.probs[:20], atol=1e-5)
    with pytest.raises(UsageError, match="top_k must be between 1 and 10"):
        fb.predict(api_run, images, top_k=11)


def fb_class(index: int) -> str:
    from fashionbench.data import CLASSES
    return CLASSES[index]


def test_predict_reads_files_like_the_cli(api_run, data, tmp_path):
    from PIL import Image

    path = tmp_path / "boot.png"
    Image.fromarray(data.test_images[0, 0].numpy()).save(path)
    (from_file,) = fb.predict(api_run, [path])
    (from_array,) = fb.predict(api_run, [data.test_images[0, 0].numpy()])
    assert from_file.source == str(path) and from_file.label == from_array.label


def test_report_ensemble_and_leaderboard(api_run, data, tmp_path):
    html = fb.report(api_run, data=data)
    assert html == api_run.path / "report" / "report.html" and html.exists()
    second = fb.train("basic_cnn", epochs=2, seed=1, overrides=SMALL, out=api_run.path.parent, name="b",
                      data=data)
    combined = fb.ensemble([api_run, second.path], "mean", out=tmp_path, name="ens", data=data)
    assert combined.summary.kind == "ensemble" and (tmp_path / "ens" / "report" / "report.html").exists()
    rows = fb.leaderboard([api_run.path.parent], out=tmp_path / "table")
    (row,) = [r for r in rows if r.model == "basic_cnn"]
    assert sorted(row.seeds) == [0, 1]
    assert (tmp_path / "table" / "table.md").exists()


def test_resume_refuses_a_finished_run(api_run):
    with pytest.raises(FashionbenchError, match="already complete"):
        fb.resume(api_run)


def test_lr_find_writes_its_plot(data, tmp_path):
    found = fb.lr_find("basic_cnn", steps=20, start=1e-4, end=1.0, overrides=SMALL, out=tmp_path, data=data)
    assert found.figure.exists() and found.table.exists()
    assert len(found.result.lrs) <= 20 and found.suggestion > 0
