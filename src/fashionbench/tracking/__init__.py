"""Experiment tracking: runs logged to TensorBoard or MLflow as they train (``--track``).

``Tracking`` is what a command was asked to log to. It is checked before anything
trains (``check``): the extra installed, the MLflow server answering and its
experiment there, the log folder writable; one line otherwise. Each training run is
logged by a ``TrackedRun``, a hook of the trainer (hooks.py):

- at its start, the config as parameters (dotted keys, ``optim.lr``) and the machine as
  tags (CPU, cores, bf16, GPU, driver, torch, the git commit, the precision and threads);
- after every epoch's checkpoint, the epoch's row (train and validation loss and
  accuracy, learning rate, img/s, seconds) at step = the epoch;
- at the end (``finish``, called by the command once the summary is written): the
  summary's figures as final metrics (``final/test_acc``, ``final/swa/val_acc``, ...)
  and the run's files as artifacts (summary, model, config, history; the report and an
  exported model when there are).

What a later command adds to a finished run (``export``, ``report``, ``robustness``)
is logged to that run by ``attach``: its MLflow run continued, its TensorBoard folder.

Runs a command trains together are nested in MLflow under one parent (``group``): a
sweep's trials under the study's run, one-vs-all's ten networks under the combined
run's. TensorBoard has a folder per run (``RUN/tensorboard``, or ``--tensorboard-dir``/NAME).

The backends sit behind one small interface, ``Backend``: ``TensorBoard`` (event files
through torch's SummaryWriter) and ``MLflow`` (a tracking server or store, through
``MlflowClient``, never MLflow's global active run). Each is an optional extra,
imported only when asked for: without ``--track`` nothing here imports either or writes
a file.

Logging never costs a run: a backend that fails once training has started says so
once on stderr and is not called again for the rest of the command (a dead server is
not waited for at every epoch); training goes on, and the run folder keeps everything.
Under torchrun, rank 0 alone logs. A resumed run continues its MLflow run, whose id
the run folder keeps (``rundir.TRACKING``), and writes its later epochs to the same
TensorBoard folder.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .. import runs
from ..errors import FashionbenchError, UsageError
from ..hardware import device_name
from ..hooks import Hook
from ..rundir import CONFIG, EXPORTS, HISTORY, MODEL, REPORT, SUMMARY, RunDir
from ..summary import Summary
from .backends import (
    BACKENDS,
    CHECK_HTTP,
    EXPERIMENT,
    RUN_HTTP,
    Backend,
    MLflow,
    TensorBoard,
    cause,
    http_settings,
    import_mlflow,
    import_tensorboard,
    one_line,
    parse_backends,
)

# An epoch row's keys, renamed where the row's own name says too little as a metric.
EPOCH_METRICS = {"seconds": "epoch_seconds"}
# A summary's numbers that are settings or the machine, not results (tags or parameters already).
NOT_RESULTS = {"schema", "seed", "cpu_cores", "world_size"}


def flatten(values: dict, prefix: str = "") -> dict[str, str]:
    """A nested mapping as dotted keys and text values: a config as MLflow's parameters."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def epoch_metrics(row: dict) -> dict[str, float]:
    """An epoch's row as metrics: every number in it but the epoch, its step."""
    return {EPOCH_METRICS.get(key, key): float(value) for key, value in row.items()
            if key != "epoch" and is_number(value)}


def final_metrics(summary: Summary) -> dict[str, float]:
    """A finished run's figures: the summary's numbers (``final/test_acc``, ...) and each
    model's result on each split (``final/swa/val_acc``)."""
    metrics = {f"final/{key}": float(value) for key, value in summary.to_dict().items()
               if key not in NOT_RESULTS and is_number(value)}
    for weights, splits in summary.results.items():
        for split, result in splits.items():
            if isinstance(result, dict):
                metrics |= {f"final/{weights}/{split}_{name}": float(value) for name, value in result.items()
                            if is_number(value)}
    return metrics


def machine_tags(environment: dict, **more) -> dict[str, str]:
    """What the run ran on and with, as tags: the summary's environment (CPU model and
    cores, bf16, GPU, driver, CUDA, torch, python, the git commit, the command) and
    ``more`` (device, precision, threads); "none" for what it lacks (no GPU, no bf16)."""
    return {key: "none" if value is None else str(value) for key, value in {**environment, **more}.items()}



