"""Results tables from synthetic run folders: grouping, mean, std, counts, order;
what a table leaves out (unreadable runs, binary members, repeated seeds) and says so."""

import json

import pytest

from fashionbench.config import dump_config, load_config, parse_override
from fashionbench.errors import FashionbenchError
from fashionbench.rundir import read_summary
from fashionbench.tasks.leaderboard import collect, find_runs, mean_std, to_csv, to_markdown

from conftest import run_main


def fake_run(root, name, model, seed, acc, last_acc, seconds=10.0, test_size=10_000, changes=(),
             **extra):
    run = root / name
    run.mkdir(parents=True)
    cfg = load_config(model, overrides=[parse_override(c) for c in (f"seed={seed}", *changes)])
    (run / "config.yaml").write_text(dump_config(cfg))
    (run / "summary.json").write_text(json.dumps({
        "model": model, "seed": seed, "test_acc": acc, "parameters": 1234, "epochs": 30,
        "val_acc": None if acc is None else acc + 0.01,
        "train_size": 55_000,
        "results": {"last": {"test": {"acc": last_acc}}}, "seconds_per_epoch": seconds,
        "device": "cpu (test)", "test_size": test_size, **extra}))
    return run


def binary_run(root, name, positive, negative=None, seed=0):
    """A one-vs-all member (negative None) or a specialist's pair run, as training writes them."""
    changes = [f"data.positive_class={positive}"] + ([] if negative is None else
                                                     [f"data.negative_class={negative}"])
    return fake_run(root, name, "basic_cnn", seed, 0.99, 0.99, test_size=2000 if negative else 10_000,
                    changes=changes, variant=f"binary: class {positive} against {negative}")


def warnings_of(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


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
    assert ("| basic_cnn | recipe | 94.20 ± 0.20 | 93.20 ± 0.20 | 95.20 ± 0.20 | — | — | 0,1,2 | 30 | 1,234 | "
            "20.0 | cpu (test) | 94.21 |") in markdown  # — and —: no temperature scaling, no robustness record
    assert "Smoke" not in markdown
    lines = to_csv(rows).splitlines()
    assert lines[2].startswith("basic_cnn,recipe,94.2000,0.2000,93.2000,95.2000,0 1 2,30,1234,20.00")


def robustness_record(run, mca, complete=True, version=None):
    from fashionbench.corruptions import VERSION
    (run / "robustness.json").write_text(json.dumps({"corruptions_version": version or VERSION, "mca": mca,
                                                     "complete": complete, "clean_acc": 0.94}))


def test_the_corruption_accuracy_column_shows_complete_robustness_records(tmp_path, capsys):
    """The mCA of the seeds with a complete record of this corruptions' version; a
    partial or older record is no figure; "—" where no seed has one; a damaged record
    is a warning, and the row stays."""
    runs = [fake_run(tmp_path, f"a{seed}", "basic_cnn", seed, 0.94, 0.93) for seed in range(3)]
    runs.append(fake_run(tmp_path, "b0", "mini_vgg", 0, 0.95, 0.949))
    robustness_record(runs[0], 0.70)
    robustness_record(runs[1], 0.72)
    robustness_record(runs[2], 0.10, complete=False)
    (runs[3] / "robustness.json").write_text("{not json")
    rows = {r.model: r for r in collect(runs)}
    assert rows["basic_cnn"].corruption_acc == pytest.approx([70.0, 72.0])
    assert rows["mini_vgg"].corruption_acc == []
    markdown = to_markdown(list(rows.values()), "t")
    assert "| 71.00 ± 1.41 (2 of 3 seeds) |" in markdown and "| — |" in markdown and "mCA" in markdown
    csv_rows = {line.split(",")[0]: line for line in to_csv(list(rows.values())).splitlines()[1:]}
    assert csv_rows["basic_cnn"].endswith(",71.0000") and csv_rows["mini_vgg"].endswith(",val,,,")  # no ECE either
    assert any("b0" in w and "robustness.json" in w for w in warnings_of(capsys))
    robustness_record(runs[2], 0.74, version=-1)  # another version's corruptions: not comparable
    assert {r.model: r for r in collect(runs)}["basic_cnn"].corruption_acc == pytest.approx([70.0, 72.0])


def test_validation_only_runs_rank_after_the_others_by_validation(tmp_path):
    """A sweep's trials (eval.test false) have no test figure: shown with '-', after the
    runs that have one, best validation first, and the smoke-run warning stays off."""
    def trial(name, val, lr):
        return fake_run(tmp_path, name, "basic_cnn", 0, None, None, test_size=0, changes=[f"optim.lr={lr}"],
                        val_acc=val, results={"swa": {"val": {"acc": val}}}, schema=2, kind="run", weights="swa")
    runs = [trial("t0", 0.90, 0.001), trial("t1", 0.93, 0.002),
            fake_run(tmp_path, "r", "mini_vgg", 0, 0.80, 0.80)]
    rows = collect(runs)
    assert [(r.model, r.val_acc) for r in rows] == [("mini_vgg", [81.0]), ("basic_cnn", [93.0]),
                                                    ("basic_cnn", [90.0])]
    assert rows[1].test_acc == [] and mean_std(rows[1].test_acc) == "-"
    markdown = to_markdown(rows, "t")
    assert "validation-only runs" in markdown and "Smoke" not in markdown
    assert to_csv(rows).splitlines()[2].split(",")[2:6] == ["", "", "", "93.0000"]


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


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_summary_with_a_non_finite_value_is_refused(tmp_path, constant):
    """Python's json reads NaN and Infinity (and 1e999 as inf); a diverged run wrote them."""
    run = fake_run(tmp_path, "x", "basic_cnn", 0, 0.9, 0.9)
    text = (run / "summary.json").read_text()
    (run / "summary.json").write_text(text.replace("{", '{"val_loss": ' + constant + ", ", 1))
    with pytest.raises(FashionbenchError) as e:
        read_summary(run)
    assert str(e.value) == f"{run}/summary.json: not a finished run (non-finite value {constant})"


@pytest.mark.parametrize("text, why", [
    ('{"model": "basic_cnn", "seed": 0}', "no test_acc, results"),
    ("[1, 2]", "not a JSON object"),
])
def test_a_summary_without_the_fields_of_a_finished_run_is_refused(tmp_path, text, why):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "summary.json").write_text(text)
    with pytest.raises(FashionbenchError, match=f"x/summary.json: not a finished run \\({why}"):
        read_summary(tmp_path / "x")


