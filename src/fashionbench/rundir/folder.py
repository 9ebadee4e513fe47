"""``RunDir``, a run folder of any kind in any state, every file read from or written
to it; its kind (one rule, ``kind_of``); ``FinishedRun``, a finished trained run, and
``finished``, which gives one."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import nn

from .. import runs
from ..config import Config, ConfigError, config_from_dict, dump_config, read_yaml
from ..errors import FashionbenchError, UsageError
from ..models import build_model
from ..models.one_vs_all import OneVsAllNetwork
from ..summary import TRAINED, Kind, Summary
from .files import (
    CHECKPOINT,
    CONFIG,
    EXPORTS,
    HISTORY,
    MODEL,
    REPORT,
    ROBUSTNESS,
    SETUP,
    SUMMARY,
    TENSORBOARD,
    TRACKING,
    SavedModel,
    State,
    member_name,
    pair_name,
    read_history,
    read_summary,
    state_of,
    write_summary,
)

# -- a folder ----------------------------------------------------------------------------

class RunDir:
    """A run folder of any kind, in any state. What it holds is read when first asked
    for and kept (``config``, ``summary``); ``kind`` and ``state`` look again each time."""

    def __init__(self, path: str | Path, summary: Summary | None = None):
        self.path = Path(path)
        if summary is not None:
            self.__dict__["summary"] = summary  # cached_property's slot: no second read

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -- creating ------------------------------------------------------------------------
    @classmethod
    def create(cls, out: str | Path, name: str | None, model: str, resumable: bool = True) -> RunDir:
        """A new folder ``out``/``name`` (default MODEL-YYYYmmdd-HHMMSS), made when its
        first file is written; an existing one is refused ("choose another --name", or
        "--resume it" for a kind that resumes)."""
        name = f"{model}-{datetime.now():%Y%m%d-%H%M%S}" if name is None else runs.check_name(name)
        path = runs.check_out_dir(out) / name
        if path.exists():
            hint = "choose another --name or --resume it" if resumable else "choose another --name"
            raise FashionbenchError(f"{path} already exists; {hint}")
        return cls(path)

    def member(self, c: int) -> RunDir:
        """One-vs-all's member for class ``c``."""
        return RunDir(self.path / member_name(c))

    def pair(self, i: int, j: int) -> RunDir:
        """The specialist for the pair of classes ``i``, ``j``."""
        return RunDir(self.path / pair_name(i, j))

    # -- kind and state ------------------------------------------------------------------
    @property
    def kind(self) -> Kind | None:
        """The one rule of a folder's kind. A one-vs-all member folder (made first) makes
        it ONE_VS_ALL; a config makes it a RUN, or BINARY where data.positive_class is
        set; the specialists' setup makes it SPECIALISTS; else its summary's kind says
        (a run's binary by its variant); neither: None, not a run folder."""
        if (self.path / member_name(0)).is_dir():
            return Kind.ONE_VS_ALL
        if self.has_config:
            written = self._written_config_or_none()
            data = written.get("data") if written else None
            if isinstance(data, dict) and data.get("positive_class") is not None:
                return Kind.BINARY
            if written is not None:
                return Kind.RUN
        elif (self.path / SETUP).is_file():
            return Kind.SPECIALISTS
        try:
            summary = self.summary
        except FashionbenchError:  # a config that cannot be read is still a run's
            return Kind.RUN if self.has_config else None
        return Kind.BINARY if summary.kind is Kind.RUN and summary.binary else summary.kind

    @property
    def state(self) -> State:
        return state_of(self.path)

    @property
    def has_config(self) -> bool:
        return (self.path / CONFIG).is_file()

    # -- the config ----------------------------------------------------------------------
    @cached_property
    def _written_config(self) -> dict:
        """The config file's keys, parsed once."""
        return read_yaml(self.path / CONFIG)

    def _written_config_or_none(self) -> dict | None:
        try:
            return self._written_config
        except FashionbenchError:
            return None

    @cached_property
    def config(self) -> Config:
        """The resolved config the run trained with, read strictly (a damaged file is
        one line naming it); a folder without one is not a trained run (``not_a_run``)."""
        path = self.path / CONFIG
        if not path.exists():
            raise self.not_a_run()
        try:
            return config_from_dict(self._written_config)
        except ConfigError as e:  # a damaged file, not a mistake on the command line
            raise FashionbenchError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from None

    def write_config(self, cfg: Config) -> None:
        runs.write_text(self.path / CONFIG, dump_config(cfg))

    def not_a_run(self) -> FashionbenchError:
        """Why this folder, without a config, is not a trained run: an ensemble (or
        specialists) is named as such, with the one command that takes it; anything else
        is not a run folder."""
        kind = self.kind
        if kind not in (Kind.ENSEMBLE, Kind.SPECIALISTS):
            return FashionbenchError(f"{self.path}: not a run folder (no {CONFIG})")
        return FashionbenchError(
            f"{self.path} is {kind.described}, not a trained run: it has no model of its own. "
            f"fashionbench table lists it (its report: {self.path / REPORT}); evaluate, report, "
            "predict, audit, export, ensemble and specialists take trained runs, such as the ones it "
            f"combines (runs, in its {SUMMARY})")

    # -- checkpoint and history ----------------------------------------------------------
    def write_checkpoint(self, state: dict, history: list[dict]) -> None:
        """The state after an epoch, then the history up to it."""
        runs.save_torch(self.path / CHECKPOINT, state)
        runs.write_text(self.path / HISTORY, "".join(json.dumps(row) + "\n" for row in history))

    def read_checkpoint(self) -> dict:
        return runs.load_torch(self.path / CHECKPOINT)

    def read_history(self) -> list[dict]:
        return read_history(self.path)

    # -- experiment tracking (--track) -----------------------------------------------------
    def read_tracking(self) -> dict:
        """What logs the run elsewhere, by backend (tracking/): {} where nothing has."""
        path = self.path / TRACKING
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FashionbenchError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
        return record if isinstance(record, dict) else {}

    def write_tracking(self, record: dict) -> None:
        runs.write_json(self.path / TRACKING, record)

    @property
    def tensorboard(self) -> Path:
        """The run's TensorBoard event files, where --tensorboard-dir does not put them elsewhere."""
        return self.path / TENSORBOARD

    def discard_new(self) -> None:
        """Remove the folder of a run that never finished an epoch: it holds its config
        alone (and, logged to MLflow, the record of its MLflow run, which keeps the failure).
        A folder holding anything else is kept, as is one not ours to remove."""
        try:
            names = sorted(path.name for path in self.path.iterdir())
            if CONFIG in names and set(names) <= {CONFIG, TRACKING}:
                for name in names:
                    (self.path / name).unlink()
                self.path.rmdir()
        except OSError:
            pass  # gone, or not ours to remove: what stopped the run is what the user must hear of

    # -- the model -----------------------------------------------------------------------
    def write_model(self, network: nn.Module, model: str, weights: str, num_classes: int) -> None:
        """The final model: a single network of architecture ``model``, or one-vs-all's
        combined ``OneVsAllNetwork`` of ``num_classes`` binary ``model`` networks."""
        layout: dict[str, Any] = {"model": model}
        if isinstance(network, OneVsAllNetwork):
            layout["kind"] = Kind.ONE_VS_ALL.value
        layout |= {"weights": weights, "num_classes": num_classes, "state_dict": network.state_dict()}
        runs.save_torch(self.path / MODEL, layout)

    def read_model(self) -> SavedModel:
        """The final model, either layout, built and loaded on the CPU."""
        path = self.path / MODEL
        if not path.exists():
            raise FashionbenchError(f"{self.path}: no {MODEL} (run not finished?)")
        saved = runs.load_torch(path)
        try:
            if saved.get("kind") == Kind.ONE_VS_ALL:
                network = OneVsAllNetwork([build_model(saved["model"], 2) for _ in range(saved["num_classes"])])
            else:
                network = build_model(saved["model"], saved.get("num_classes", 10))
            network.load_state_dict(saved["state_dict"])
            return SavedModel(network, saved["weights"])
        except (AttributeError, KeyError, TypeError, RuntimeError) as e:  # another layout, or another network's
            raise FashionbenchError(f"{path}: not a model of this fashionbench ({type(e).__name__})") from None

    # -- the summary ---------------------------------------------------------------------
    @cached_property
    def summary(self) -> Summary:
        return read_summary(self.path)

    def write_summary(self, summary: Summary) -> None:
        write_summary(self.path, summary)
        self.__dict__["summary"] = summary

    # -- accuracy under corruptions --------------------------------------------------------
    def read_robustness(self) -> dict | None:
        """The folder's record of accuracy under corruptions, or None where it has none;
        a damaged one is one line naming it."""
        path = self.path / ROBUSTNESS
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FashionbenchError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
        if not isinstance(record, dict):
            raise FashionbenchError(f"{path}: not a robustness record (not a JSON object)")
        return record

    def write_robustness(self, record: dict) -> Path:
        runs.write_json(self.path / ROBUSTNESS, record)
        return self.path / ROBUSTNESS

    def export_file(self, format: str) -> Path:
        """Where ``fashionbench export`` writes the model by default."""
        return self.path / EXPORTS[format]

    # -- requirements --------------------------------------------------------------------
    def finished(self, kinds: Iterable[Kind] = TRAINED, refusal: str | None = None) -> FinishedRun:
        """This folder as a finished trained run, or one line saying why it is not: not a
        run folder, an ensemble, a damaged config or summary, not finished, or a kind
        not in ``kinds`` (``refusal`` says why, after the path; by default its kind)."""
        cfg, summary = self.config, self.summary
        if not (self.path / MODEL).exists():
            raise FashionbenchError(f"{self.path}: no {MODEL} (run not finished?)")
        return FinishedRun(self.path, self.kind, cfg, summary).of_kind(kinds, refusal)

    def resumable(self, kind: Kind) -> Config:
        """This folder's config, where ``kind``'s command can resume it; else one line: not
        a run folder (or damaged), complete, or of the other command."""
        cfg = self.config
        self.require_unfinished()
        mine = self.kind is Kind.ONE_VS_ALL
        if mine != (kind is Kind.ONE_VS_ALL):
            right = Kind.ONE_VS_ALL if mine else Kind.RUN
            raise UsageError(f"{self.path} is {right.described}; "
                             f"resume it with fashionbench {right.command} --resume {self.path}")
        return cfg

    def require_unfinished(self) -> None:
        if self.state is State.COMPLETE:
            raise FashionbenchError(f"{self.path} is already complete ({SUMMARY} exists)")


