"""The tables of docs/experiments/calibration_robustness.md, written from the records under
``results/`` (each summary's ``temperature_scaling``, ``robustness.json``) as the
README's are (published.py runs these blocks too): calibration, accuracy under
corruptions, per corruption, and which model is most robust.

Each group below is a model's published records: a folder pattern under the repository
root, read in sorted order; a group with no record yet shows "not yet measured".
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from .pages import md_table
from .rundir import ROBUSTNESS, SUMMARY, RunDir, read_summary
from .tasks.leaderboard import mean_std
from .tasks.robustness import complete_mca

NOT_MEASURED = "not yet measured"


@dataclass(frozen=True)
class Group:
    """A model's records in one table row: ``name``, the folders (glob patterns under the
    repository root, read in this order) and ``note``, said after the seeds."""
    name: str
    patterns: tuple[str, ...]
    note: str = ""
    single: bool = True  # one network (not an ensemble of several)

    def folders(self, root: Path, holding: str) -> list[Path]:
        """The group's folders that hold ``holding`` (a file name)."""
        found = [path.parent for pattern in self.patterns for path in sorted(root.glob(f"{pattern}/{holding}"))]
        return list(dict.fromkeys(found))

    def seeds(self, folders: list[Path]) -> str:
        """'2, 0, 1 (0 and 1 trained again)': the seeds of ``folders``' runs, as their summaries say."""
        seeds = ", ".join(str(read_summary(folder).seed) for folder in folders)
        return f"{seeds} ({self.note})" if self.note else seeds


BASIC_CNN_TABLE = Group("BasicCNN", ("results/table/runs/basic_cnn-s*",))
MINI_VGG = Group("MiniVGG", ("results/table/runs/mini_vgg-s*",))
# The table's seeds 0 and 1 kept no weights: trained again with the same command (the
# ensemble's members), beside the table's seed 2.
BASIC_CNN_AGAIN = Group("BasicCNN, trained again", ("results/ensemble_members/basic_cnn-s*",))
BASIC_CNN_WEIGHTS = Group("BasicCNN", ("results/table/runs/basic_cnn-s2", "results/ensemble_members/basic_cnn-s*"),
                          "0 and 1 trained again")
ENSEMBLE = Group("BasicCNN x3 ensemble", ("results/table/ensembles/basic_cnn-x3",), single=False)
SPEEDRUN = Group("speedrun_net, `--epochs 17`", ("results/speedrun/epochs-17-epyc/seed-*",))
MAKE_RUN = Group("speedrun_net, `make run`", ("results/benchmarks/make_run/run/seed-*",))

CALIBRATION_GROUPS = (BASIC_CNN_TABLE, MINI_VGG, BASIC_CNN_AGAIN, ENSEMBLE, SPEEDRUN, MAKE_RUN)
ROBUSTNESS_GROUPS = (BASIC_CNN_WEIGHTS, MINI_VGG, SPEEDRUN, MAKE_RUN, ENSEMBLE)

def folders_cell(root: Path, folders: list[Path]) -> str:
    """'results/table/runs/mini_vgg-s{0,1}': the folders, those that differ only in a
    trailing number written once."""
    groups: dict[str, list[str]] = {}
    for folder in folders:
        relative = folder.relative_to(root).as_posix()
        match = re.fullmatch(r"(.*?)(\d+)", relative)
        stem, number = (match.group(1), match.group(2)) if match else (relative, "")
        groups.setdefault(stem, []).append(number)
    return ", ".join(stem + (f"{{{','.join(n)}}}" if len(n) > 1 else n[0]) for stem, n in groups.items())


def values_cell(values: list[float]) -> str:
    """'70.07, 68.74, 70.08 (**69.63 ± 0.77**)', or the one value."""
    listed = ", ".join(f"{v:.2f}" for v in values)
    return listed if len(values) == 1 else f"{listed} (**{mean_std(values)}**)"


