class FashionbenchError(Exception):
    """A user-facing problem: the CLI prints its message on one line and exits 1."""


class UsageError(FashionbenchError):
    """A mistake in what was typed (an option, a model name, a config key or value):
    exit status 2, as argparse gives for its own usage errors."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (sent by batch schedulers and ``docker stop``), raised where the program
    is, as Python raises KeyboardInterrupt for SIGINT: the two are handled alike."""


class Stopped(FashionbenchError):
    """A run stopped by a signal after keeping what it finished; the message says how to
    continue. Exit status 128 + the signal, as the shell reports a process it killed."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def signal_stop(e: KeyboardInterrupt) -> tuple[str, int]:
    """What stopped the program and its exit status: 128 + SIGTERM's 15, or SIGINT's 2."""
    return ("terminated", 143) if isinstance(e, Terminated) else ("interrupted", 130)


def stopped(e: KeyboardInterrupt, resume: str) -> Stopped:
    """The Stopped error for SIGINT or SIGTERM, with ``resume``: how to continue."""
    what, status = signal_stop(e)
    return Stopped(f"{what}; continue with: {resume}", status)
