"""notebooks/walkthrough.ipynb: committed without outputs, and every cell runs (at the
tiny budget, as CI runs it) on the real data."""

from __future__ import annotations

import json
import os
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_committed_notebook_has_no_outputs():
    """Outputs belong to a run of it (make notebook writes runs/notebook), not to the repository."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert len(code) >= 10
    assert [i for i, c in enumerate(code) if c["outputs"] or c["execution_count"] is not None] == []


def test_budget_is_one_parameter_cell():
    """The budget is read in one cell, from the environment, defaulting to the full recipe."""
    sources = ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    reading = [s for s in sources if "FASHIONBENCH_NOTEBOOK_BUDGET" in s]
    assert len(reading) == 1 and '"FASHIONBENCH_NOTEBOOK_BUDGET", "full"' in reading[0]


def test_notebook_runs_at_the_tiny_budget(data_dir, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits this environment: the tiny budget, runs in tmp_path, the real data.
    monkeypatch.setenv("FASHIONBENCH_NOTEBOOK_BUDGET", "tiny")
    monkeypatch.setenv("FASHIONBENCH_NOTEBOOK_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("FASHIONBENCH_DATA_DIR", str(data_dir))
    # No MPLBACKEND: the kernel takes Jupyter's inline backend, so figures become outputs.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "budget: tiny" in text and "ensemble (mean probability)" in text
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    assert images == 6  # the class grid, curves, LR test, confusion, P/R/F1, errors: each once
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir() if (p / "summary.json").exists()) == \
        ["basic_cnn-s0", "basic_cnn-s1", "basic_cnn-s2", "ensemble-of-3-seeds"]
    assert os.environ["FASHIONBENCH_NOTEBOOK_BUDGET"] == "tiny"