# -- what a command logs to --------------------------------------------------------------

class Tracking:
    """The backends a command logs its runs to (``--track``), with their settings: the
    TensorBoard folder (``tensorboard_dir``; default each run's own folder) and MLflow's
    tracking URI (``tracking_uri``; default $MLFLOW_TRACKING_URI, else MLflow's own)
    and experiment. One object for the whole command: a backend that failed for one
    run is not tried again for the next (``failed``)."""

    def __init__(self, track: str | Sequence[str], tensorboard_dir: str | os.PathLike | None = None,
                 tracking_uri: str | None = None, experiment: str | None = None):
        self.backends = parse_backends(track)
        if tensorboard_dir is not None and "tensorboard" not in self.backends:
            raise UsageError("--tensorboard-dir is where TensorBoard's files go: it needs --track tensorboard")
        if (tracking_uri is not None or experiment is not None) and "mlflow" not in self.backends:
            raise UsageError(f"--{'tracking-uri' if tracking_uri is not None else 'experiment'} "
                             "is MLflow's: it needs --track mlflow")
        if experiment is not None and not experiment.strip():
            raise UsageError("--experiment: give the MLflow experiment a name")
        self.tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir is not None else None
        self.tracking_uri = tracking_uri
        self.experiment = experiment or EXPERIMENT
        self.uri: str | None = None            # MLflow's tracking URI, resolved by check()
        self.experiment_id: str | None = None
        self.failed: set[str] = set()

    @classmethod
    def of(cls, track: str | Sequence[str] | None = None, tensorboard_dir: str | os.PathLike | None = None,
           tracking_uri: str | None = None, experiment: str | None = None, check: bool = True) -> Tracking | None:
        """The command's tracking, checked (``check``; without it, the options alone, for
        a dry run); None where nothing is to be logged."""
        if not track:
            given = [name for name, value in (("--tensorboard-dir", tensorboard_dir), ("--tracking-uri", tracking_uri),
                                               ("--experiment", experiment)) if value is not None]
            if given:
                raise UsageError(f"{', '.join(given)} set where runs are logged: add --track tensorboard or mlflow")
            return None
        tracking = cls(track, tensorboard_dir, tracking_uri, experiment)
        return tracking.check() if check else tracking

    def __repr__(self) -> str:
        return f"Tracking({', '.join(self.backends)})"

    def check(self) -> Tracking:
        """One line now, before any data loads or folder is made, rather than a run that
        trains unlogged: an extra not installed, a log folder that cannot be written, an
        MLflow server or store that does not answer (in seconds: ``CHECK_HTTP``)."""
        if "tensorboard" in self.backends:
            if self.tensorboard_dir is not None:
                runs.check_out_dir(self.tensorboard_dir, "--tensorboard-dir")
            import_tensorboard()
        if "mlflow" in self.backends:
            mlflow = import_mlflow()
            from mlflow.tracking import MlflowClient
            self.uri = self.tracking_uri or mlflow.get_tracking_uri()
            try:
                with http_settings(CHECK_HTTP):
                    client = MlflowClient(self.uri)
                    client.search_experiments(max_results=1)
                    experiment = client.get_experiment_by_name(self.experiment)
                    if experiment is None:
                        self.experiment_id = self.create_experiment(client)
                    elif experiment.lifecycle_stage != "active":
                        raise FashionbenchError(f"MLflow experiment {self.experiment!r} at {self.uri} is deleted; "
                                                "restore it (mlflow experiments restore) or choose another "
                                                "--experiment")
                    else:
                        self.experiment_id = experiment.experiment_id
            except FashionbenchError:
                raise
            except Exception as e:  # MLflow's own errors, and what its HTTP and SQL layers raise
                raise FashionbenchError(f"MLflow at {self.uri} cannot be used ({cause(e)}); start the "
                                        "server, or set --tracking-uri or MLFLOW_TRACKING_URI") from None
        return self

    def create_experiment(self, client) -> str:
        """The experiment, made; where another worker made it a moment before, theirs."""
        from mlflow.exceptions import MlflowException
        try:
            return client.create_experiment(self.experiment)
        except MlflowException:
            made = client.get_experiment_by_name(self.experiment)
            if made is None:
                raise
            return made.experiment_id

    def backends_for(self, run_dir: Path | None, name: str, tensorboard: bool) -> list[Backend]:
        """One run's backends (those that have not failed). TensorBoard's folder: NAME
        under --tensorboard-dir, else the run's own (``RUN/tensorboard``); a run with neither
        (a sweep's study) is not one TensorBoard shows."""
        made: list[Backend] = []
        for backend in self.backends:
            if backend in self.failed:
                continue
            if backend == "tensorboard" and tensorboard:
                folder = self.tensorboard_dir / name if self.tensorboard_dir is not None else (
                    RunDir(run_dir).tensorboard if run_dir is not None else None)
                if folder is not None:
                    made.append(TensorBoard(folder))
            elif backend == "mlflow":
                made.append(MLflow(self.uri, self.experiment_id))
        return made


