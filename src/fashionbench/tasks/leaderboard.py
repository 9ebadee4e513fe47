"""Results tables: runs grouped by model, mean +- std over seeds, beside the
reference project's figures."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import runs
from ..config import LEAKY, load_config, reference_recipe
from ..errors import FashionbenchError, UsageError
from ..models import reference_figures
from ..pages import html_page, html_table, md_table
from ..rundir import SUMMARY, Kind, RunDir, State, finished_under
from .robustness import complete_mca


@dataclass
class Row:
    model: str
    recipe: str                  # "recipe", or "custom <hash>" of the configuration
    test_acc: list[float]        # of the reported model (SWA when on), one per seed, in %;
                                 # empty for validation-only runs (a sweep's trials)
    val_acc: list[float]         # of the reported model, one per seed that has it, in %
    last_test_acc: list[float]   # of the last-epoch model
    seeds: list[int]
    parameters: int
    seconds_per_epoch: float
    devices: list[str]
    epochs: int
    test_size: int
    leaky: bool = False          # selected on the test set (eval.select_on test): never ranked with the rest
    # Test ECE (calibration.py) of the seeds whose summary has it, in %, as the network gives
    # its probabilities and temperature-scaled; empty for runs finished before it.
    test_ece: list[float] = field(default_factory=list)
    test_ece_scaled: list[float] = field(default_factory=list)
    corruption_acc: list[float] = field(default_factory=list)  # mCA in %, one per seed with a complete
                                                               # robustness record (fashionbench robustness)

    @property
    def reference(self) -> float | None:
        """The reference project's figure for this model (none for a variant or combination)."""
        return reference_figures().get(self.model)


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders named directly, or every finished run under a folder, less the
    binary members of one-vs-all and specialists runs found there (the combined run
    they belong to is found too)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if RunDir(path).state is State.COMPLETE:
            found.append(path)
        elif path.is_dir():
            under = finished_under(path)
            if not under:
                raise FashionbenchError(f"{path}: no finished runs ({SUMMARY}) in or under it")
            ten_class = [p for p in under if RunDir(p).kind is not Kind.BINARY]
            if not ten_class:
                raise FashionbenchError(f"{path}: only binary runs (data.positive_class) in or under it, "
                                        "no ten-class ones")
            found += ten_class
        else:
            raise FashionbenchError(f"{path}: no such folder")
    return list(dict.fromkeys(found))


# Settings that leave the training recipe itself unchanged. Precision is the machine's
# as much as the recipe's: a recipe's "auto" is fp32 on a CPU without bf16, so a run
# that set fp32 there is the same training; the precision a run used is in its summary,
# and tables show it beside the figures ("trained on").
NOT_RECIPE = ("seed", "device", "compile", "precision")


def recipe_of(run_dir: Path | RunDir) -> str:
    """'recipe' when the run used recipes/MODEL.yaml as it is now, 'reference protocol'
    for recipes/reference/MODEL.yaml, else 'custom <hash>' (runs group by it, so that
    only seeds of one configuration are averaged)."""
    folder = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not folder.has_config:
        return "-"
    try:
        used = folder.config.to_dict()
    except FashionbenchError as e:  # named by the file
        raise FashionbenchError(str(e).split("; valid keys:")[0]) from None  # one line of a table's warnings
    for key in NOT_RECIPE:
        used.pop(key)
    recipes = {"recipe": None}  # label -> recipe file (None: the model's own)
    if (reference := reference_recipe(used["model"])) is not None:
        recipes["reference protocol"] = reference
    for label, recipe in recipes.items():
        current = load_config(used["model"], recipe).to_dict()
        if all(used[k] == current[k] for k in used):
            return label
    digest = hashlib.sha1(json.dumps(used, sort_keys=True).encode()).hexdigest()[:7]
    return f"custom {digest}"


def warn_skipped(run_dir: Path, why: str) -> None:
    """One line on stderr: a run the table leaves out, and why."""
    where = "" if why.startswith(str(run_dir)) else f"{run_dir}: "
    print(f"fashionbench: warning: {where}{why}; skipped", file=sys.stderr, flush=True)


