"""Run folders: atomic file writes, the one schema of summary.json, and the
provenance recorded beside every result.

Every finished thing fashionbench writes (a run, an ensemble, ten one-vs-all
networks, a generalist with specialists) is a folder with a ``summary.json`` of
one schema, ``Summary``, written by ``write_summary`` and read by
``read_summary``; feature modules never read the JSON themselves.
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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy
import sklearn
import torch

from .config import Config, ConfigError, config_from_dict, read_yaml
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


def new_run_dir(out: str | Path, name: str | None, model: str, resumable: bool = True) -> Path:
    """A fresh run folder ``out/name``; an existing one is never written into."""
    name = f"{model}-{datetime.now():%Y%m%d-%H%M%S}" if name is None else check_name(name)
    run_dir = check_out_dir(out) / name
    if run_dir.exists():
        hint = "choose another --name or --resume it" if resumable else "choose another --name"
        raise FashionbenchError(f"{run_dir} already exists; {hint}")
    return run_dir


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


def run_config(run_dir: Path) -> Config:
    """The configuration a run folder was trained with (its config.yaml)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise not_a_run(run_dir)
    try:
        return config_from_dict(read_yaml(path))
    except ConfigError as e:  # a damaged file, not a mistake on the command line
        raise FashionbenchError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None


# Combinations of runs with no model of their own (no config.yaml, no model.pt): their
# summary.json and report are all they have. (A one-vs-all run has a model.pt.)
COMBINATIONS = {"ensemble": "an ensemble", "specialists": "a run with specialists"}


def not_a_run(run_dir: Path) -> FashionbenchError:
    """Why ``run_dir``, without a config.yaml, is not a trained run: an ensemble (or
    specialists) is named as such, with the one command that takes it; anything else is
    not a run folder."""
    try:
        kind = read_summary(run_dir).kind
    except FashionbenchError:
        kind = None
    if kind not in COMBINATIONS:
        return FashionbenchError(f"{run_dir}: not a run folder (no config.yaml)")
    return FashionbenchError(
        f"{run_dir} is {COMBINATIONS[kind]}, not a trained run: it has no model of its own. "
        f"fashionbench table lists it (its report: {Path(run_dir) / 'report'}); evaluate, report, "
        "predict, audit, export, ensemble and specialists take trained runs, such as the ones it "
        "combines (runs, in its summary.json)")


def finished_run(run_dir: Path) -> tuple[Config, Summary]:
    """A finished run's config and summary, both read strictly: the check of every
    command that uses a run's model, made before any work (a run whose summary.json is
    damaged is refused by all alike)."""
    return run_config(run_dir), read_summary(run_dir)


# -- summary.json ------------------------------------------------------------------------

# 1: no "schema" or "kind" (kind only on ensembles, whose "weights" were the fitted
#    member weights); 2: both always present, "weights" always names the reported
#    result, validation timed apart from training ("val_seconds").
SUMMARY_SCHEMA = 2
KINDS = ("run", "ensemble", "one-vs-all", "specialists")
# What every finished summary holds, of any kind and schema: a table row and a
# combination of runs are made of these.
FINISHED = ("model", "test_acc", "results", "seed", "parameters", "epochs", "seconds_per_epoch",
            "device")