def kind_of(path: str | Path) -> Kind | None:
    """The one rule of a folder's kind (None: not a run folder)."""
    return RunDir(path).kind


@dataclass(frozen=True)
class FinishedRun:
    """A finished trained run: what every command that uses a run's model is given.
    Its config and summary were read (strictly) and its kind checked once, by
    ``RunDir.finished``."""
    path: Path
    kind: Kind
    cfg: Config
    summary: Summary

    @property
    def folder(self) -> RunDir:
        return RunDir(self.path, self.summary)

    def of_kind(self, kinds: Iterable[Kind] = TRAINED, refusal: str | None = None) -> FinishedRun:
        """Itself, if its kind is one of ``kinds``; else one line: ``refusal`` after the
        path, or by default what it is and what is taken."""
        kinds = tuple(kinds)
        if self.kind not in kinds:
            raise FashionbenchError(f"{self.path} {refusal}" if refusal else
                                    f"{self.path} is {self.kind.described}; this takes "
                                    + " or ".join(k.described for k in kinds))
        return self

    def read_model(self) -> SavedModel:
        return self.folder.read_model()


def finished(run: FinishedRun | RunDir | str | Path, kinds: Iterable[Kind] = TRAINED,
             refusal: str | None = None) -> FinishedRun:
    """``run`` as a finished trained run of one of ``kinds`` (one already is: its kind is
    checked again, nothing is read)."""
    if isinstance(run, FinishedRun):
        return run.of_kind(kinds, refusal)
    return (run if isinstance(run, RunDir) else RunDir(run)).finished(kinds, refusal)