def collect(run_dirs: list[Path]) -> list[Row]:
    """One row per model and configuration (all but the seed) over the given finished
    runs, best mean accuracy first. Leaves out, with a warning each, a run it cannot
    read, a binary run (no ten-class result) and a second run of a seed in one row."""
    if not run_dirs:
        raise UsageError("no runs given: name run folders, or folders to search for them")
    groups: dict[tuple, dict] = {}  # (label, recipe) -> {seed: (run_dir, summary)}
    mca: dict[Path, float | None] = {}
    skipped: list[tuple[Path, str]] = []
    for run_dir in map(Path, run_dirs):
        folder = RunDir(run_dir)
        try:
            s = folder.summary
            recipe = recipe_of(folder)
        except FashionbenchError as e:
            skipped.append((run_dir, str(e)))
            continue
        if folder.kind is Kind.BINARY:
            skipped.append((run_dir, f"a binary run ({s.variant or 'data.positive_class set'}), "
                                     "no ten-class result (table the one-vs-all or specialists run "
                                     "it belongs to)"))
            continue
        label = s.model + (f" ({s.variant})" if s.variant else "")
        groups.setdefault((label, recipe, s.leaky), {}).setdefault(json.dumps(s.seed), []).append((run_dir, s))
        mca[run_dir] = corruption_accuracy(folder)
    rows = []
    for (model, recipe, leaky), by_seed in groups.items():
        summaries, kept_dirs = [], []
        for runs_of_seed in by_seed.values():
            kept, *again = sorted(runs_of_seed, key=lambda r: r[0])
            summaries.append(kept[1])
            kept_dirs.append(kept[0])
            skipped += [(d, f"seed {s.seed} again in {model} ({recipe}), "
                            f"which keeps {kept[0]}") for d, s in again]
        rows.append(Row(
            model=model, recipe=recipe,
            test_acc=[100 * s.test_acc for s in summaries if s.test_acc is not None],
            val_acc=[100 * s.val_acc for s in summaries if s.val_acc is not None],
            last_test_acc=[100 * s.accuracy("last", "test") for s in summaries
                           if s.accuracy("last", "test") is not None],  # an ensemble has no last epoch
            seeds=[s.seed for s in summaries],
            parameters=summaries[0].parameters,
            seconds_per_epoch=statistics.fmean(s.seconds_per_epoch for s in summaries),
            devices=sorted({s.device for s in summaries}),
            epochs=summaries[0].epochs,
            test_size=min(s.test_size for s in summaries),
            leaky=leaky,
            **test_ece(summaries),
            corruption_acc=[100 * mca[d] for d in kept_dirs if mca[d] is not None]))
    if not rows and len(skipped) == 1:  # one run, unreadable: its error, not a warning
        run_dir, why = skipped[0]
        raise FashionbenchError(why if why.startswith(str(run_dir)) else f"{run_dir}: {why}")
    for run_dir, why in skipped:
        warn_skipped(run_dir, why)
    if not rows:
        raise FashionbenchError(f"none of the {len(skipped)} runs can be tabulated (see the warnings above)")
    return sorted(rows, key=rank)


def test_ece(summaries: list) -> dict[str, list[float]]:
    """The seeds' test ECE in %, before and after temperature scaling (those that have it)."""
    scored = [scores for s in summaries if (scores := s.calibration("test")) is not None]
    return {"test_ece": [100 * before["ece"] for before, _ in scored],
            "test_ece_scaled": [100 * after["ece"] for _, after in scored]}
def corruption_accuracy(folder: RunDir) -> float | None:
    """The run's mean corruption accuracy, from a complete robustness record; None without
    one (a damaged record is warned about, and left out)."""
    try:
        return complete_mca(folder.read_robustness())
    except FashionbenchError as e:
        warn_skipped(folder.path, f"{e} (its corruption accuracy)")
        return None


def rank(row: Row) -> tuple:
    """Best test accuracy first; validation-only rows (a sweep's trials) after, by
    validation; rows selected on the test set last of all, ranked among themselves only."""
    return (row.leaky, not row.test_acc, -statistics.fmean(row.test_acc or row.val_acc or [0.0]))


def ece_cell(row: Row) -> str:
    """'2.13 → 0.87': the mean test ECE (%) as the networks give their probabilities, then
    temperature-scaled; '—' where no seed's summary has it (finished before it)."""
    if not row.test_ece:
        return "—"
    return f"{statistics.fmean(row.test_ece):.2f} → {statistics.fmean(row.test_ece_scaled):.2f}"


