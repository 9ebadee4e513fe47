"""What a finished folder records: its kind (``Kind``) and its results (``Summary``),
one schema for every kind, read strictly from JSON text (``parse_summary``). The files
themselves are rundir/'s: it reads and writes them through this module."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .errors import FashionbenchError, UsageError


class Kind(StrEnum):
    """What a folder is. A value is also a summary's ``kind`` (but BINARY: a binary
    member's summary says "run")."""
    RUN = "run"                  # one ten-class network (softmax, or the one-vs-all head)
    ONE_VS_ALL = "one-vs-all"    # ten binary members (``member_name``) combined into one model
    ENSEMBLE = "ensemble"        # finished runs combined; no model of its own
    SPECIALISTS = "specialists"  # a generalist and binary specialists (``pair_name``); no model of its own
    BINARY = "binary"            # one binary network (data.positive_class): a one-vs-all member, a specialist

    @classmethod
    def of_command(cls, kind: Kind | str) -> Kind:
        """The kind a training command trains and resumes, RUN or ONE_VS_ALL, given as
        itself or as the command's name ("train", "one-vs-all")."""
        found = {"train": cls.RUN, cls.RUN: cls.RUN, cls.ONE_VS_ALL: cls.ONE_VS_ALL}.get(kind)
        if found is None:
            raise UsageError(f"kind must be train or one-vs-all, not {str(kind)!r}")
        return found

    @property
    def trained(self) -> bool:
        """Does a folder of this kind have a config and a model of its own?"""
        return self in TRAINED

    @property
    def command(self) -> str | None:
        """The command that trains (and resumes) a folder of this kind."""
        return {Kind.RUN: "train", Kind.BINARY: "train", Kind.ONE_VS_ALL: "one-vs-all"}.get(self)

    @property
    def described(self) -> str:
        return DESCRIBED[self]


DESCRIBED = {Kind.RUN: "a single run", Kind.ONE_VS_ALL: "a one-vs-all run", Kind.ENSEMBLE: "an ensemble",
             Kind.SPECIALISTS: "a run with specialists", Kind.BINARY: "a binary run"}
# The kinds with a model of their own: what evaluate, report, predict, audit, export,
# ensemble and specialists take.
TRAINED = (Kind.RUN, Kind.ONE_VS_ALL, Kind.BINARY)
# The kinds a summary names (a binary member's summary is a run's).
SUMMARY_KINDS = (Kind.RUN, Kind.ENSEMBLE, Kind.ONE_VS_ALL, Kind.SPECIALISTS)


# 1: no "schema" or "kind" (kind only on ensembles, whose "weights" were the fitted
#    member weights); 2: both always present, "weights" always names the reported
#    result, validation timed apart from training ("val_seconds").
SUMMARY_SCHEMA = 2
# What every finished summary holds, of any kind and schema: a table row and a
# combination of runs are made of these.
FINISHED = ("model", "test_acc", "results", "seed", "parameters", "epochs", "seconds_per_epoch",
            "device")


@dataclass
class Summary:
    """What a finished run (or combination of runs) reports, as its summary holds it.

    The fields are common to every kind; what only one kind has (an ensemble's
    method, one-vs-all's calibration, a run's environment and SWA snapshots) is in
    ``extra`` and written beside them, flat, in the same JSON object."""
    kind: Kind                   # one of SUMMARY_KINDS (given as a Kind or its value)
    model: str                   # architecture, or a combination's description
    test_acc: float | None       # of the reported model; None: validation only (a sweep's trial)
    results: dict                # weights -> split -> {"acc", "loss"}
    seed: int | str              # a combination's: its members' joined by "+"
    parameters: int
    epochs: int
    seconds_per_epoch: float     # training only (validation excluded from schema 2 on)
    device: str
    weights: str = ""            # the key of ``results`` that is reported: swa, ema, last, ova, ...
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
    # Temperature scaling of the reported model (calibration.temperature_scaling): its T,
    # fitted on validation, and ECE, NLL and Brier on each split before and after. None:
    # a summary written before it (T is then 1; ``fashionbench calibrate`` adds it).
    temperature_scaling: dict | None = None
    extra: dict = field(default_factory=dict)
    schema: int = SUMMARY_SCHEMA

    def __post_init__(self):
        self.kind = Kind(self.kind)

    @property
    def leaky(self) -> bool:
        """Was the reported model chosen on the test set (its test accuracy optimistic)?"""
        return self.selected_on == "test"

    @property
    def reported(self) -> dict:
        """The reported model's results per split."""
        return self.results[self.weights]

    @property
    def binary(self) -> bool:
        """A binary run's (data.positive_class), by its variant."""
        return (self.variant or "").startswith("binary")

    @property
    def temperature(self) -> float:
        """The temperature the reported model's logits are divided by (1: none fitted)."""
        return self.temperature_scaling["temperature"] if self.temperature_scaling else 1.0

    def calibration(self, split: str) -> tuple[dict, dict] | None:
        """ECE, NLL and Brier on ``split`` before and after temperature scaling, or None
        where the summary has none (written before them, or a split not evaluated)."""
        scaling = self.temperature_scaling
        if not scaling or split not in scaling["before"]:
            return None
        return scaling["before"][split], scaling["after"][split]

    def accuracy(self, weights: str, split: str) -> float | None:
        """Accuracy of ``weights`` on ``split``, or None where the summary has none
        (an ensemble has no last-epoch model)."""
        return self.results.get(weights, {}).get(split, {}).get("acc")

    def to_dict(self) -> dict:
        fields = {k: v for k, v in vars(self).items() if k != "extra"}
        fields["kind"] = fields["kind"].value
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
        if not isinstance(data["kind"], str) or data["kind"] not in SUMMARY_KINDS:
            raise FashionbenchError(f"{path}: not a finished run (unknown kind {data['kind']!r})")
        _check_temperature_scaling(data.get("temperature_scaling"), path)
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


def _check_temperature_scaling(scaling, path: Path) -> None:
    """A summary's temperature scaling, if any, is one a model can be divided by: a
    positive T, and the before and after scores of the same splits."""
    if scaling is None:
        return
    t = scaling.get("temperature") if isinstance(scaling, dict) else None
    if (isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0
            or not isinstance(scaling.get("before"), dict) or not isinstance(scaling.get("after"), dict)
            or scaling["before"].keys() != scaling["after"].keys()):
        raise FashionbenchError(f"{path}: temperature_scaling is damaged (a positive temperature, and scores "
                                "before and after it, expected); fashionbench calibrate writes it again "
                                "once it is removed")


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NonFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as inf
        raise _NonFinite(text)
    return value


def parse_summary(text: str, path: Path) -> Summary:
    """A summary from its JSON text, strictly: valid JSON without NaN or Infinity (a
    diverged run's), a JSON object with the fields every finished run writes; any schema
    so far. ``path`` names it in errors."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NonFinite as e:
        raise FashionbenchError(f"{path}: not a finished run (non-finite value {e})") from None
    except json.JSONDecodeError as e:
        raise FashionbenchError(f"{path}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise FashionbenchError(f"{path}: not a finished run (not a JSON object)")
    return Summary.from_dict(data, path)
