"""The scripts behind published speed figures run: each in its tiny mode, whose figures
mean nothing but whose exit status and output format are checked, so that a script
cannot break unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_concurrency_benchmark_runs_and_writes_its_table(data_dir, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "concurrency.py"), "--tiny",
                             "--data-dir", str(data_dir), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "concurrency.json").read_text())
    assert record["tiny"] is True and record["cores"] >= 1 and record["alone_images_per_s"] > 0
    rows = {(row["policy"], row["processes"]): row for row in record["table"]}
    assert set(rows) == {(p, n) for p in ("torch-default", "shared") for n in (1, 2)}
    assert rows[("shared", 1)]["share_median"] == rows[("torch-default", 1)]["share_median"] == 1.0
    for row in rows.values():
        assert 0 < row["share_min"] <= row["share_median"] <= row["share_max"]
    assert "each, of alone (ideal 1/N)" in result.stdout
    assert f"written: {tmp_path / 'concurrency.json'}" in result.stdout
