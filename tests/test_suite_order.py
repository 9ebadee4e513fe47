"""The suite's own schedule: `make test` starts the longest test files first."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import LONGEST_FIRST

TESTS = Path(__file__).resolve().parent


def test_every_longest_first_name_is_a_test_file():
    # A renamed or removed file would drop out of the order silently, back to the end.
    missing = [name for name in LONGEST_FIRST if not (TESTS / name).is_file()]
    assert not missing, f"LONGEST_FIRST names no such test file: {missing}"
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)


def test_make_test_keeps_the_collected_order():
    # Without --no-loadscope-reorder xdist hands out the files with the most tests first
    # and ignores the order conftest.py collects them in.
    recipe = re.search(r"^test:.*\n\t(.+)$", (TESTS.parent / "Makefile").read_text(), re.M).group(1)
    assert "--dist loadfile" in recipe and "--no-loadscope-reorder" in recipe, recipe
