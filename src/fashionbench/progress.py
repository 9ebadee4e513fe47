"""Progress of long work, one mechanism for every command.

On a terminal, a live bar (tqdm, on stderr) that is gone when the work is done.
Without one (output to a log file or a pipe), plain lines on stdout, beside the
epoch lines: one as a stage starts (or as each of its steps starts), so that a log
always says what the program is doing, and never a bar's carriage returns. A line
that sums a stage up (an epoch's figures) is its caller's, given to ``close``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Literal, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def bar_seen() -> bool:
    """A live bar is seen: stderr, where it is drawn, is a terminal."""
    return sys.stderr.isatty()


def lines_wanted() -> bool:
    """Stages are said on lines of their own unless a bar shows them on the terminal that
    stdout is too (``> log`` with stderr on a terminal: the bar there, lines in the log)."""
    return not (bar_seen() and sys.stdout.isatty())


class Progress:
    """``total`` steps of work called ``desc``: a live bar on a terminal; without one,
    ``announce`` says "stage": ``desc ...`` as the work starts, or "steps": ``desc:
    LABEL ...`` as each ``step`` starts (for steps long enough to be told apart), or
    None: nothing (the caller's ``close`` line says it). ``quiet``: no bar and no line
    (the processes of a data-parallel run other than rank 0)."""

    def __init__(self, total: int, desc: str, quiet: bool = False,
                 announce: Literal["stage", "steps"] | None = None):
        self.desc, self.quiet = desc, quiet
        self.say = announce if not quiet and lines_wanted() else None
        if self.say == "stage":
            print(f"{desc} ...", flush=True)
        self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True,
                        disable=quiet or not bar_seen())

    def update(self, n: int, **stats) -> None:
        self.bar.update(n)
        if stats:
            self.bar.set_postfix(stats, refresh=False)

    def step(self, label: str, work: Callable[..., T], *args, **kwargs) -> T:
        """``work(*args, **kwargs)`` as the next step, named ``label`` beside the bar, or
        on a line of its own as it starts where steps are announced."""
        if self.say == "steps":
            print(f"{self.desc}: {label} ...", flush=True)
        self.bar.set_postfix_str(label)
        result = work(*args, **kwargs)
        self.bar.update(1)
        return result

    def close(self, line: str = "") -> None:
        self.bar.close()
        if line and not self.quiet:
            print(line, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()  # gone before an error's line is printed; closing twice is harmless


def stage(desc: str, work: Callable[..., T], *args, **kwargs) -> T:
    """``work(*args, **kwargs)`` as one stage of its own, said as it starts."""
    with Progress(1, desc, announce="stage") as progress:
        result = work(*args, **kwargs)
        progress.update(1)
    return result