def break_runs(root):
    """Four unreadable runs beside nothing else; what each one's warning says."""
    bad_yaml = fake_run(root, "bad-yaml", "basic_cnn", 1, 0.9, 0.9)
    (bad_yaml / "config.yaml").write_text("::: not yaml")
    unknown_key = fake_run(root, "unknown-key", "basic_cnn", 2, 0.9, 0.9)
    with open(unknown_key / "config.yaml", "a") as f:
        f.write("no_such_key: 3\n")
    diverged = fake_run(root, "diverged", "basic_cnn", 3, 0.9, 0.9)
    (diverged / "summary.json").write_text(
        (diverged / "summary.json").read_text().replace('"test_acc": 0.9', '"test_acc": NaN'))
    truncated = fake_run(root, "truncated", "basic_cnn", 4, 0.9, 0.9)
    (truncated / "summary.json").write_text('{"model": "basic_cnn", "te')
    return {bad_yaml: "unknown config key", unknown_key: "unknown config key 'no_such_key'",
            diverged: "non-finite value NaN", truncated: "not valid JSON"}


def test_unreadable_runs_are_skipped_each_with_one_warning(tmp_path, capsys):
    good = fake_run(tmp_path, "good", "basic_cnn", 0, 0.94, 0.93)
    broken = break_runs(tmp_path)
    rows = collect(find_runs([tmp_path]))
    assert [(r.model, r.seeds) for r in rows] == [("basic_cnn", [0])]
    lines = warnings_of(capsys)
    assert len(lines) == len(broken), lines
    for run, why in broken.items():
        [line] = [line for line in lines if str(run) in line]
        assert line.startswith(f"fashionbench: warning: {run}") and line.endswith("; skipped")
        assert why in line
    assert not any(str(good) + ":" in line for line in lines)


