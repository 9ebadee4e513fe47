"""Published figures are held to their committed records: every figure of a table row
that names a record folder is recomputed here from that folder's files, and a figure
typed differently fails, named with where it stands.

README.md's generated blocks (results table, ensemble, speedrun table) are compared with
what `python -m fashionbench.published` writes from results/; docs/benchmarks.md's
speedrun rows, time-to-accuracy tables (and their headline ratios) and concurrency table
are recomputed here from theirs."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

from fashionbench import beyond_accuracy, protocol_page, published
from fashionbench.tasks.leaderboard import mean_std

from conftest import run_cli

ROOT = Path(__file__).parents[1]


def rows_naming(doc: str, needle: str) -> list[tuple[str, str]]:
    """(where, line) of each table row of ``doc`` that names ``needle``."""
    lines = (ROOT / doc).read_text().splitlines()
    return [(f"{doc}:{n}", line) for n, line in enumerate(lines, 1) if line.startswith("|") and needle in line]


def speedrun_figures(folder: Path) -> dict[str, str]:
    """What a speedrun row shows, recomputed from its record: test accuracy (mean ± sample
    std over seeds, %), the median training time and its range, each seed's test %."""
    record = json.loads((folder / "speedrun.json").read_text())
    # Each seed's figure from its own run's summary.json, the record under the record.
    accs = [json.loads((folder / Path(s["run"]).name / "summary.json").read_text())["test_acc"] * 100
            for s in record["seeds"]]
    seconds = [s["seconds"] for s in record["seeds"]]
    mean, std = statistics.mean(accs), statistics.stdev(accs)
    median = statistics.median(seconds)
    return {"accuracy": f"**{mean:.2f} ± {std:.2f}**",
            "time, README": f"{median:.0f} s ({min(seconds):.0f}-{max(seconds):.0f})",
            "time, benchmarks.md": f"{median:.1f} ({min(seconds):.1f}-{max(seconds):.1f})",
            "per seed": ", ".join(f"{a:.2f}" for a in accs)}


SPEEDRUNS = sorted((ROOT / "results" / "speedrun").glob("*/speedrun.json"))


@pytest.mark.parametrize("record", SPEEDRUNS, ids=[p.parent.name for p in SPEEDRUNS])
def test_speedrun_rows_are_their_records(record):
    folder = record.parent
    figures = speedrun_figures(folder)
    needle = f"results/speedrun/{folder.name}/"  # the slash: epochs-17 is not epochs-17-epyc
    checks = {"README.md": ("accuracy", "time, README"),
              "docs/benchmarks.md": ("accuracy", "time, benchmarks.md", "per seed")}
    for doc, names in checks.items():
        rows = rows_naming(doc, needle)
        assert rows, f"{doc} has no row naming {needle}"
        for where, line in rows:
            for name in names:
                assert figures[name] in line, f"{where}: {name} should read {figures[name]!r} (from {needle})"


def test_the_concurrency_table_is_its_record():
    record = json.loads((ROOT / "results" / "benchmarks" / "concurrency" / "concurrency.json").read_text())
    table = {(row["policy"], row["processes"]): row for row in record["table"]}
    lines = (ROOT / "docs" / "benchmarks.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| trainings at once"))
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
        n = int(cells[0])
        before, now = table[("torch-default", n)], table[("shared", n)]
        expected = [str(n), f"{before['share_median']:.2f} ({before['share_min']:.2f}-{before['share_max']:.2f})",
                    f"{now['share_median']:.2f} ({now['share_min']:.2f}-{now['share_max']:.2f})", f"{1 / n:.2f}",
                    f"{before['together_median']:.2f}", f"{now['together_median']:.2f}"]
        assert cells == expected, f"docs/benchmarks.md concurrency row for {n} at once should read {expected}"
    assert f"{record['alone_images_per_s']:,.0f} images/s" in "\n".join(lines)


@pytest.mark.parametrize("document", list(published.documents()))
def test_every_page_is_written_from_its_records(document):
    """The generated blocks of README.md (results table, ensemble, speedrun table, ...) and
    of the calibration and robustness page are what `python -m fashionbench.published`
    writes from results/ now."""
    text = (ROOT / document).read_text()
    rewritten, changed = published.rewrite(text, ROOT, document)
    assert not changed, f"{document}: {changed} differ from the records; run python -m fashionbench.published"


