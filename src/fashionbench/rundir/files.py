"""A run folder's files by name, its state (one rule), the files read without a
``RunDir`` (summary, history), and the model as saved."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from torch import nn

from .. import runs
from ..errors import FashionbenchError
from ..summary import SUMMARY_SCHEMA as SUMMARY_SCHEMA  # the schema, also where the folder is
from ..summary import Summary, parse_summary

# -- the files ---------------------------------------------------------------------------

CONFIG = "config.yaml"          # the resolved configuration, written first
HISTORY = "metrics.jsonl"       # one JSON line per finished epoch
CHECKPOINT = "checkpoint.pt"    # the state after the last finished epoch: what a resume continues
MODEL = "model.pt"              # the final model
SUMMARY = "summary.json"        # the results, one schema for every kind: the mark of a finished folder
SETUP = "setup.json"            # specialists: the generalist and the pairs they were set up with
REPORT = "report"               # the report folder (the test split's)
ROBUSTNESS = "robustness.json"  # accuracy under corruptions (fashionbench robustness)
TRACKING = "tracking.json"      # --track mlflow: the MLflow run logging it, which a resume continues (tracking/)
TENSORBOARD = "tensorboard"     # --track tensorboard: its event files, unless --tensorboard-dir puts them elsewhere
# A trained run's files, in the order they are first written.
FILES = (CONFIG, HISTORY, CHECKPOINT, MODEL, SUMMARY)
# A model exported next to its run (``fashionbench export`` without --out).
EXPORTS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}


def member_name(c: int) -> str:
    """One-vs-all's member folder for class ``c`` (the first is made before anything
    else: it marks the folder as one-vs-all's however early it stopped)."""
    return f"class-{c}"


def pair_name(i: int, j: int) -> str:
    """The specialists' member folder for the pair of classes ``i``, ``j``."""
    return f"pair-{i}-{j}"


# -- kind and state ----------------------------------------------------------------------

class State(StrEnum):
    """How far a folder got. A combination (one-vs-all, specialists) has no checkpoint of
    its own: until it is complete it is NEW, and each member has its own state (they
    resume member by member)."""
    NEW = "new"                  # nothing to continue from: no folder, or stopped before its first checkpoint
    INTERRUPTED = "interrupted"  # a checkpoint and no summary: resumes from the checkpoint
    COMPLETE = "complete"        # a summary: finished, read back and never trained again


def state_of(path: str | Path) -> State:
    """The one rule of a folder's state: a summary is COMPLETE, else a checkpoint is
    INTERRUPTED, else NEW."""
    path = Path(path)
    if (path / SUMMARY).exists():
        return State.COMPLETE
    if (path / CHECKPOINT).exists():
        return State.INTERRUPTED
    return State.NEW


def read_summary(run_dir: str | Path) -> Summary:
    """A finished folder's summary, strictly (``parse_summary``): valid JSON without NaN
    or Infinity (a diverged run's), with the fields every finished run writes; any schema so far."""
    path = Path(run_dir) / SUMMARY
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FashionbenchError(f"{run_dir}: no {SUMMARY} (run not finished?)") from None
    except OSError as e:
        raise FashionbenchError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise FashionbenchError(f"{path}: not valid JSON (not UTF-8 text)") from None
    return parse_summary(text, path)


def write_summary(run_dir: str | Path, summary: Summary) -> None:
    """The folder's summary: the mark of a finished folder, written last."""
    runs.write_json(Path(run_dir) / SUMMARY, summary.to_dict())


def read_history(run_dir: str | Path) -> list[dict]:
    """One dict per finished epoch (losses, accuracies, LR, SWA snapshots, seconds); []
    where there is none (an ensemble; a one-vs-all run keeps its members' in their folders)."""
    path = Path(run_dir) / HISTORY
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FashionbenchError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def finished_under(path: str | Path, recursive: bool = True) -> list[Path]:
    """The finished folders under ``path`` (at any depth, or directly in it), in name order."""
    pattern = f"**/{SUMMARY}" if recursive else f"*/{SUMMARY}"
    return sorted(p.parent for p in Path(path).glob(pattern))


# -- the model ---------------------------------------------------------------------------

@dataclass
class SavedModel:
    """A run's final model as saved: the network on the CPU (without the TTA wrapper
    it may be evaluated in) and which weights it is ("swa", "ema", "last", "best_on_test", "ova")."""
    network: nn.Module
    weights: str
