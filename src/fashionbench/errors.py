class FashionbenchError(Exception):
    """A user-facing problem: the CLI prints its message on one line and exits 1."""


class UsageError(FashionbenchError):
    """A mistake in what was typed (an option, a model name, a config key or value):
    exit status 2, as argparse gives for its own usage errors."""
