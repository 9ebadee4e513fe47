"""Results tables from synthetic run folders: grouping, mean, std, counts, order."""

import json

import pytest

from fashionbench.config import dump_config, load_config, parse_override
from fashionbench.errors import FashionbenchError
from fashionbench.leaderboard import collect, find_runs, mean_std, to_csv, to_markdown


def fake_run(root, name, model, seed, acc, last_acc, seconds=10.0, test_size=10_000, changes=()):
    run = root / name
    run.mkdir()
    cfg = load_config(model, overrides=[parse_override(c) for c in (f"seed={seed}", *changes)])
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "summary.json").write_text(json.dumps({
        "model": model, "seed": seed, "test_acc": acc, "parameters": 1234, "epochs": 30,
        "train_size": 55_000,
        "results": {"last": {"test": {"acc": last_acc}}}, "seconds_per_epoch": seconds,
        "device": "cpu (test)", "test_size": test_size}))
    return run


def test_rows_group_by_model_with_mean_std_and_best_first(tmp_path):
    runs = [fake_run(tmp_path, "a0", "basic_cnn", 0, 0.940, 0.930, seconds=10),
            fake_run(tmp_path, "a1", "basic_cnn", 1, 0.942, 0.932, seconds=20),
            fake_run(tmp_path, "a2", "basic_cnn", 2, 0.944, 0.934, seconds=30),
            fake_run(tmp_path, "b0", "mini_vgg", 0, 0.950, 0.949)]
    rows = collect(runs)
    assert [r.model for r in rows] == ["mini_vgg", "basic_cnn"]
    cnn = rows[1]
    assert cnn.seeds == [0, 1, 2] and cnn.seconds_per_epoch == pytest.approx(20)
    assert mean_std(cnn.test_acc) == "94.20 ± 0.20"  # sample std of 94.0, 94.2, 94.4
    assert mean_std(rows[0].test_acc) == "95.00"       # one seed: no spread to show
    markdown = to_markdown(rows, "t")
    assert ("| basic_cnn | recipe | 94.20 ± 0.20 | 93.20 ± 0.20 | 0,1,2 | 30 | 1,234 | 20.0 "
            "| cpu (test) | 94.21 |") in markdown
    assert "Smoke" not in markdown
    lines = to_csv(rows).splitlines()
    assert lines[2].startswith("basic_cnn,recipe,94.2000,0.2000,93.2000,0 1 2,30,1234,20.00")


def test_only_seeds_of_one_configuration_are_averaged(tmp_path):
    runs = [fake_run(tmp_path, "a0", "basic_cnn", 0, 0.940, 0.930),
            fake_run(tmp_path, "a1", "basic_cnn", 1, 0.942, 0.932, changes=["device=cpu"]),
            fake_run(tmp_path, "b0", "basic_cnn", 0, 0.900, 0.900, changes=["optim.lr=0.01"]),
            fake_run(tmp_path, "b1", "basic_cnn", 1, 0.910, 0.900, changes=["optim.lr=0.01"])]
    rows = collect(runs)
    assert [(r.recipe, r.seeds) for r in rows][0] == ("recipe", [0, 1])  # device is not the recipe
    assert rows[1].recipe.startswith("custom ") and rows[1].seeds == [0, 1]


def test_runs_are_found_under_a_root_once(tmp_path):
    (tmp_path / "x").mkdir()
    a = fake_run(tmp_path / "x", "a", "basic_cnn", 0, 0.9, 0.9)
    b = fake_run(tmp_path, "b", "basic_cnn", 1, 0.9, 0.9)
    (tmp_path / "unfinished").mkdir()
    assert find_runs([tmp_path, a]) == [b, a]


def test_subset_runs_are_flagged_as_smoke(tmp_path):
    rows = collect([fake_run(tmp_path, "s", "basic_cnn", 0, 0.5, 0.5, test_size=200)])
    assert "Smoke runs" in to_markdown(rows, "t")


def test_unfinished_run_is_a_clear_error(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(FashionbenchError, match="no summary.json"):
        collect([tmp_path / "r"])
