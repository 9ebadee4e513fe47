class FashionbenchError(Exception):
    """A user-facing problem: the CLI prints its message on one line and exits non-zero."""