def mean_std(values: list[float]) -> str:
    """'94.06 +- 0.06' (sample std) over seeds; a single run has no spread to show."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


HEADER = ["model", "recipe", "test acc % (mean ± std)", "last-epoch test acc %", "val acc %",
          "test ECE % (raw → T-scaled)", "corruption acc %", "seeds", "epochs", "parameters", "s/epoch", "device",
          "reference %"]


def corruption_cell(row: Row) -> str:
    """The mCA over the seeds with a complete robustness record ("—" without any; the
    count where only some seeds have one)."""
    if not row.corruption_acc:
        return "—"
    cell = mean_std(row.corruption_acc)
    measured = len(row.corruption_acc)
    return cell if measured == len(row.seeds) else f"{cell} ({measured} of {len(row.seeds)} seeds)"


def cells(row: Row) -> list[str]:
    ref = row.reference
    model = row.model + (f" [{LEAKY.upper()}]" if row.leaky else "")
    return [model, row.recipe, mean_std(row.test_acc), mean_std(row.last_test_acc), mean_std(row.val_acc),
            ece_cell(row), corruption_cell(row), ",".join(map(str, row.seeds)), str(row.epochs), f"{row.parameters:,}",
            f"{row.seconds_per_epoch:.1f}", "; ".join(row.devices), "" if ref is None else f"{ref:.2f}"]


def notes(rows: list[Row]) -> list[str]:
    out = []
    if any(r.test_acc and r.test_size < 10_000 for r in rows):
        out.append("Smoke runs: short runs evaluated on a test subset. "
                   "These figures test the machinery and say nothing about the models.")
    out.append("Test accuracy of the reported model (SWA weights where SWA is on), mean ± sample "
               "std over seeds; the reference project's single runs, chosen on the test set, "
               "beside ours.")
    if any(r.test_ece for r in rows):
        out.append("Test ECE: expected calibration error (15 bins of top-class confidence), mean over "
                   "seeds, of the probabilities as the network gives them and after temperature scaling "
                   "(T fitted on validation); — for runs finished before it (fashionbench calibrate).")
    if any(r.leaky for r in rows):
        out.append(f"Rows marked [{LEAKY.upper()}] rerun the reference project's own protocol "
                   "(eval.select_on test): the best epoch on the test split, so their test figure "
                   "is optimistic. They are listed after the honest rows and not ranked with them.")
    if any(r.corruption_acc for r in rows):
        out.append("Corruption acc: the mean accuracy over the test images under every corruption at every "
                   "severity (mCA, fashionbench robustness); — where a run has no complete record.")
    if any(not r.test_acc for r in rows):
        out.append("Rows without a test figure are validation-only runs (a sweep's trials, "
                   "eval.test false): ranked after the others, by validation accuracy.")
    return out


def to_markdown(rows: list[Row], title: str) -> str:
    body = "\n\n".join(f"**{n}**" if n.startswith("Smoke") else n for n in notes(rows))
    return f"# {title}\n\n{body}\n\n{md_table(HEADER, [cells(r) for r in rows])}\n"


def to_html(rows: list[Row], title: str) -> str:
    body = "".join(f"<p>{html.escape(n)}</p>" for n in notes(rows))
    return html_page(title, body + html_table(HEADER, [cells(r) for r in rows]))


def to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "recipe", "test_acc_mean", "test_acc_std", "last_test_acc_mean", "val_acc_mean", "seeds",
                     "epochs", "parameters", "seconds_per_epoch", "device", "test_size",
                     "reference", "selected_on", "test_ece_mean", "test_ece_scaled_mean",
                     "corruption_acc_mean"])
    for r in rows:
        writer.writerow([r.model, r.recipe, f"{statistics.fmean(r.test_acc):.4f}" if r.test_acc else "",
                         f"{statistics.stdev(r.test_acc):.4f}" if len(r.test_acc) > 1 else "",
                         f"{statistics.fmean(r.last_test_acc):.4f}" if r.last_test_acc else "",
                         f"{statistics.fmean(r.val_acc):.4f}" if r.val_acc else "",
                         " ".join(map(str, r.seeds)), r.epochs, r.parameters,
                         f"{r.seconds_per_epoch:.2f}",
                         "; ".join(r.devices), r.test_size,
                         "" if r.reference is None else r.reference, "test" if r.leaky else "val",
                         f"{statistics.fmean(r.test_ece):.4f}" if r.test_ece else "",
                         f"{statistics.fmean(r.test_ece_scaled):.4f}" if r.test_ece else "",
                         f"{statistics.fmean(r.corruption_acc):.4f}" if r.corruption_acc else ""])
    return buf.getvalue()


def write_tables(rows: list[Row], out: Path, title: str) -> list[Path]:
    """table.md, table.csv and table.html in ``out``."""
    paths = [Path(out) / f"table.{ext}" for ext in ("md", "csv", "html")]
    for path, text in zip(paths, (to_markdown(rows, title), to_csv(rows), to_html(rows, title))):
        runs.write_text(path, text)
    return paths