def readme_blocks(monkeypatch, blocks: dict) -> None:
    """Only README.md's ``blocks`` are written: a test's root holds no other page."""
    monkeypatch.setattr(published, "documents", lambda: {published.DOCUMENT: blocks})


def copy_records(root: Path) -> Path:
    """A repository root in ``root`` with README.md and the speedrun records, to edit."""
    shutil.copy(ROOT / "README.md", root / "README.md")
    shutil.copytree(ROOT / "results" / "speedrun", root / "results" / "speedrun",
                    ignore=shutil.ignore_patterns("*.pt"))
    return root


def test_an_edited_figure_or_record_is_caught_and_rewritten(tmp_path, monkeypatch, capsys):
    readme_blocks(monkeypatch, {"speedrun-table": published.speedrun_table})
    root = copy_records(tmp_path)
    assert published.main(["--check", "--root", str(root)]) == 0
    # A figure typed over: the check names the block; the rewrite puts the record's back.
    readme = root / "README.md"
    good = readme.read_text()
    readme.write_text(good.replace("**94.24 ± 0.11**", "**94.34 ± 0.11**", 1))
    assert published.main(["--check", "--root", str(root)]) == 1
    assert "speedrun-table differ from the records" in capsys.readouterr().err
    assert published.main(["--root", str(root)]) == 0 and readme.read_text() == good
    # A record that changes: the page follows it.
    summary = root / "results" / "speedrun" / "epochs-17" / "seed-0" / "summary.json"
    record = json.loads(summary.read_text())
    record["test_acc"] += 0.01
    summary.write_text(json.dumps(record))
    assert published.main(["--check", "--root", str(root)]) == 1
    published.main(["--root", str(root)])
    assert "**94.24 ± 0.11**" not in readme.read_text()


# The machine a hand-made timing record names.
MACHINE = {"cpu": "AMD EPYC", "cpu_cores": 2, "cpu_bf16": "avx512_bf16", "gpu": None}


def page_with(root: Path, where: str, record: dict) -> str:
    """README.md as ``python -m fashionbench.published`` writes it once ``record`` is at ``where``."""
    path = root / where
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    assert published.main(["--root", str(root)]) == 0
    return (root / "README.md").read_text()


def test_the_make_run_sentence_is_the_timing_record_s_median_and_range(tmp_path, monkeypatch):
    """The first command's time: the median and range of the record's runs (set-up
    included), the machine, and the accuracy range; "not yet run" before a record."""
    readme_blocks(monkeypatch, {"make-run": published.make_run_sentence})
    root = copy_records(tmp_path)
    assert "not yet run" in published.make_run_sentence(root)
    runs = [{"setup_seconds": 150.0, "run_seconds": run, "total_seconds": 150.0 + run, "epochs": 11,
             "train_seconds": 270.0, "test_acc": acc} for run, acc in ((300.0, 0.9419), (330.0, 0.9402),
                                                                       (312.0, 0.9411))]
    record = {"runs": runs, "total_seconds": {"median": 462.0, "min": 450.0, "max": 480.0},
              "setup_seconds": {"median": 150.0, "min": 150.0, "max": 150.0},
              "test_acc": {"median": 0.9411, "min": 0.9402, "max": 0.9419},
              **MACHINE}
    text = page_with(root, published.MAKE_RUN, record)
    assert ("`make run` took a median **7.7 minutes** (7.5-8.0 over 3 runs, one after another), set-up "
            "included (a median 150 s of it), on 2 cores of AMD EPYC (AVX512_BF16); its test accuracy was "
            "94.02-94.19%") in text