@dataclass
class Summary:
    """What a finished run (or combination of runs) reports, as summary.json holds it.

    The fields are common to every kind; what only one kind has (an ensemble's
    method, one-vs-all's calibration, a run's environment and SWA snapshots) is in
    ``extra`` and written beside them, flat, in the same JSON object."""
    kind: str                    # one of KINDS
    model: str                   # architecture, or a combination's description
    test_acc: float | None       # of the reported model; None: validation only (a sweep's trial)
    results: dict                # weights -> split -> {"acc", "loss"}
    seed: int | str              # a combination's: its members' joined by "+"
    parameters: int
    epochs: int
    seconds_per_epoch: float     # training only (validation excluded from schema 2 on)
    device: str
    weights: str = ""            # the key of ``results`` that is reported: swa, last, ova, ...
    val_acc: float | None = None
    train_seconds: float = 0.0
    val_seconds: float | None = None  # None: a schema-1 summary, whose training time includes it
    train_size: int = 0
    val_size: int = 0
    test_size: int = 10_000
    variant: str | None = None   # e.g. "one-vs-all head", "binary: Shirt against the rest"
    # "val": the reported model was never chosen by a test figure. "test": the leaky
    # reference protocol (eval.select_on test), the best epoch on the test set: its test
    # accuracy is optimistic, and every table and report says so (``leaky``).
    selected_on: str = "val"
    precision: str | None = None
    data_md5: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    schema: int = SUMMARY_SCHEMA

    @property
    def leaky(self) -> bool:
        """Was the reported model chosen on the test set (its test accuracy optimistic)?"""
        return self.selected_on == "test"

    @property
    def reported(self) -> dict:
        """The reported model's results per split."""
        return self.results[self.weights]

    def accuracy(self, weights: str, split: str) -> float | None:
        """Accuracy of ``weights`` on ``split``, or None where the summary has none
        (an ensemble has no last-epoch model)."""
        return self.results.get(weights, {}).get(split, {}).get("acc")

    def to_dict(self) -> dict:
        fields = {k: v for k, v in vars(self).items() if k != "extra"}
        return {"schema": fields.pop("schema"), **fields, **self.extra}

    @classmethod
    def from_dict(cls, data: dict, path: Path) -> Summary:
        """A summary of any schema up to this one, checked; ``path`` names it in errors."""
        data = dict(data)
        schema = data.pop("schema", 1)
        if isinstance(schema, bool) or not isinstance(schema, int) or schema > SUMMARY_SCHEMA:
            raise FashionbenchError(f"{path}: summary schema {schema!r} is not one this fashionbench "
                                    f"reads (1 to {SUMMARY_SCHEMA}); a newer fashionbench wrote it?")
        missing = [key for key in FINISHED + (("kind", "weights") if schema > 1 else ()) if key not in data]
        if missing:
            raise FashionbenchError(f"{path}: not a finished run (no {', '.join(missing)})")
        acc = data["test_acc"]
        validation_only = acc is None and schema > 1  # eval.test false: a sweep's trial
        if not validation_only and (isinstance(acc, bool) or not isinstance(acc, (int, float))):
            raise FashionbenchError(f"{path}: not a finished run (test_acc {acc!r} is not a number)")
        if not isinstance(data["results"], dict):
            raise FashionbenchError(f"{path}: not a finished run (results is not a mapping)")
        if schema == 1:
            data = _from_schema_1(data)
        if data["kind"] not in KINDS:
            raise FashionbenchError(f"{path}: not a finished run (unknown kind {data['kind']!r})")
        known = {f for f in cls.__dataclass_fields__ if f not in ("extra", "schema")}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})


def _from_schema_1(data: dict) -> dict:
    """A schema-1 summary in today's terms: its kind (only ensembles said), and an
    ensemble's fitted member weights under their own name."""
    kind = data.get("kind") or {"ova": "one-vs-all", "specialists": "specialists"}.get(data.get("weights"), "run")
    if kind == "ensemble":
        data["member_weights"] = data.pop("weights", None)
        data["weights"] = "ensemble"
    return {**data, "kind": kind, "weights": data.get("weights") or next(iter(data["results"]), "")}


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as inf
        raise _NonFinite(text)
    return value


def read_summary(run_dir: Path) -> Summary:
    """A finished run's summary.json, strictly: valid JSON without NaN or Infinity (a
    diverged run's), with the fields every finished run writes; any schema so far."""
    path = Path(run_dir) / "summary.json"
    try:
        data = json.loads(path.read_text(), parse_constant=_refuse_constant, parse_float=_finite_float)
    except FileNotFoundError:
        raise FashionbenchError(f"{run_dir}: no summary.json (run not finished?)") from None
    except OSError as e:
        raise FashionbenchError(f"{path}: cannot read ({e.strerror})") from None
    except _NonFinite as e:
        raise FashionbenchError(f"{path}: not a finished run (non-finite value {e})") from None
    except json.JSONDecodeError as e:
        raise FashionbenchError(f"{path}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise FashionbenchError(f"{path}: not valid JSON (not UTF-8 text)") from None
    if not isinstance(data, dict):
        raise FashionbenchError(f"{path}: not a finished run (not a JSON object)")
    return Summary.from_dict(data, path)


def read_history(run_dir: Path) -> list[dict]:
    """``run_dir``/metrics.jsonl, one dict per finished epoch (losses, accuracies, LR, SWA
    snapshots, seconds); [] where there is none (an ensemble; a one-vs-all run keeps its
    members' in their folders)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FashionbenchError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def write_summary(run_dir: Path, summary: Summary) -> None:
    """``run_dir``/summary.json: the mark of a finished run, written last."""
    write_json(Path(run_dir) / "summary.json", summary.to_dict())