def test_a_table_of_only_unreadable_runs_is_an_error(tmp_path, capsys):
    break_runs(tmp_path)
    with pytest.raises(FashionbenchError, match="none of the 4 runs can be tabulated"):
        collect(find_runs([tmp_path]))
    assert len(warnings_of(capsys)) == 4


def test_table_command_skips_a_corrupt_run_and_still_writes_the_table(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, "good", "basic_cnn", 0, 0.94, 0.93)
    bad = fake_run(root, "bad", "mini_vgg", 0, 0.95, 0.95)
    (bad / "config.yaml").write_text("::: not yaml")
    result = run_main("table", str(root), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"fashionbench: warning: {bad}") and line.endswith("; skipped")
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| basic_cnn | recipe |" in table and "mini_vgg |" not in table.split("reference %")[1]


def test_binary_members_found_under_a_folder_are_left_out_silently(tmp_path, capsys):
    ten = fake_run(tmp_path, "basic_cnn-s0", "basic_cnn", 0, 0.94, 0.93)
    ova = fake_run(tmp_path, "ova", "basic_cnn", 0, 0.93, 0.93, variant="one-vs-all, 10 binary")
    ova.joinpath("summary.json").write_text(
        ova.joinpath("summary.json").read_text().replace('"last"', '"ova"'))
    for c in range(3):
        binary_run(ova, f"class-{c}", c)
    specialists = tmp_path / "specialists"
    specialists.mkdir()
    (specialists / "summary.json").write_text(json.dumps({
        "model": "basic_cnn", "variant": "generalist + 1 specialists", "test_acc": 0.945,
        "results": {"specialists": {"test": {"acc": 0.945}}}, "seed": 0, "parameters": 2468,
        "epochs": 30, "seconds_per_epoch": 20.0, "device": "cpu (test)", "test_size": 10_000}))
    binary_run(specialists, "pair-0-6", 0, 6)
    found = find_runs([tmp_path])
    assert found == [ten, ova, specialists]
    rows = collect(found)
    assert sorted(r.model for r in rows) == ["basic_cnn", "basic_cnn (generalist + 1 specialists)",
                                             "basic_cnn (one-vs-all, 10 binary)"]
    assert warnings_of(capsys) == []


def test_specialists_pair_runs_do_not_make_a_table_smoke(tmp_path, capsys):
    fake_run(tmp_path, "basic_cnn-s0", "basic_cnn", 0, 0.94, 0.93)
    binary_run(tmp_path / "specialists", "pair-0-6", 0, 6)  # 2,000 test images: a subset
    rows = collect(find_runs([tmp_path]))
    assert [r.model for r in rows] == ["basic_cnn"]
    assert "Smoke" not in to_markdown(rows, "t")
    assert warnings_of(capsys) == []


def test_a_binary_run_named_directly_is_skipped_with_a_warning(tmp_path, capsys):
    ten = fake_run(tmp_path, "basic_cnn-s0", "basic_cnn", 0, 0.94, 0.93)
    member = binary_run(tmp_path / "ova", "class-3", 3)
    rows = collect(find_runs([ten, member]))
    assert [(r.model, r.seeds) for r in rows] == [("basic_cnn", [0])]
    [line] = warnings_of(capsys)
    assert line.startswith(f"fashionbench: warning: {member}: ") and line.endswith("; skipped")
    assert "binary" in line


def test_a_seed_run_twice_counts_once_the_first_by_path_kept(tmp_path, capsys):
    a = fake_run(tmp_path, "a", "basic_cnn", 0, 0.940, 0.930)
    b = fake_run(tmp_path, "b", "basic_cnn", 0, 0.960, 0.950)
    c = fake_run(tmp_path, "c", "basic_cnn", 1, 0.942, 0.932)
    rows = collect([c, b, a])  # the order given does not choose
    assert [(r.seeds, r.test_acc) for r in rows] == [([1, 0], [pytest.approx(94.2), pytest.approx(94.0)])]
    [line] = warnings_of(capsys)
    assert line.startswith(f"fashionbench: warning: {b}: ") and line.endswith("; skipped")
    assert "seed 0 again in basic_cnn (recipe)" in line and f"keeps {a}" in line