def test_the_time_to_accuracy_sentence_is_the_repeats_median_and_range(tmp_path, monkeypatch):
    """Time to 92%: each pipeline's median and range over the record's repeats, the speedrun's
    fastest cycle, and the three ratios that split the gain between the engine and the recipe."""
    readme_blocks(monkeypatch, {"time-to-accuracy": published.time_to_accuracy_sentence})
    root = copy_records(tmp_path)
    assert "not yet run" in published.time_to_accuracy_sentence(root)

    def spread(median, low, high):
        return {"median": median, "min": low, "max": high, "n": 3}

    engine = published.ENGINE
    record = {"repeats": 3, **MACHINE,
              "summary": {"seconds_to": {"speedrun 2 epochs": {"92": spread(50, 48, 55)},
                                         "speedrun 17 epochs": {"92": spread(80, 78, 90)},
                                         engine: {"92": spread(250, 240, 260)},
                                         "conventional": {"92": spread(500, 480, 520)}},
                          "ratios": {"conventional/speedrun 2 epochs to 92%": spread(10.0, 9.2, 10.5),
                                     f"conventional/{engine} to 92%": spread(2.0, 1.9, 2.1),
                                     f"{engine}/speedrun 2 epochs to 92%": spread(5.0, 4.8, 5.2)}}}
    text = page_with(root, published.TIME_TO_ACCURACY, record)
    assert ("To 92% validation accuracy, median (range) over 3 repeats on 2 cores of AMD EPYC (AVX512_BF16), "
            "the pipelines interleaved an epoch each: the conventional pipeline 500 s (480-520), BasicCNN with "
            "the same settings through our engine 250 s (240-260), speedrun 2 epochs 50 s (48-55). The speedrun "
            "is **10.0x** (9.2-10.5) sooner than the conventional pipeline: the engine alone (same network, "
            "settings and evaluation) gives **2.0x** (1.9-2.1), the speedrun recipe on the engine (its network, "
            "bf16, schedule, augmentation and flip TTA together) **5.0x** (4.8-5.2)") in text
    # docs/benchmarks.md's table of the same record: a threshold reached in fewer repeats says so.
    record["summary"]["seconds_to"]["conventional"]["93"] = {"median": 700, "min": 690, "max": 710, "n": 2}
    for name in ("speedrun 2 epochs", "speedrun 17 epochs", engine):
        record["summary"]["seconds_to"][name]["93"] = None
    (root / published.TIME_TO_ACCURACY).write_text(json.dumps(record))
    table = published.time_to_accuracy_table(root)
    assert table.startswith("3 repeats on 2 cores of AMD EPYC (AVX512_BF16), seconds of training")
    assert "| conventional | 500 (480-520) | 700 (690-710, 2 of 3) |" in table
    assert "| speedrun 2 epochs | 50 (48-55) | never |" in table
    assert f"| conventional/{engine} to 92% | **2.0x** | 1.9-2.1x | 3 |" in table


def test_a_page_without_its_block_is_a_one_line_error(tmp_path, capsys):
    root = copy_records(tmp_path)
    (root / "README.md").write_text("# no blocks\n")
    assert published.main(["--check", "--root", str(root)]) == 2
    assert "has no generated block 'results-table'" in capsys.readouterr().err


