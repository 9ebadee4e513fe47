"""A deadline: seconds from now on a clock, and a hard stop when it passes.

``reproduce --deadline`` plans against it (Deadline.left), and its hard stop interrupts
whatever is still running when it comes: a run whose cost nobody has measured yet may
take longer than the time left, and a command that overruns its limit on a lent GPU
brings nothing back at all."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator


class DeadlineReached(KeyboardInterrupt):
    """Raised where the program is when the deadline passes. A KeyboardInterrupt, as
    SIGTERM's ``Terminated`` is, so that it unwinds the same way (nothing half-written:
    writes are atomic, and a run keeps its last epoch's checkpoint) and no ``except
    Exception`` on the way swallows it."""


class Deadline:
    """``seconds`` from now on ``clock`` (tests pass a fake one; only the real clock,
    time.monotonic, has a hard stop)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = seconds, clock
        self.end = clock() + seconds

    def left(self) -> float:
        return self.end - self.clock()

    @contextlib.contextmanager
    def hard_stop(self) -> Iterator[None]:
        """Within it, DeadlineReached is raised in the main thread when the deadline
        passes (SIGALRM; not armed on a fake clock or outside the main thread, where
        Python delivers no signal)."""
        if self.clock is not time.monotonic or threading.current_thread() is not threading.main_thread():
            yield
            return

        def reached(signum, frame):
            raise DeadlineReached()

        previous = signal.signal(signal.SIGALRM, reached)
        try:
            # A deadline already past fires at once (0 would disarm the timer instead).
            signal.setitimer(signal.ITIMER_REAL, max(self.left(), 1e-6))
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
