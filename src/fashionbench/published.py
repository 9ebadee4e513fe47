"""The README's results, written from the run records committed under ``results/``.

A published figure is never typed: README.md (and docs/experiments/calibration_robustness.md,
whose blocks are beyond_accuracy.py's, docs/experiments/reference_protocol.md, whose blocks
are protocol_page.py's, and docs/benchmarks.md's time-to-accuracy table) holds generated blocks, each between a
``<!-- begin generated: NAME ... -->`` line and an ``<!-- end generated: NAME -->``
line, and this module rewrites every block from the records::

    python -m fashionbench.published           # rewrite the pages' blocks
    python -m fashionbench.published --check   # change nothing; exit 1 naming each stale block

The blocks: ``results-table`` (each reference model's row from ``results/table/runs``
(CPU), ``results/gpu/runs`` (GPU) and ``results/reference_protocol/runs``; the corruption
accuracy from the runs' robustness records where they have complete ones, else "—"), ``ensemble``
(``results/table/ensembles/basic_cnn-x3``) and ``speedrun-table``
(``results/speedrun/*/speedrun.json``) and ``make-run`` (``make run`` timed from fresh
clones, ``results/benchmarks/make_run``) and ``time-to-accuracy`` (``benchmarks/speedrun.py``'s
repeats, ``results/benchmarks/time_to_accuracy``). A model or figure with no record shows "not yet
run", with the command that would make it. The test suite runs ``--check``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch

from . import beyond_accuracy, protocol_page
from .config import reference_recipe
from .errors import FashionbenchError
from .models import build_model, count_parameters, forward_flops, reference_figures
from .pages import md_table
from .protocol_page import PROTOCOL_RUNS, TABLE_RUNS
from .records import NOT_YET, finished_runs, machine_words, record_link, trained_on
from .rundir import SUMMARY, RunDir, State, read_summary
from .runs import write_text
from .tasks.leaderboard import Row, collect, corruption_cell, ece_cell, mean_std
from .tasks.reproduce import val_chosen

# Where each kind of record lives, relative to the repository root, and the command
# that writes it (shown beside the figures, and for a row not yet run).
GPU_RUNS = "results/gpu/runs"
ENSEMBLE = "results/table/ensembles/basic_cnn-x3"
SPEEDRUNS = "results/speedrun"
TABLE_COMMAND = "fashionbench reproduce --models basic_cnn,mini_vgg --seeds 0,1,2 --out results/table"
GPU_COMMAND = "python benchmarks/gpu_table.py run"
# Records keep no weights, so the table's seeds 0 and 1 (trained on another machine) were
# trained again with the table's recipe and command, weights kept, into ENSEMBLE_MEMBERS;
# seed 2 is the table's own run. The sentence quotes the members' figures the ensemble's
# record holds, whichever runs they were.
ENSEMBLE_MEMBERS = "results/ensemble_members"
ENSEMBLE_COMMAND = (f"fashionbench ensemble {ENSEMBLE_MEMBERS}/basic_cnn-s0 {ENSEMBLE_MEMBERS}/basic_cnn-s1 "
                    "results/table/runs/basic_cnn-s2 --out results/table/ensembles --name basic_cnn-x3")
MAKE_RUN = "results/benchmarks/make_run/make_run.json"
MAKE_RUN_COMMAND = "python benchmarks/make_run.py --runs 3 --out results/benchmarks/make_run"
# Time to accuracy: the speedrun recipe (a 2-epoch cycle for 92%, the published 17 epochs
# for 94%), BasicCNN at the conventional settings through our engine, and the conventional
# DataLoader pipeline, interleaved, three repeats (benchmarks/speedrun.py).
TIME_TO_ACCURACY = "results/benchmarks/time_to_accuracy/speedrun_benchmark.json"
TIME_TO_ACCURACY_COMMAND = ("python benchmarks/speedrun.py --pipelines speedrun,engine,conventional "
                            "--speedrun-epochs 2,17 --max-epochs 6 --max-minutes 12 --repeats 3 "
                            "--out results/benchmarks/time_to_accuracy")
ENGINE = "engine, conventional settings"  # the engine's pipeline at the conventional settings


@cache
def model_cells(model: str) -> tuple[str, str]:
    """Parameters and forward MFLOPs per 28x28 image (torch's FLOP counter)."""
    with torch.device("meta"):  # shapes only: no weights to initialise (seconds for ShakeShake34)
        net = build_model(model)
        flops, _ = forward_flops(net)
    return (f"{count_parameters(net):,}", f"{flops / 1e6:,.0f}")


def results_table(root: Path) -> str:
    """One row per reference model and record folder holding its runs (none: a row
    saying it is not yet run), then the reference protocol's rows."""
    header = ["model", "parameters", "MFLOPs", "reference %", "ours: test %", "val %",
              "test ECE % (raw → T-scaled)", "corruption acc %", "seeds", "epochs", "trained on", "record"]
    unmeasured = ["-"] * (len(header) - header.index("ours: test %") - 1)  # a row not yet run: its cells after
    rows = []
    folders = {folder: finished_runs(root, folder) for folder in (TABLE_RUNS, GPU_RUNS)}
    for model, published in reference_figures().items():
        found = False
        for folder, by_model in folders.items():
            runs = by_model.get(model, {})
            for row in collect(list(runs)) if runs else []:
                if row.leaky or row.recipe != "recipe":
                    continue
                found = True
                mine = {p: s for p, s in runs.items() if s.seed in row.seeds}
                rows.append([f"`{model}`", *model_cells(model), f"{published:.2f}", f"**{mean_std(row.test_acc)}**",
                             mean_std(row.val_acc), ece_cell(row), corruption_cell(row), len(row.seeds), row.epochs,
                             trained_on(list(mine.values())), record_link(folder, model, list(mine))])
        if not found:
            rows.append([f"`{model}`", *model_cells(model), f"{published:.2f}", NOT_YET, *unmeasured])
    protocol = finished_runs(root, PROTOCOL_RUNS)
    for model, published in reference_figures().items():
        mine = protocol.get(model, {})
        if not mine:
            if reference_recipe(model) is not None:  # the models the protocol has recipes for
                rows.append([f"`{model}`, the reference's own protocol", *model_cells(model), f"{published:.2f}",
                             NOT_YET, *unmeasured])
            continue
        (row,) = [r for r in collect(list(mine)) if r.leaky]
        rows.append([f"`{model}`, the reference's own protocol", *model_cells(model), f"{published:.2f}",
                     protocol_cell(row), mean_std([100 * val_chosen(p)["val_acc"] for p in mine]), ece_cell(row),
                     corruption_cell(row),
                     len(row.seeds), row.epochs, trained_on(list(mine.values())),
                     record_link(PROTOCOL_RUNS, model, list(mine))])
    return md_table(header, rows)


def protocol_cell(row: Row) -> str:
    """The reference protocol's figures: its best epoch on test (selected on test: optimistic)
    and the last epoch's, which its saved code read."""
    return (f"{mean_std(row.test_acc)} best epoch **[selected on test]**; "
            f"{mean_std(row.last_test_acc)} last epoch")


def ensemble_sentence(root: Path) -> str:
    """The three BasicCNN seeds' ensemble against the mean of its members, from its record."""
    if RunDir(root / ENSEMBLE).state is not State.COMPLETE:
        return (f"The three BasicCNN seeds combined by the mean of their probabilities: {NOT_YET} "
                f"(`{ENSEMBLE_COMMAND}`).")
    ensemble = read_summary(root / ENSEMBLE)
    members = ensemble.results["members"].values()
    alone = statistics.fmean(100 * member["test"]["acc"] for member in members)
    gain = 100 * ensemble.test_acc - alone
    return (f"The three BasicCNN seeds combined by the mean of their probabilities reach "
            f"**{100 * ensemble.test_acc:.2f}%** test ({100 * ensemble.val_acc:.2f}% validation), "
            f"{gain:+.2f} points against one model ({alone:.2f}, the mean of the three), at three times "
            f"the training cost (record [{ENSEMBLE}]({ENSEMBLE}/{SUMMARY}); its members: seeds 0 and 1 "
            f"trained again with the table's recipe, weights kept, in {ENSEMBLE_MEMBERS}/, and the table's "
            f"seed 2):\n\n"
            f"```bash\n{ENSEMBLE_COMMAND}\n```")


def speedrun_table(root: Path) -> str:
    """Each speedrun record: its command, test accuracy over seeds, median training time and range."""
    header = ["command", "test % (seeds)", "median training time", "trained on", "record"]
    rows = []
    records = sorted((root / SPEEDRUNS).glob("*/speedrun.json"), key=lambda p: -json.loads(p.read_text())["epochs"])
    for path in records:
        record = json.loads(path.read_text())
        folder = path.parent.relative_to(root).as_posix()
        accs = [100 * read_summary(root / folder / Path(s["run"]).name).test_acc for s in record["seeds"]]
        seconds = [s["seconds"] for s in record["seeds"]]
        precision = read_summary(root / folder / Path(record["seeds"][0]["run"]).name).precision
        where = machine_words(record)
        rows.append([f"`{record['command']}`", f"**{mean_std(accs)}** ({len(accs)})",
                     f"{statistics.median(seconds):.0f} s ({min(seconds):.0f}-{max(seconds):.0f})",
                     f"{where}, {precision}", f"[{folder}]({folder}/speedrun.json)"])
    return md_table(header, rows)


def make_run_sentence(root: Path) -> str:
    """How long the README's first command takes from a fresh clone, from its timing record."""
    path = root / MAKE_RUN
    if not path.is_file():
        return (f"How long the whole command takes from a fresh clone: {NOT_YET} "
                f"(`{MAKE_RUN_COMMAND}`).")
    record = json.loads(path.read_text())
    total, setup, accs = record["total_seconds"], record["setup_seconds"], record["test_acc"]
    return (f"From a fresh clone, `make run` took a median **{total['median'] / 60:.1f} minutes** "
            f"({total['min'] / 60:.1f}-{total['max'] / 60:.1f} over {len(record['runs'])} runs, one after "
            f"another), set-up included (a median {setup['median']:.0f} s of it), on {machine_words(record)}; "
            f"its test accuracy was {100 * accs['min']:.2f}-{100 * accs['max']:.2f}% "
            f"(record [{MAKE_RUN}]({MAKE_RUN}); `{MAKE_RUN_COMMAND}`).")


def time_to_accuracy_sentence(root: Path) -> str:
    """How much sooner the speedrun reaches 92% validation than the conventional pipeline, and
    how much of that the engine alone gives (same network, settings and evaluation): medians
    and ranges over the record's repeats."""
    path = root / TIME_TO_ACCURACY
    if not path.is_file():
        return (f"Time to accuracy against a conventional `DataLoader` pipeline, median and range over "
                f"three repeats: {NOT_YET} (`{TIME_TO_ACCURACY_COMMAND}`).")
    record = json.loads(path.read_text())
    summary, n = record["summary"], record["repeats"]

    def seconds(name: str, t: str) -> str:
        f = summary["seconds_to"][name][t]
        return "never" if f is None else f"{f['median']:.0f} s ({f['min']:.0f}-{f['max']:.0f})"

    def ratio(slower: str, faster: str) -> str:
        f = summary["ratios"].get(f"{slower}/{faster} to 92%")
        return ("unknown (one of the two never reached 92%)" if f is None else
                f"**{f['median']:.1f}x** ({f['min']:.1f}-{f['max']:.1f})")

    # The speedrun's fastest cycle to 92% (a one-cycle run's time to an accuracy is the
    # shortest cycle that ends there).
    runs = [name for name in summary["seconds_to"] if name.startswith("speedrun")]
    fastest = min(runs, key=lambda name: (summary["seconds_to"][name]["92"] or {"median": float("inf")})["median"])
    return (f"To 92% validation accuracy, median (range) over {n} repeats on {machine_words(record)}, the "
            f"pipelines interleaved an epoch each: the conventional pipeline {seconds('conventional', '92')}, "
            f"BasicCNN with the same settings through our engine {seconds(ENGINE, '92')}, {fastest} "
            f"{seconds(fastest, '92')}. The speedrun is {ratio('conventional', fastest)} sooner than the "
            f"conventional pipeline: the engine alone (same network, settings and evaluation) gives "
            f"{ratio('conventional', ENGINE)}, the speedrun recipe on the engine (its network, bf16, schedule, "
            f"augmentation and flip TTA together) {ratio(ENGINE, fastest)} "
            f"(record [{TIME_TO_ACCURACY}]({TIME_TO_ACCURACY}); `{TIME_TO_ACCURACY_COMMAND}`).")


def time_to_accuracy_table(root: Path) -> str:
    """docs/benchmarks.md's table of the time-to-accuracy record: each pipeline's seconds to
    each threshold and each ratio, median (range) over the repeats that reached it."""
    path = root / TIME_TO_ACCURACY
    if not path.is_file():
        return f"Not yet run (`{TIME_TO_ACCURACY_COMMAND}`)."
    record = json.loads(path.read_text())
    summary, n = record["summary"], record["repeats"]

    def cell(f: dict | None) -> str:
        if f is None:
            return "never"
        reached = "" if f["n"] == n else f", {f['n']} of {n}"
        return f"{f['median']:.0f} ({f['min']:.0f}-{f['max']:.0f}{reached})"

    thresholds = list(next(iter(summary["seconds_to"].values())))
    times = md_table(["pipeline", *(f"s to {t}%" for t in thresholds)],
                     [[name, *(cell(row[t]) for t in thresholds)] for name, row in summary["seconds_to"].items()])
    ratios = md_table(["ratio (slower / faster)", "median", "range", "repeats"],
                      [[key, f"**{f['median']:.1f}x**", f"{f['min']:.1f}-{f['max']:.1f}x", f["n"]]
                       for key, f in summary["ratios"].items()])
    return (f"{n} repeats on {machine_words(record)}, seconds of training (validation passes not timed), "
            f"median (range); record [{TIME_TO_ACCURACY}](../{TIME_TO_ACCURACY}):\n\n{times}\n\n{ratios}")


BENCHMARKS = "docs/benchmarks.md"
BLOCKS: dict[str, Callable[[Path], str]] = {
    "results-table": results_table,
    "ensemble": ensemble_sentence,
    "speedrun-table": speedrun_table,
    "make-run": make_run_sentence,
    "time-to-accuracy": time_to_accuracy_sentence,
}
DOCUMENT = "README.md"


def documents() -> dict[str, dict[str, Callable[[Path], str]]]:
    """Each page with generated blocks, relative to the repository root, and its blocks."""
    return {DOCUMENT: BLOCKS, BENCHMARKS: {"time-to-accuracy-table": time_to_accuracy_table},
            beyond_accuracy.DOCUMENT: beyond_accuracy.BLOCKS, protocol_page.DOCUMENT: protocol_page.BLOCKS}


def block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- begin generated: {re.escape(name)}\b[^\n]*-->\n)(.*?)(<!-- end generated: "
                      rf"{re.escape(name)} -->)", re.DOTALL)