def test_the_robustness_tables_and_ranking_are_their_records(tmp_path):
    """The calibration and robustness page: each model's row from its complete records (a
    partial one is left out), per corruption the mean of its records, and the ranking."""
    for folder in ("results/table/runs/mini_vgg-s0", "results/table/runs/mini_vgg-s1",
                   "results/benchmarks/make_run/run/seed-0"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.pt"))
    records = {folder: json.loads((tmp_path / folder / "robustness.json").read_text())
               for folder in ("results/table/runs/mini_vgg-s0", "results/table/runs/mini_vgg-s1",
                              "results/benchmarks/make_run/run/seed-0")}
    mini_vgg = [100 * records[f"results/table/runs/mini_vgg-s{s}"]["mca"] for s in (0, 1)]
    table = beyond_accuracy.robustness_table(tmp_path)
    clean = ", ".join(f"{100 * records[f]['clean_acc']:.2f}" for f in list(records)[:2])
    assert (f"| MiniVGG | 0, 1 | {clean} | "
            f"{mini_vgg[0]:.2f}, {mini_vgg[1]:.2f} (**{statistics.fmean(mini_vgg):.2f} ± "
            f"{statistics.stdev(mini_vgg):.2f}**) |") in table
    assert "| BasicCNN |  | not yet measured |" in table
    # A partial record (some corruptions only) is not a model's mCA.
    partial = tmp_path / "results/table/runs/mini_vgg-s1/robustness.json"
    partial.write_text(json.dumps({**records["results/table/runs/mini_vgg-s1"], "complete": False}))
    table = beyond_accuracy.robustness_table(tmp_path)
    assert "| MiniVGG | 0 | " in table and "| results/table/runs/mini_vgg-s0 |" in table
    speedrun = 100 * records["results/benchmarks/make_run/run/seed-0"]["mca"]
    (first, a), (second, b) = sorted([("MiniVGG", mini_vgg[0]), ("speedrun_net, `make run`", speedrun)],
                                     key=lambda item: -item[1])
    assert beyond_accuracy.most_robust(tmp_path).endswith(f"{first} leads {second} by **{a - b:.2f} points**.")
    corruptions = beyond_accuracy.corruption_table(tmp_path)
    assert corruptions.startswith("| corruption | MiniVGG | speedrun_net, `make run` |")
    fog = records["results/table/runs/mini_vgg-s0"]["corruption_acc"]["fog"]
    assert f"| fog | {100 * fog:.1f} |" in corruptions
    # An ensemble ahead of them: its lead, then the single networks' own.
    ensemble = "results/table/ensembles/basic_cnn-x3"
    shutil.copytree(ROOT / ensemble, tmp_path / ensemble, ignore=shutil.ignore_patterns("report"))
    mca = 100 * json.loads((tmp_path / ensemble / "robustness.json").read_text())["mca"]
    assert mca > a, "the test expects the committed ensemble to lead"
    assert beyond_accuracy.most_robust(tmp_path).endswith(
        f"BasicCNN x3 ensemble leads {first} by **{mca - a:.2f} points**. "
        f"Of single networks, {first} leads {second} by **{a - b:.2f} points**.")


def test_git_keeps_the_records_and_leaves_weights_out():
    """What a record holds is committed wherever results/ keeps runs (results/table/runs,
    results/gpu/runs); weights, checkpoints and reports never are."""
    kept = [f"results/{where}/runs/m-s0/{name}" for where in ("table", "gpu", "reference_protocol")
            for name in ("config.yaml", "metrics.jsonl", "summary.json")]
    left_out = ["results/table/runs/m-s0/model.pt", "results/table/runs/m-s0/checkpoint.pt",
                "results/table/runs/m-s0/report/index.html", "runs/basic_cnn-s0/summary.json"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *kept, *left_out], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert ignored == left_out


@pytest.mark.slow  # trains smoke runs: the rows that have no committed record yet, written from some
def test_the_reference_protocol_rows_and_the_ensemble_are_written_from_their_records(data_dir, tmp_path,
                                                                                     monkeypatch):
    """Rows with no committed record yet (the reference protocol's, the ensemble's) are
    written from records when they come: here smoke runs, laid out as the real ones."""
    readme_blocks(monkeypatch, published.BLOCKS)
    root = copy_records(tmp_path)
    common = ["--budget", "smoke", "--data-dir", str(data_dir)]
    for args in (["--protocol", "reference", "--models", "mini_vgg", "--seeds", "0,1",
                  "--out", str(root / "results" / "reference_protocol")],
                 ["--models", "basic_cnn", "--seeds", "0,1,2", "--out", str(root / "results" / "table")]):
        done = run_cli("reproduce", *args, *common)
        assert done.returncode == 0, done.stderr[-2000:]
    runs = root / published.TABLE_RUNS
    done = run_cli("ensemble", *(str(runs / f"basic_cnn-s{s}") for s in (0, 1, 2)), "--out",
                   str(root / "results" / "table" / "ensembles"), "--name", "basic_cnn-x3", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    assert published.main(["--root", str(root)]) == 0
    readme = (root / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `mini_vgg`, the reference's own protocol"))
    assert "best epoch **[selected on test]**;" in row and "last epoch" in row and \
        "[results/reference_protocol/runs/mini_vgg-s{0,1}]" in row, row
    # Smoke runs are not the recipe: BasicCNN's own row stays "not yet run"; the ensemble is written.
    assert "| `basic_cnn` | 732,114 | 52 | 94.21 | not yet run |" in readme
    ensemble = json.loads((root / published.ENSEMBLE / "summary.json").read_text())
    assert f"reach **{100 * ensemble['test_acc']:.2f}%** test" in readme
    protocol_page_is_written_from_its_records(root)


def protocol_page_is_written_from_its_records(root: Path) -> None:
    """reference_protocol.md's blocks from the smoke protocol runs, laid out as the real
    records are; the two checks' folders hold copies of them (the same kind of run)."""
    assert protocol_page.keras_init(root).startswith("Keras' initialisation: not yet run (`python experiments/")
    assert protocol_page.all_images(root).startswith("All 60,000 training images: not yet run (`fashionbench train")
    protocol = root / protocol_page.PROTOCOL_RUNS
    summaries = [json.loads((protocol / f"mini_vgg-s{s}" / "summary.json").read_text()) for s in (0, 1)]
    best = [100 * s["test_acc"] for s in summaries]
    last = [100 * s["results"]["last"]["test"]["acc"] for s in summaries]
    table = protocol_page.protocol_table(root)
    row = next(line for line in table.splitlines() if line.startswith("| `mini_vgg` |"))
    assert f"| {mean_std(best)} ({min(best):.2f} to {max(best):.2f}) | {mean_std(last)} |" in row, row
    assert f"{summaries[0]['best_epoch']} (0), {summaries[1]['best_epoch']} (1) of" in row, row
    assert "[results/reference_protocol/runs/mini_vgg-s{0,1}]" in row and "| not yet run |" in row, row
    gaps = protocol_page.gaps(root)
    assert gaps.startswith("- `mini_vgg`, published 94.59: no epoch of any of its 2 seeds reaches it: "
                           f"{94.59 - max(best):.2f} points above"), gaps
    shutil.copytree(protocol, root / protocol_page.KERAS_RUNS)
    keras = protocol_page.keras_init(root)
    assert "| `mini_vgg` |" in keras and "| +0.00 points |" in keras, keras
    shutil.copytree(protocol / "mini_vgg-s0", root / protocol_page.ALL_IMAGES)
    sentence = protocol_page.all_images(root)
    assert sentence.startswith(f"`mini_vgg` on {summaries[0]['train_size']:,} training images, seed 0: "
                               f"{last[0]:.2f}% test at its last epoch"), sentence
    assert "(+0.00 points)" in sentence, sentence


# docs/benchmarks.md's time-to-accuracy tables: the record each follows, and which of its
# pipelines each row shows.
TIME_TO_ACCURACY = {
    "speedrun_benchmark.json": {"speedrun (17 epochs)": "speedrun", "basic_cnn recipe": "basic_cnn recipe",
                                "conventional": "conventional"},
    "speedrun-short/speedrun_benchmark.json": {f"speedrun, {e} epochs": f"speedrun {e} epochs" for e in (2, 3, 4)}
    | {"conventional": "conventional"},
    "speedrun-2epoch-bf16/speedrun_benchmark.json": {"speedrun, 2 epochs": "speedrun", "conventional": "conventional"},
}


@pytest.mark.parametrize("record", TIME_TO_ACCURACY, ids=list(TIME_TO_ACCURACY))
def test_the_time_to_accuracy_tables_are_their_records(record):
    data = json.loads((ROOT / "results" / "benchmarks" / record).read_text())
    lines = (ROOT / "docs" / "benchmarks.md").read_text().splitlines()
    cited = next(i for i, line in enumerate(lines) if f"(../results/benchmarks/{record})" in line)
    start = next(i for i in range(cited, len(lines)) if lines[i].startswith("| pipeline |"))
    thresholds = [cell.strip()[len("s to "):-1] for cell in lines[start].strip("|").split("|") if "s to" in cell]
    shown = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
        shown[cells[0]] = cells
    assert set(shown) == set(TIME_TO_ACCURACY[record]), f"docs/benchmarks.md's rows after {record}"
    for name, pipeline in TIME_TO_ACCURACY[record].items():
        curve, reached = data["curves"][pipeline], data["seconds_to"][pipeline]
        expected = [name, *("-" if reached[t] is None else f"{reached[t]:.0f}" for t in thresholds),
                    f"{100 * max(p['val_acc'] for p in curve):.2f}", str(len(curve))]
        got = shown[name][:len(expected)]
        got[-1] = got[-1].split()[0]  # "6 (the cap)"
        assert got == expected, f"docs/benchmarks.md row {name!r} should read {expected} (from {record})"
    # The headline ratio to 92%, conventional over the speedrun's (shortest) 2-epoch or only run.
    speedrun = TIME_TO_ACCURACY[record].get("speedrun, 2 epochs") or "speedrun"
    ratio = data["seconds_to"]["conventional"]["92"] / data["seconds_to"][speedrun]["92"]
    assert f"**{ratio:.1f}x" in "\n".join(lines), f"docs/benchmarks.md should give {ratio:.1f}x to 92% ({record})"