class Record:
    """Where a run keeps what continues its logging in a later process (MLflow's run id):
    a run folder's ``rundir.TRACKING`` by default; a sweep keeps its study's in the study."""

    def __init__(self, load: Callable[[], dict], save: Callable[[dict], None]):
        self.load, self.save = load, save

    @classmethod
    def of_folder(cls, run_dir: Path) -> Record:
        folder = RunDir(run_dir)
        return cls(folder.read_tracking, folder.write_tracking)


class TrackedRun(Hook):
    """One run's logging: the trainer's hook (``hooks``; none where nothing is logged),
    and a context that ends the run with its status (FINISHED; KILLED when stopped by
    a signal or the deadline; FAILED otherwise)::

        with track(tracking, run_dir, name) as tracked:
            summary = train_or_resume(cfg, data, run_dir, hooks=tracked.hooks)
            tracked.finish(summary, run_dir)

    A run is opened by the trainer (``on_start``) or by ``start`` (a parent); one never
    opened (a run read back finished) logs nothing."""

    def __init__(self, tracking: Tracking | None, name: str, run_dir: Path | None = None,
                 record: Record | None = None, parent: TrackedRun | None = None, main: bool = True,
                 tensorboard: bool = True):
        self.tracking, self.name, self.parent = tracking, name, parent
        self.record = record if record is not None else (Record.of_folder(run_dir) if run_dir is not None else None)
        self.active: list[Backend] = (tracking.backends_for(run_dir, name, tensorboard)
                                      if tracking is not None and main else [])
        self.started = False
        self.ended = False

    @property
    def hooks(self) -> tuple[Hook, ...]:
        """What the trainer is given: this run, where it logs anywhere."""
        return (self,) if self.active else ()

    # -- calling the backends, never at the cost of the run -------------------------------
    def _each(self, what: str, call: Callable[[Backend], None]) -> None:
        for backend in list(self.active):
            try:
                with http_settings(RUN_HTTP):
                    call(backend)
            except Exception as e:  # not a signal's KeyboardInterrupt: that stops the run
                self.active.remove(backend)
                if backend.name not in self.tracking.failed:
                    self.tracking.failed.add(backend.name)
                    print(f"fashionbench: warning: {backend.name}: {what} failed ({cause(e)}); "
                          f"training goes on, logging no more to {backend.name} (the run folder keeps "
                          "everything)", file=sys.stderr, flush=True)

    def _parent_backend(self, backend: Backend) -> Backend | None:
        if self.parent is None:
            return None
        return next((b for b in self.parent.active if b.name == backend.name), None)

    # -- the run -------------------------------------------------------------------------
    def start(self, params: dict[str, str], tags: dict[str, str]) -> None:
        """Open the run in each backend (or continue the one its record names) with its
        parameters and tags; once."""
        if self.started or not self.active:
            return
        self.started = True
        try:
            records = self.record.load() if self.record is not None else {}
        except Exception as e:  # a damaged record, a study's storage gone: a new MLflow run, said so
            print(f"fashionbench: warning: {one_line(e)}; logging to a new run", file=sys.stderr, flush=True)
            records = {}
        opened: dict[str, dict] = {}

        def open_backend(backend: Backend) -> None:
            record = backend.open(self.name, records.get(backend.name), self._parent_backend(backend))
            if record is not None:
                opened[backend.name] = record
        self._each("starting the run", open_backend)
        if self.record is not None and any(records.get(name) != record for name, record in opened.items()):
            try:
                self.record.save({**records, **opened})
            except Exception as e:  # the run goes on; only a later resume loses the link
                print(f"fashionbench: warning: {one_line(e)}; a resumed run will log to a new MLflow run",
                      file=sys.stderr, flush=True)
        self._each("logging the parameters", lambda b: b.params(params))
        self._each("logging the tags", lambda b: b.tags(tags))

    def on_start(self, trainer) -> None:
        tags = machine_tags(trainer.environment, device=device_name(trainer.device), precision=trainer.precision,
                            threads=torch.get_num_threads(), world_size=trainer.world.size,
                            run_dir=str(Path(trainer.run_dir).resolve()))
        self.start(flatten(trainer.cfg.to_dict()), tags)

    def on_checkpoint(self, trainer, row: dict) -> None:
        """After the checkpoint, not before it: a run stopped between the two resumes
        from the one before and logs the epoch then, once."""
        self.metrics(epoch_metrics(row), row["epoch"])

    def tags(self, tags: dict[str, str]) -> None:
        """More tags (a sweep's trial: its number and how it ended)."""
        if self.started:
            self._each("logging tags", lambda b: b.tags(tags))

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.started:
            self._each(f"logging step {step}", lambda b: b.metrics(metrics, step))

    def artifact(self, path: Path, under: str | None = None) -> None:
        """A file or folder of the run, where it exists."""
        path = Path(path)
        if self.started and path.exists():
            self._each(f"uploading {path.name}", lambda b: b.artifact(path, under))

    def finish(self, summary: Summary, run_dir: Path | None = None) -> None:
        """The summary's figures (at step = its epochs) and the run's files: the summary,
        config, history, model, and an exported model or the report where there is one."""
        if not self.started:
            return
        self.metrics(final_metrics(summary), summary.epochs or 0)
        if run_dir is not None:
            for name in (SUMMARY, CONFIG, HISTORY, MODEL, *EXPORTS.values()):
                self.artifact(Path(run_dir) / name)
            self.artifact(Path(run_dir) / REPORT)

    def end(self, status: str = "FINISHED") -> None:
        if self.started and not self.ended:
            self.ended = True
            self._each("ending the run", lambda b: b.close(status))

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, kind, error, tb) -> None:
        self.end("FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")


