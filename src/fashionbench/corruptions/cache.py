"""The cache of corrupted image sets: an .npz file per corruption, severity, seed and set."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import torch

from .. import runs
from .table import VERSION, corrupt

CACHE_ENV = "FASHIONBENCH_CORRUPTIONS_DIR"

Tensor = torch.Tensor


# -- the cache ---------------------------------------------------------------------------

def default_cache_dir() -> Path:
    """$FASHIONBENCH_CORRUPTIONS_DIR, else the per-user cache's fashionbench/corruptions
    ($XDG_CACHE_HOME/fashionbench/corruptions on Linux)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    try:  # absent on a bare GPU machine (see data.default_data_dir)
        import platformdirs
        base = Path(platformdirs.user_cache_dir("fashionbench"))
    except ImportError:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fashionbench"
    return base / "corruptions"


class CorruptionCache:
    """One .npz file per (corruption, severity, seed, set of images, VERSION) in
    ``folder``, holding the whole set corrupted (uint8): made once, written atomically,
    read back after. A file that cannot be read, or holds other images than its name
    says, is made again (with a warning). ``made`` counts the sets made by this cache."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder).expanduser() if folder else default_cache_dir()
        self.made = 0

    def path(self, name: str, severity: int, seed: int, source: str) -> Path:
        return self.folder / f"{source}-{name}-s{severity}-seed{seed}-v{VERSION}.npz"

    def images(self, images: Tensor, source: str, name: str, severity: int, seed: int) -> np.ndarray:
        """``images`` (uint8 (N, 1, H, W), named ``source``: the same name must always
        mean the same images) corrupted, as (N, 1, H, W) uint8, from the cache if there."""
        path = self.path(name, severity, seed, source)
        expected = tuple(images.shape)
        if path.exists():
            try:
                with np.load(path) as stored:
                    found = stored["images"]
                    if (found.shape == expected and found.dtype == np.uint8
                            and str(stored["name"]) == name and int(stored["severity"]) == severity
                            and int(stored["seed"]) == seed and int(stored["version"]) == VERSION):
                        return found
                why = "holds other images"
            except Exception as e:  # numpy and zipfile raise many kinds for a damaged file
                why = f"cannot be read ({type(e).__name__})"
            print(f"fashionbench: warning: {path} {why}; making it again", file=sys.stderr, flush=True)
        made = corrupt(images, name, severity, seed).numpy()
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=made, name=name, severity=severity, seed=seed, version=VERSION)
        runs.make_dir(self.folder)
        runs.write_bytes(path, buffer.getvalue())
        self.made += 1
        return made
