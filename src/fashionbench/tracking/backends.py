"""The places a run is logged, behind one interface (``Backend``): ``TensorBoard`` (event
files through torch's SummaryWriter) and ``MLflow`` (a tracking server or store, through
``MlflowClient``); each an optional extra, imported only when asked for. Also: MLflow's
HTTP settings, and its failures said in one line."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import FashionbenchError, UsageError

BACKENDS = ("tensorboard", "mlflow")
EXPERIMENT = "fashionbench"     # the MLflow experiment when none is named
INSTALL = {"tensorboard": "pip install 'fashionbench[tensorboard]'", "mlflow": "pip install 'fashionbench[mlflow]'"}

# MLflow retries a failed request 7 times with a growing pause, each up to 120 s: minutes
# before a server that is down says so. Checking the server before training, one retry
# and 5 s are enough to tell; while a run trains, a few retries ride out a blip and a
# server down longer stops the logging within seconds, not minutes. Where the user set
# these variables, theirs hold.
CHECK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
RUN_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}

# MLflow's limits: entries per log_batch call, characters of a tag's value.
BATCH = 100
TAG_CHARS = 5000



def parse_backends(track: str | Sequence[str] | None) -> tuple[str, ...]:
    """``--track`` as given (a name, a comma list, or a list of either), each backend once."""
    items = [track] if isinstance(track, str) else list(track or ())
    names = [name.strip() for item in items for name in str(item).split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise UsageError(f"--track {', '.join(unknown)}: not a tracking backend (choose from {', '.join(BACKENDS)})")
    return tuple(dict.fromkeys(names))


@contextlib.contextmanager
def http_settings(settings: dict[str, str]) -> Iterator[None]:
    """MLflow's HTTP retries and timeout as ``settings`` say, for the calls inside, where
    the user has not set them."""
    added = {name: value for name, value in settings.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def one_line(e: BaseException) -> str:
    """An exception's message on one line, short: MLflow's carry the server's whole reply."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def cause(e: BaseException) -> str:
    """Why an MLflow call failed, short: the system's reason where there is one
    ("Connection refused"), which MLflow buries in a page of urllib3's retries."""
    found = re.search(r"\[Errno -?\d+\] ([^\"')]+)", str(e))
    return found.group(1).strip() if found else one_line(e)


