"""summary.json: one schema for every kind of result, written and read by one pair
of functions; summaries of the earlier schema still read."""

import json
import re

import pytest

from fashionbench.errors import FashionbenchError
from fashionbench.rundir import SUMMARY_SCHEMA, Summary, read_summary, write_summary


def a_summary(**changes) -> Summary:
    fields = dict(kind="run", model="basic_cnn", weights="swa", val_acc=0.93, test_acc=0.94,
                  results={"last": {"val": {"acc": 0.92, "loss": 0.3}, "test": {"acc": 0.93, "loss": 0.3}},
                           "swa": {"val": {"acc": 0.93, "loss": 0.2}, "test": {"acc": 0.94, "loss": 0.2}}},
                  seed=0, parameters=732_114, epochs=30, seconds_per_epoch=50.0, device="cpu",
                  train_seconds=1500.0, val_seconds=30.0, train_size=55_000, val_size=5000,
                  precision="bf16", data_md5={"f": "0"}, extra={"swa_snapshots": 6, "git_commit": "abc"})
    return Summary(**{**fields, **changes})


def test_a_summary_round_trips_with_its_schema_and_kind(tmp_path):
    summary = a_summary()
    write_summary(tmp_path, summary)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["schema"] == SUMMARY_SCHEMA == 2 and written["kind"] == "run"
    assert written["swa_snapshots"] == 6 and "extra" not in written  # kind-specific fields sit flat
    assert read_summary(tmp_path) == summary
    assert summary.reported == summary.results["swa"]
    assert summary.accuracy("last", "test") == 0.93 and summary.accuracy("ensemble", "test") is None


def schema_1(**fields) -> dict:
    """A summary.json as fashionbench wrote them before the schema had a number."""
    return {"model": "basic_cnn", "test_acc": 0.94, "val_acc": 0.93, "seed": 0, "parameters": 1,
            "epochs": 2, "seconds_per_epoch": 3.0, "device": "cpu", "train_seconds": 6.0, **fields}


@pytest.mark.parametrize("fields, kind, weights", [
    ({"weights": "swa", "results": {"swa": {}, "last": {}}}, "run", "swa"),
    ({"weights": "ova", "results": {"ova": {}}, "variant": "one-vs-all, 10 binary"}, "one-vs-all", "ova"),
    ({"weights": "specialists", "results": {"specialists": {}}}, "specialists", "specialists"),
    ({"kind": "ensemble", "weights": [0.25, 0.75], "results": {"ensemble": {}}}, "ensemble", "ensemble"),
    ({"kind": "ensemble", "weights": None, "results": {"ensemble": {}}}, "ensemble", "ensemble"),
    ({"results": {"last": {}}}, "run", "last"),  # the least a table needs
])
def test_a_schema_1_summary_reads_as_today_s(tmp_path, fields, kind, weights):
    (tmp_path / "summary.json").write_text(json.dumps(schema_1(**fields)))
    summary = read_summary(tmp_path)
    assert (summary.kind, summary.weights, summary.schema) == (kind, weights, 2)
    assert summary.val_seconds is None  # its training time included validation
    if kind == "ensemble":  # the fitted member weights, under their own name now
        assert summary.extra["member_weights"] == fields["weights"]


@pytest.mark.parametrize("fields, why", [
    ({"schema": 3}, "summary schema 3 is not one this fashionbench reads"),
    ({"schema": True}, "summary schema True is not one"),
    ({"schema": 2, "weights": "last"}, "not a finished run (no kind)"),
    ({"schema": 2, "kind": "tournament", "weights": "last"}, "not a finished run (unknown kind 'tournament')"),
])
def test_a_summary_of_an_unknown_schema_or_kind_is_refused(tmp_path, fields, why):
    (tmp_path / "summary.json").write_text(json.dumps(schema_1(results={"last": {}}, **fields)))
    with pytest.raises(FashionbenchError, match=re.escape(why)):
        read_summary(tmp_path)
