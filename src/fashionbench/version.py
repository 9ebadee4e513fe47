"""The package's version, in a module of its own so that any module can name it
without importing the package's ``__init__`` (which loads the API on demand)."""

__version__ = "0.1.0"  # as pyproject.toml's [project] version