def import_tensorboard():
    """torch's SummaryWriter, which needs the tensorboard package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise FashionbenchError(f"--track tensorboard needs TensorBoard: {INSTALL['tensorboard']}") from None
    return SummaryWriter


def import_mlflow():
    try:
        import mlflow
        from mlflow.tracking import MlflowClient  # noqa: F401 -- the part used: fails here if broken
    except ImportError:
        raise FashionbenchError(f"--track mlflow needs MLflow: {INSTALL['mlflow']}") from None
    return mlflow



# -- the backends ----------------------------------------------------------------------

class Backend:
    """Where a run is logged. Every call may fail (a server gone): the run catches it."""
    name: str

    def open(self, name: str, record: dict | None, parent: Backend | None) -> dict | None:
        """Start the run ``name`` (nested under ``parent``'s, of the same backend), or
        continue the one ``record`` names (an earlier process's); what a later process
        needs to continue it, or None."""
        return None

    def params(self, params: dict[str, str]) -> None: ...

    def tags(self, tags: dict[str, str]) -> None: ...

    def metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def artifact(self, path: Path, under: str | None = None) -> None:
        """A file or a folder of the run (``under``: the folder it goes in)."""

    def close(self, status: str) -> None:
        """``status``: FINISHED, FAILED or KILLED (MLflow's)."""


def markdown_table(values: dict[str, str]) -> str:
    return "| key | value |\n|---|---|\n" + "".join(f"| {k} | {str(v).replace('|', '/')} |\n"
                                                   for k, v in values.items())


class TensorBoard(Backend):
    """Event files in ``folder``: scalars per epoch, the config and the machine as text.
    The writer is made at the first figure, so that a run that never finishes an epoch
    leaves no folder (rundir's ``discard_new`` removes such a run)."""
    name = "tensorboard"

    def __init__(self, folder: Path):
        self.folder = folder
        self.writer = None
        self.texts: dict[str, dict[str, str]] = {}  # a text's tag: its table's entries

    def _writer(self):
        if self.writer is None:
            self.writer = import_tensorboard()(log_dir=str(self.folder))
            for tag, values in self.texts.items():
                self.writer.add_text(tag, markdown_table(values), 0)
        return self.writer

    def _text(self, tag: str, values: dict[str, str]) -> None:
        self.texts[tag] = self.texts.get(tag, {}) | values
        if self.writer is not None:
            self.writer.add_text(tag, markdown_table(self.texts[tag]), 0)

    def params(self, params):
        self._text("config", params)

    def tags(self, tags):
        self._text("environment", tags)

    def metrics(self, metrics, step):
        writer = self._writer()
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)
        writer.flush()  # a run killed later keeps what it logged

    def close(self, status):
        if self.writer is not None:
            self.writer.close()


class MLflow(Backend):
    """A run in the experiment ``experiment_id`` at ``uri``, through MlflowClient: parameters, tags,
    metric histories, artifacts, and the run's status at the end."""
    name = "mlflow"

    def __init__(self, uri: str, experiment_id: str):
        self.uri, self.experiment_id = uri, experiment_id
        self.client = None       # made by open, where a failure is caught as any other
        self.run_id: str | None = None
        self.continued = False

    def open(self, name, record, parent):
        from mlflow.tracking import MlflowClient
        self.client = MlflowClient(self.uri)
        if record and record.get("tracking_uri") == self.uri and record.get("run_id"):
            from mlflow.exceptions import MlflowException
            try:
                run = self.client.get_run(record["run_id"])
            except MlflowException:
                run = None
            if run is not None and run.info.lifecycle_stage == "active":
                self.run_id, self.continued = run.info.run_id, True
                self.client.update_run(self.run_id, status="RUNNING")
                return record
            print(f"fashionbench: warning: MLflow run {record['run_id']} of {name} is gone from "
                  f"{self.uri}; logging to a new one", file=sys.stderr, flush=True)
        parent_id = parent.run_id if isinstance(parent, MLflow) else None
        tags = {"mlflow.parentRunId": parent_id} if parent_id else {}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        return {"tracking_uri": self.uri, "experiment_id": self.experiment_id,
                "run_id": self.run_id}

    def _batch(self, **entities: list) -> None:
        for kind, items in entities.items():  # params, tags or metrics, at most BATCH a call
            for i in range(0, len(items), BATCH):
                self.client.log_batch(self.run_id, **{kind: items[i:i + BATCH]})

    def params(self, params):
        if self.continued:  # logged by the process that started it; MLflow refuses them twice
            return
        from mlflow.entities import Param
        self._batch(params=[Param(key, value) for key, value in params.items()])

    def tags(self, tags):
        from mlflow.entities import RunTag
        tags = dict(tags)
        if tags.get("git_commit", "none") != "none":  # where MLflow's UI looks for it: the commit alone
            tags["mlflow.source.git.commit"] = tags["git_commit"].removesuffix("+dirty")
        self._batch(tags=[RunTag(key, value[:TAG_CHARS]) for key, value in tags.items()])

    def metrics(self, metrics, step):
        from mlflow.entities import Metric
        from mlflow.utils.time import get_current_time_millis
        now = get_current_time_millis()
        self._batch(metrics=[Metric(key, value, now, step) for key, value in metrics.items()])

    def artifact(self, path, under=None):
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), under or path.name)
        else:
            self.client.log_artifact(self.run_id, str(path), under)

    def close(self, status):
        self.client.set_terminated(self.run_id, status)
