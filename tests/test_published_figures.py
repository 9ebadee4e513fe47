"""Published figures are held to their committed records: every figure of a table row
that names a record folder is recomputed here from that folder's files, and a figure
typed differently fails, named with where it stands.

Covered so far: the speedrun rows (README.md, docs/benchmarks.md; results/speedrun/)
and the concurrency table (docs/benchmarks.md; docs/benchmarks/concurrency/). The rows
whose runs have no committed record yet are not checked (docs say so beside them)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

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
    needle = f"results/speedrun/{folder.name}"
    checks = {"README.md": ("accuracy", "time, README"),
              "docs/benchmarks.md": ("accuracy", "time, benchmarks.md", "per seed")}
    for doc, names in checks.items():
        rows = rows_naming(doc, needle)
        assert rows, f"{doc} has no row naming {needle}"
        for where, line in rows:
            for name in names:
                assert figures[name] in line, f"{where}: {name} should read {figures[name]!r} (from {needle})"


def test_the_concurrency_table_is_its_record():
    record = json.loads((ROOT / "docs" / "benchmarks" / "concurrency" / "concurrency.json").read_text())
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