def track(tracking: Tracking | None, run_dir: Path, name: str, parent: TrackedRun | None = None,
          main: bool = True) -> TrackedRun:
    """The logging of the run in ``run_dir`` (``name``: its MLflow run's name, its
    TensorBoard folder under --tensorboard-dir), nested under ``parent``'s; with no tracking, or
    on a process other than rank 0, one that does nothing."""
    return TrackedRun(tracking, name, Path(run_dir), parent=parent, main=main)


def attach(tracking: Tracking | None, run_dir: Path, files: Sequence[Path] = (),
           metrics: dict[str, float] | None = None) -> None:
    """What a later command adds to a finished run (an exported model, the report, the
    robustness figures), logged to that run: the MLflow run its folder names, or a new
    one with its config where it was not logged; TensorBoard's metrics beside its epochs."""
    if tracking is None:
        return
    folder = RunDir(run_dir)
    with track(tracking, folder.path, folder.path.name) as tracked:
        config = folder.config.to_dict() if folder.has_config else {}  # an ensemble has none
        tracked.start(flatten(config), {"run_dir": str(folder.path.resolve())})
        if metrics:
            tracked.metrics(metrics, folder.summary.epochs or 0)
        for path in files:
            tracked.artifact(Path(path))


def group(tracking: Tracking | None, name: str, run_dir: Path | None = None, record: Record | None = None,
          main: bool = True) -> TrackedRun:
    """A parent run (a sweep's study: no run folder, no TensorBoard; one-vs-all's combined
    run): ``start`` it, then ``track`` its runs with it as their parent."""
    return TrackedRun(tracking, name, run_dir, record=record, main=main, tensorboard=run_dir is not None)


__all__ = ["BACKENDS", "EXPERIMENT", "Backend", "MLflow", "Record", "TensorBoard", "TrackedRun", "Tracking",
           "attach", "epoch_metrics", "final_metrics", "flatten", "group", "machine_tags", "parse_backends", "track"]
