"""Files written safely and the provenance recorded beside every result: atomic writes
(``write_text``, ``write_json``, ``save_torch``, ...) that fail in one line naming the
file and the cause, the checks of an --out folder and a --name, and ``environment``
(the code, machine and command behind a result).

A run folder (its creation, what it holds, in which files) is rundir/'s.
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy
import sklearn
import torch

from .errors import FashionbenchError, UsageError
from .hardware import machine

# Causes worth naming in words of their own; others keep the system's message.
CAUSES = {errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on device",
          errno.EDQUOT: "disk quota exceeded", errno.EACCES: "permission denied",
          errno.EPERM: "operation not permitted", errno.ENOTDIR: "a file stands where a folder should be",
          errno.EFBIG: "file too large", errno.EISDIR: "is a folder"}


def os_cause(e: OSError) -> str:
    return CAUSES.get(e.errno) or (e.strerror or str(e)).lower()


def write_error(path: Path, e: BaseException) -> FashionbenchError:
    """One line for a failed write: the path, and why. torch's writer raises a RuntimeError
    about its own internals; the OSError behind it (full disk, file too large) is its context
    (``save_torch`` writes through a Python file so that there is one)."""
    if isinstance(e, RuntimeError) and isinstance(e.__context__, OSError):
        e = e.__context__
    cause = os_cause(e) if isinstance(e, OSError) else str(e).splitlines()[0][:200]
    return FashionbenchError(f"{path}: cannot write ({cause})")


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temp file in the same folder, then rename: readers never see half a
    file, and a write that fails (full disk, read-only folder) leaves the old file as it was
    and no temp file behind, and says so in one line."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        raise write_error(path, e) from None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def make_dir(path: Path) -> Path:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path, e) from None
    return Path(path)


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path: Path, data: Any) -> None:
    """Strict JSON: a NaN or infinity is a bug upstream, never a result to publish."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False)
    except ValueError:
        raise FashionbenchError(f"{path}: refusing to write {non_finite(data)}: not a finite number") from None
    write_text(path, text + "\n")


def non_finite(data: Any, key: str = "") -> str:
    """Where the first NaN or infinity in nested dicts and lists is, e.g. 'results.val.loss = nan'."""
    if isinstance(data, float) and not math.isfinite(data):
        return f"{key or 'value'} = {data}"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        if found := non_finite(v, f"{key}.{k}" if key else str(k)):
            return found
    return ""


def save_torch(path: Path, obj: Any) -> None:
    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:  # through Python's file: a failed write keeps its errno
            torch.save(obj, f)
    _atomic(path, save)


def load_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FashionbenchError(f"{path}: not found") from None
    except Exception as e:  # torch raises many kinds for a damaged file
        raise FashionbenchError(f"{path}: cannot load ({type(e).__name__})") from None


def check_out_dir(out: str | Path, option: str = "--out") -> Path:
    """``out`` is a folder, or can become one: say so now, before any work, rather than
    fail when the first result is written."""
    out = Path(out)
    existing = next(p for p in [out, *out.parents] if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise FashionbenchError(f"{option} {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FashionbenchError(f"{option} {out}: cannot write ({existing} is read-only)")
    return out


def check_name(name: str) -> str:
    """``name`` names one folder directly under --out: a path (absolute, or with a
    separator) would put the folder elsewhere, and '', '.' or '..' name no new folder."""
    separators = "/" + (os.altsep or "") + os.sep
    if name in ("", ".", "..") or any(c in name for c in separators + "\0"):
        raise UsageError(f"--name {name!r}: expected a folder name (no path, not empty, not . or ..); "
                         "--out says where the folder goes")
    return name


def git_commit() -> str | None:
    """The commit of the source checkout this package runs from, with '+dirty' if modified."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def command_line() -> str:
    """The command this process runs, as typed (``python -m fashionbench`` as
    ``fashionbench``), for the record of what produced a figure."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("__main__.py", "fashionbench"):
        program = "fashionbench"
    return shlex.join([program, *sys.argv[1:]])


def environment() -> dict[str, Any]:
    """The code, the machine and the command behind a result: what its record keeps."""
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "git_commit": git_commit(),
        **machine(),
        "command": command_line(),
    }
