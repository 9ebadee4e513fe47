"""Results tables: runs grouped by model, mean +- std over seeds, beside the
reference project's figures."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from . import runs
from .errors import FashionbenchError
from .pages import html_page, html_table, md_table

# The reference project's test accuracies (%), one run each, chosen on the test set.
REFERENCE = {"shake_shake34": 95.71, "wide_resnet16_4": 95.33, "resnet18": 94.74,
             "resnet34": 94.71, "mini_vgg": 94.59, "basic_cnn": 94.21,
             "mobilenet_v2": 93.2, "shufflenet_v2": 92.9}


@dataclass
class Row:
    model: str
    recipe: str                  # "recipe", or "custom <hash>" of the configuration
    test_acc: list[float]        # of the reported model (SWA when on), one per seed, in %
    last_test_acc: list[float]   # of the last-epoch model
    seeds: list[int]
    parameters: int
    seconds_per_epoch: float
    devices: list[str]
    epochs: int
    test_size: int

    @property
    def reference(self) -> float | None:
        return REFERENCE.get(self.model)


def read_summary(run_dir: Path) -> dict:
    path = Path(run_dir) / "summary.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FashionbenchError(f"{run_dir}: no summary.json (run not finished?)") from None
    except json.JSONDecodeError as e:
        raise FashionbenchError(f"{path}: not valid JSON ({e.msg})") from None


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders named directly, or every finished run (summary.json) under a folder."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / "summary.json").exists():
            found.append(path)
        elif path.is_dir():
            under = sorted(p.parent for p in path.rglob("summary.json"))
            if not under:
                raise FashionbenchError(f"{path}: no finished runs (summary.json) in or under it")
            found += under
        else:
            raise FashionbenchError(f"{path}: no such folder")
    return list(dict.fromkeys(found))


# Settings that leave the training recipe itself unchanged.
NOT_RECIPE = ("seed", "device", "compile")


def recipe_of(run_dir: Path) -> str:
    """'recipe' when the run used recipes/MODEL.yaml as it is now, else 'custom <hash>'
    (runs group by it, so that only seeds of one configuration are averaged)."""
    from .config import config_from_dict, load_config, read_yaml

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return "-"
    used = config_from_dict(read_yaml(path)).to_dict()
    for key in NOT_RECIPE:
        used.pop(key)
    current = load_config(used["model"]).to_dict()
    if all(used[k] == current[k] for k in used):
        return "recipe"
    digest = hashlib.sha1(json.dumps(used, sort_keys=True).encode()).hexdigest()[:7]
    return f"custom {digest}"


def collect(run_dirs: list[Path]) -> list[Row]:
    """One row per model and configuration (all but the seed) over the given finished
    runs, best mean accuracy first."""
    groups: dict[tuple, list[dict]] = {}
    for run_dir in run_dirs:
        s = read_summary(run_dir)
        label = s["model"] + (f" ({s['variant']})" if s.get("variant") else "")
        groups.setdefault((label, recipe_of(run_dir)), []).append(s)
    rows = []
    for (model, recipe), summaries in groups.items():
        rows.append(Row(
            model=model, recipe=recipe,
            test_acc=[100 * s["test_acc"] for s in summaries],
            last_test_acc=[100 * s["results"]["last"]["test"]["acc"] for s in summaries
                           if "last" in s["results"]],  # an ensemble has no last epoch
            seeds=[s["seed"] for s in summaries],
            parameters=summaries[0]["parameters"],
            seconds_per_epoch=statistics.fmean(s["seconds_per_epoch"] for s in summaries),
            devices=sorted({s["device"] for s in summaries}),
            epochs=summaries[0]["epochs"],
            test_size=min(s.get("test_size", 10_000) for s in summaries)))
    return sorted(rows, key=lambda r: -statistics.fmean(r.test_acc))


def mean_std(values: list[float]) -> str:
    """'94.06 +- 0.06' (sample std) over seeds; a single run has no spread to show."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


HEADER = ["model", "recipe", "test acc % (mean ± std)", "last-epoch test acc %", "seeds", "epochs",
          "parameters", "s/epoch", "device", "reference %"]


def cells(row: Row) -> list[str]:
    ref = row.reference
    return [row.model, row.recipe, mean_std(row.test_acc), mean_std(row.last_test_acc),
            ",".join(map(str, row.seeds)), str(row.epochs), f"{row.parameters:,}", f"{row.seconds_per_epoch:.1f}",
            "; ".join(row.devices), "" if ref is None else f"{ref:.2f}"]


def notes(rows: list[Row]) -> list[str]:
    out = []
    if any(r.test_size < 10_000 for r in rows):
        out.append("Smoke runs: evaluated on a test subset after a few hundred steps. "
                   "These figures test the machinery and say nothing about the models.")
    out.append("Test accuracy of the reported model (SWA weights where SWA is on), mean ± sample "
               "std over seeds; the reference project's single runs, chosen on the test set, "
               "beside ours.")
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
    writer.writerow(["model", "recipe", "test_acc_mean", "test_acc_std", "last_test_acc_mean", "seeds",
                     "epochs", "parameters", "seconds_per_epoch", "device", "test_size",
                     "reference"])
    for r in rows:
        writer.writerow([r.model, r.recipe, f"{statistics.fmean(r.test_acc):.4f}",
                         f"{statistics.stdev(r.test_acc):.4f}" if len(r.test_acc) > 1 else "",
                         f"{statistics.fmean(r.last_test_acc):.4f}" if r.last_test_acc else "",
                         " ".join(map(str, r.seeds)), r.epochs, r.parameters,
                         f"{r.seconds_per_epoch:.2f}",
                         "; ".join(r.devices), r.test_size,
                         "" if r.reference is None else r.reference])
    return buf.getvalue()


def write_tables(rows: list[Row], out: Path, title: str) -> list[Path]:
    """table.md, table.csv and table.html in ``out``."""
    paths = [Path(out) / f"table.{ext}" for ext in ("md", "csv", "html")]
    for path, text in zip(paths, (to_markdown(rows, title), to_csv(rows), to_html(rows, title))):
        runs.write_text(path, text)
    return paths