def rewrite(text: str, root: Path, document: str = DOCUMENT) -> tuple[str, list[str]]:
    """``text`` (the page ``document``) with each of its generated blocks written from the
    records under ``root``, and the names of the blocks that changed."""
    changed = []
    for name, write in documents()[document].items():
        pattern = block_pattern(name)
        match = pattern.search(text)
        if match is None:
            raise FashionbenchError(f"{document} has no generated block {name!r} "
                                    f"(a '<!-- begin generated: {name} -->' line and its end line)")
        body = write(root).rstrip("\n") + "\n"
        if match.group(2) != body:
            changed.append(name)
            text = text[:match.start(2)] + body + text[match.end(2):]
    return text, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fashionbench.published", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 naming each block that differs from its records")
    parser.add_argument("--root", default=".", help="the repository root (default: .)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    stale = 0
    for document in documents():
        path = root / document
        try:
            text, changed = rewrite(path.read_text(), root, document)
        except (FashionbenchError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.check:
            if changed:
                print(f"{path}: {', '.join(changed)} differ from the records; run python -m fashionbench.published",
                      file=sys.stderr)
                stale += 1
            continue
        if changed:
            write_text(path, text)
        print(f"{path}: {', '.join(changed) + ' rewritten' if changed else 'already matches its records'}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