def calibration_table(root: Path) -> str:
    """Per group: test ECE as trained and temperature-scaled, and the temperature."""
    rows = []
    for group in CALIBRATION_GROUPS:
        scaled = [(folder, read_summary(folder)) for folder in group.folders(root, SUMMARY)]
        scaled = [(folder, s) for folder, s in scaled if s.temperature_scaling]
        if not scaled:
            rows.append([group.name, "", NOT_MEASURED, "", ""])
            continue
        fits = [s.temperature_scaling for _, s in scaled]
        before = ", ".join(f"{100 * t['before']['test']['ece']:.2f}" for t in fits)
        after = ", ".join(f"{100 * t['after']['test']['ece']:.2f}" for t in fits)
        rows.append([group.name, group.seeds([folder for folder, _ in scaled]), f"{before} → {after}",
                     ", ".join(f"{t['temperature']:.3f}" for t in fits),
                     folders_cell(root, [folder for folder, _ in scaled])])
    return md_table(["model", "seeds", "test ECE %, as trained → temperature-scaled", "T", "record"], rows)


def robustness_records(root: Path, group: Group) -> list[tuple[Path, dict]]:
    """The group's complete robustness records (every corruption and severity of this
    version: what the README's table counts too, ``complete_mca``)."""
    records = [(folder, RunDir(folder).read_robustness()) for folder in group.folders(root, ROBUSTNESS)]
    return [(folder, record) for folder, record in records if complete_mca(record) is not None]


def robustness_table(root: Path) -> str:
    """Per group: clean accuracy, mean corruption accuracy (mCA) and the relative drop."""
    rows = []
    for group in ROBUSTNESS_GROUPS:
        records = robustness_records(root, group)
        if not records:
            rows.append([group.name, "", NOT_MEASURED, "", "", ""])
            continue
        rows.append([group.name, group.seeds([folder for folder, _ in records]),
                     ", ".join(f"{100 * r['clean_acc']:.2f}" for _, r in records),
                     values_cell([100 * r["mca"] for _, r in records]),
                     ", ".join(f"{100 * r['relative_drop']:.1f}%" for _, r in records),
                     folders_cell(root, [folder for folder, _ in records])])
    return md_table(["model", "seeds", "clean %", "mCA %", "relative drop", "record"], rows)


def measured_groups(root: Path) -> list[tuple[Group, list[dict]]]:
    return [(group, [r for _, r in records]) for group in ROBUSTNESS_GROUPS
            if (records := robustness_records(root, group))]


def corruption_table(root: Path) -> str:
    """Accuracy under each corruption (mean over its five severities), each group's mean over its records."""
    measured = measured_groups(root)
    if not measured:
        return NOT_MEASURED
    names = list(measured[0][1][0]["corruption_acc"])
    rows = [[name, *(f"{statistics.fmean(100 * r['corruption_acc'][name] for r in records):.1f}"
                     for _, records in measured)] for name in names]
    return md_table(["corruption", *(group.name for group, _ in measured)], rows)


def lead(measured: list[tuple[Group, list[float]]]) -> str:
    """'A leads B by **x points**': the first of ``measured`` (sorted) over the second."""
    (first, a), (second, b) = measured[:2]
    return f"{first.name} leads {second.name} by **{statistics.fmean(a) - statistics.fmean(b):.2f} points**"


def most_robust(root: Path) -> str:
    """The groups by mean mCA, the first's lead over the second, and among single networks
    (an ensemble aside) the same."""
    measured = sorted(((group, [100 * r["mca"] for r in records]) for group, records in measured_groups(root)),
                      key=lambda item: -statistics.fmean(item[1]))
    if len(measured) < 2:
        return f"Which model is most robust: {NOT_MEASURED} (fewer than two models measured)."
    ranking = ", then ".join(f"{group.name} ({mean_std(mca)}, {len(mca)} "
                             f"{'record' if len(mca) == 1 else 'records'})" for group, mca in measured)
    text = f"By mean mCA: {ranking}. {lead(measured)}."
    singles = [item for item in measured if item[0].single]
    if len(singles) >= 2 and singles[:2] != measured[:2]:
        text += f" Of single networks, {lead(singles)}."
    return text


BLOCKS = {
    "calibration-table": calibration_table,
    "robustness-table": robustness_table,
    "corruption-table": corruption_table,
    "most-robust": most_robust,
}
DOCUMENT = "docs/experiments/calibration_robustness.md"
