"""The layer table of docs/architecture.md is the code's: every module and package of
src/fashionbench is in it, and each imports only from layers below its own (no cycle
can then exist). Read from the source with ast, so it runs in the fast tier."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "fashionbench"
TABLE = ROOT / "docs" / "architecture.md"


def unit_of(path: Path) -> str:
    """A top-level module ("runs.py") or package ("api/") of fashionbench, as the table names it."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] + "/" if len(parts) > 1 else parts[0]


def unit_named(name: str) -> str | None:
    if (PACKAGE / name).is_dir():
        return name + "/"
    return name + ".py" if (PACKAGE / f"{name}.py").exists() else None


def imported_units(path: Path) -> set[str]:
    """The units of fashionbench that ``path`` imports, wherever in the file (a function's
    deferred import counts as much as one at the top)."""
    here = list(path.relative_to(PACKAGE).parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[1:] for a in node.names if a.name.startswith("fashionbench.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif (node.module or "").startswith("fashionbench"):
                base = node.module.split(".")[1:]
            else:
                continue
            names = [base] if base else [[a.name] for a in node.names]  # from . import api
        else:
            continue
        found |= {unit for parts in names if parts and (unit := unit_named(parts[0]))}
    return found - {unit_of(path)}


def table() -> dict[str, int]:
    """Each unit the table names, and its layer (a row may name several: `a.py`, `b.py`)."""
    layers = {}
    for layer, modules in re.findall(r"^\| (\d+) \| (.+?) \|", TABLE.read_text(), re.M):
        for name in re.findall(r"`([\w/.]+)`", modules):
            layers[name] = int(layer)
    return layers


def test_the_table_names_every_module_and_nothing_else():
    units = {unit_of(p) for p in PACKAGE.rglob("*.py")}
    named = set(table())
    assert units - named == set(), "modules missing from docs/architecture.md's table"
    assert named - units == set(), "docs/architecture.md's table names modules that do not exist"


def test_every_module_imports_only_from_lower_layers():
    layers = table()
    upward = [f"{path.relative_to(PACKAGE)} (layer {layers[unit_of(path)]}) imports {unit} (layer {layers[unit]})"
              for path in sorted(PACKAGE.rglob("*.py")) for unit in sorted(imported_units(path))
              if layers[unit] >= layers[unit_of(path)]]
    assert not upward, "imports not from a lower layer:\n" + "\n".join(upward)


def test_the_cli_imports_only_the_api():
    cli = {unit for path in (PACKAGE / "cli").rglob("*.py") for unit in imported_units(path)}
    assert cli == {"api/"}


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checks can fail: a module of layer 1 importing the API is caught."""
    fake = tmp_path / "fashionbench"
    (fake / "api").mkdir(parents=True)
    (fake / "api" / "__init__.py").write_text("from ..errors import UsageError\n")
    (fake / "errors.py").write_text("from .api import train\n")
    doc = tmp_path / "architecture.md"
    doc.write_text("| 1 | `errors.py` | x |\n| 2 | `api/` | y |\n")
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "PACKAGE", fake)
    monkeypatch.setattr(module, "TABLE", doc)
    test_the_table_names_every_module_and_nothing_else()
    with pytest.raises(AssertionError, match=r"errors.py \(layer 1\) imports api/ \(layer 2\)"):
        test_every_module_imports_only_from_lower_layers()
