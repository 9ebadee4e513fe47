"""Hyperparameter search with Optuna: ``fashionbench sweep``.

A study is a search space, a fixed budget and a set of trials in an Optuna storage:
an SQLite file in the study's folder by default (nothing to start), or any database
URL Optuna takes (PostgreSQL) for workers on many machines. Every worker runs the
same loop: ask the TPE sampler for a configuration, train it as an ordinary run
folder (``OUT/STUDY/trial-K``), report validation accuracy after every epoch to the
pruner, and stop once the study holds ``--trials`` trials. The test split is never
evaluated: trials are configured with ``eval.test: false``, so their summaries carry
validation figures only.

Optuna is an optional extra (``pip install 'fashionbench[sweep]'``): it is imported
by the functions that need it, so that the rest of the command line starts without it.
"""

from __future__ import annotations

import csv
import io
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from .. import runs
from ..config import Config, ConfigError, dump_config, load_config, override, read_yaml
from ..data import FashionMNIST
from ..errors import FashionbenchError, UsageError
from ..figures import png
from ..training import Diverged, train_or_resume

if TYPE_CHECKING:
    import optuna

INSTALL_HINT = "pip install 'fashionbench[sweep]'"
STUDY_DB = "study.db"        # the default storage: OUT/STUDY/study.db
BEST_RECIPE = "best.yaml"
# A worker gives up after this many trials in a row that could not run at all (a space
# whose corners make invalid configs): failed trials do not count towards --trials, so
# without it such a worker would ask forever.
MAX_FAILURES_IN_A_ROW = 5


def import_optuna():
    """Optuna, quiet: our own line reports each trial, its state and a failure's reason,
    so Optuna's lines on the same trials are left out (its warning on a failed trial
    carries a traceback, even one of Ctrl-C or SIGTERM, which have our one line); and the
    features it marks experimental (heartbeats, matplotlib plots) are used knowingly."""
    try:
        import optuna
    except ImportError:
        raise FashionbenchError(f"fashionbench sweep needs Optuna: {INSTALL_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# -- the search space ---------------------------------------------------------------------

@dataclass
class Param:
    """One searched config key: a float or int range (log-uniform with ``log``), or choices."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    choices: list | None = None

    @classmethod
    def parse(cls, key: str, spec: Any, where: str) -> Param:
        if not isinstance(spec, dict):
            raise UsageError(f"{where}: params.{key} must be a mapping (low, high[, log, int] "
                             f"or choices), got {spec!r}")
        unknown = set(spec) - {"low", "high", "log", "int", "choices"}
        if unknown:
            raise UsageError(f"{where}: params.{key}: unknown field(s) {', '.join(sorted(unknown))}; "
                             "use low, high, log, int or choices")
        if "choices" in spec:
            if set(spec) != {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
                raise UsageError(f"{where}: params.{key}: choices must be a non-empty list, alone")
            return cls(choices=spec["choices"])
        try:
            low, high = float(spec["low"]), float(spec["high"])
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"{where}: params.{key} needs numbers low and high, got {spec!r}") from None
        param = cls(low, high, bool(spec.get("log", False)), bool(spec.get("int", False)))
        if not low < high:
            raise UsageError(f"{where}: params.{key}: low ({low:g}) must be below high ({high:g})")
        if param.log and low <= 0:
            raise UsageError(f"{where}: params.{key}: a log range needs low > 0, got {low:g}")
        if param.int:
            param.low, param.high = int(low), int(high)
        return param

    def to_dict(self) -> dict:
        if self.choices is not None:
            return {"choices": self.choices}
        return {"low": self.low, "high": self.high, **({"log": True} if self.log else {}),
                **({"int": True} if self.int else {})}

    def suggest(self, trial: optuna.Trial, key: str) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(key, self.choices)
        if self.int:
            return trial.suggest_int(key, self.low, self.high, log=self.log)
        return trial.suggest_float(key, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def corners(self) -> list:
        return list(self.choices) if self.choices is not None else [self.low, self.high]


@dataclass
class Space:
    """What a study searches (``params``: config key -> Param) and what every trial
    shares (``budget``: config key -> value, e.g. epochs and data.train_subset)."""
    params: dict[str, Param]
    budget: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"budget": dict(self.budget), "params": {k: p.to_dict() for k, p in self.params.items()}}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def config(self, model: str, values: dict[str, Any], fixed: list[dict] | None = None) -> Config:
        """The config of one trial: MODEL's recipe <- budget <- ``fixed`` <- ``values``."""
        return load_config(model, None, [*(override(k, v) for k, v in self.budget.items()), *(fixed or []),
                                         *(override(k, v) for k, v in values.items())])

    def check(self, model: str, where: str) -> None:
        """Every key is a config key and every end of every range a valid value, said now
        rather than by a trial that fails an hour in."""
        try:
            self.config(model, {})
        except ConfigError as e:
            raise UsageError(f"{where}: budget: {e}") from None
        for key, param in self.params.items():
            for value in param.corners():
                try:
                    self.config(model, {key: value})
                except ConfigError as e:
                    raise UsageError(f"{where}: params.{key} = {value!r}: {str(e).split('; valid keys')[0]}") from None


def parse_space(data: Any, where: str) -> Space:
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict) or not data["params"]:
        raise UsageError(f"{where}: a search space is a mapping with params: (config key -> range) "
                         "and optionally budget: (config key -> value); see fashionbench sweep --help")
    unknown = set(data) - {"params", "budget"}
    if unknown:
        raise UsageError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}; use params and budget")
    budget = data.get("budget") or {}
    if not isinstance(budget, dict):
        raise UsageError(f"{where}: budget must be a mapping of config keys to values")
    return Space({str(k): Param.parse(str(k), v, where) for k, v in data["params"].items()}, dict(budget))


def load_space(path: str | Path) -> Space:
    return parse_space(read_yaml(path), str(path))


def default_space(cfg: Config) -> Space:
    """The search space around a recipe: its peak and base LR, weight decay and SWA LR
    over log ranges centred on the recipe's own values, label smoothing and the three
    augmentations over ranges that include none of each. Keys the recipe does not use
    (base_lr without a cyclic schedule, swa.lr where SWA keeps the schedule going) are
    left out. The budget is the recipe's."""
    lr = cfg.optim.lr
    params = {"optim.lr": Param(lr / 4, lr * 4, log=True)}
    if cfg.schedule.name == "cyclic":
        # Below the lowest peak, so that every pair of draws is a valid cycle.
        base = cfg.schedule.base_lr
        params["schedule.base_lr"] = Param(min(base / 10, lr / 40), min(base * 10, lr / 4 * 0.9), log=True)
    if cfg.optim.weight_decay > 0:
        wd = cfg.optim.weight_decay
        params["optim.weight_decay"] = Param(wd / 10, wd * 10, log=True)
    params |= {"label_smoothing": Param(0.0, 0.2), "augment.flip": Param(0.0, 0.5),
               "augment.zoom": Param(0.0, 0.15), "augment.erase": Param(0.0, 0.5)}
    if cfg.swa.enabled and cfg.swa.lr is not None:
        params["swa.lr"] = Param(cfg.swa.lr / 5, cfg.swa.lr * 5, log=True)
    return Space(params, {"epochs": cfg.epochs, "data.train_subset": cfg.data.train_subset})


def recipe_values(cfg: Config, space: Space) -> dict[str, Any] | None:
    """The recipe's own values of the searched keys, if the space holds them all: the
    study's first trial, the hand-tuned recipe at the sweep's budget to beat."""
    values = {}
    for key, param in space.params.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value is None or not param.contains(value):
            return None
        values[key] = value
    return values


# -- the study ------------------------------------------------------------------------------

def study_dir(out: str | Path, study: str) -> Path:
    return Path(out) / study


def default_storage(out: str | Path, study: str) -> str:
    return f"sqlite:///{(study_dir(out, study) / STUDY_DB).resolve()}"


def check_storage_url(url: str) -> None:
    """A mistyped --storage, said before anything is loaded or written (exit status 2):
    a URL SQLAlchemy cannot parse, or a kind of database it does not know. A missing
    driver or an unreachable server shows when the storage is opened."""
    import_optuna()  # SQLAlchemy comes with it
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    try:
        parsed = make_url(with_driver(url))
    except (ArgumentError, ValueError) as e:  # ValueError: a port that is not a number
        raise UsageError(f"--storage {safe_url(url)}: not a database URL (DIALECT://... as in "
                         f"postgresql://user@host/db or sqlite:////path/study.db): {one_line(e)}") from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise UsageError(f"--storage {safe_url(url)}: no database kind {parsed.drivername}; use "
                         "postgresql://user@host/db or sqlite:////path/study.db") from None


def grace_period(heartbeat: int) -> int:
    """Seconds without a heartbeat after which a running trial is taken for dead."""
    return 2 * heartbeat


def open_storage(url: str, heartbeat: int | None = None,
                 on_stale: Callable | None = None) -> optuna.storages.RDBStorage:
    """Optuna's database storage at ``url``. With ``heartbeat`` (seconds), a running
    trial beats that often; one silent for twice as long (its worker killed) is marked
    failed by the next worker that looks, which then calls ``on_stale`` (once a trial,
    however many workers look), and the others go on."""
    optuna = import_optuna()
    check_storage_url(url)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}  # wait out other writers
    beat = {"heartbeat_interval": heartbeat, "grace_period": grace_period(heartbeat),
            "heartbeat_stale_trial_callback": on_stale} if heartbeat else {}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(with_driver(url), engine_kwargs=engine, **beat)
        except ModuleNotFoundError as e:
            raise FashionbenchError(f"--storage {safe_url(url)}: needs the database driver {e.name}: "
                                    f"{INSTALL_HINT}") from None
        except Exception as e:  # sqlalchemy's and the drivers' errors: a wrong URL, no server, ...
            # ... or another worker creating the same new database's tables at this moment:
            # its schema wins the race, and the next attempt finds it.
            if attempt == 4 or not ("UNIQUE" in str(e) or "already exists" in str(e)):
                raise FashionbenchError(f"--storage {safe_url(url)}: cannot open it: {one_line(e)}") from None
            time.sleep(0.5 + attempt)


def with_driver(url: str) -> str:
    """A PostgreSQL URL with no driver named gets psycopg 3, the one the [sweep] extra
    installs: SQLAlchemy's own default for ``postgresql://`` is psycopg2 before 2.1 and
    psycopg from 2.1 on."""
    return "postgresql+psycopg://" + url[len("postgresql://"):] if url.startswith("postgresql://") else url


def one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


@dataclass
class StudySpec:
    """What makes a study: every worker that joins it must agree on all of it."""
    model: str
    space: Space
    seed: int

    def attrs(self) -> dict:
        return {"model": self.model, "space": self.space.to_dict(), "seed": self.seed}


def join_study(name: str, storage, spec: StudySpec, sampler, pruner, recipe: dict | None):
    """The study ``name``: created (with the recipe as its first trial) if new, else
    joined after checking that it searches the same thing. Two workers starting at once
    race to create it; the database lets one win, and the other waits for its settings."""
    optuna = import_optuna()
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    sampler=sampler, pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        study = None
    if study is not None:  # this worker made it
        study.set_user_attr("spec", spec.attrs())
        if recipe is not None:
            queue_recipe(study, recipe)
        return study
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    for _ in range(300):  # the creator writes its settings a moment after creating it
        if "spec" in study.user_attrs:
            break
        time.sleep(0.1)
    else:
        raise FashionbenchError(f"study {name} exists but records no fashionbench settings; "
                                "was it made by something else? choose another --study")
    differ = spec_differences(study.user_attrs["spec"], json.loads(json.dumps(spec.attrs())))
    if differ:
        raise UsageError(f"study {name} was made with other settings: {'; '.join(differ)}; run the "
                         "command that created it to join, or choose another --study")
    return study


def spec_differences(theirs: dict, ours: dict) -> list[str]:
    """'KEY is THEIRS in the study, OURS here' for each setting of two StudySpec.attrs
    that differs, the space's budget and params key by key, named as a space file names
    them (budget.epochs, params.optim.lr)."""
    def settings(spec: dict) -> dict:
        space = spec.get("space") or {}
        return {"model": spec.get("model"),
                **{f"budget.{k}": v for k, v in (space.get("budget") or {}).items()},
                **{f"params.{k}": v for k, v in (space.get("params") or {}).items()},
                "seed": spec.get("seed")}

    def shown(values: dict, key: str) -> str:
        if key not in values:
            return "absent"
        return yaml.safe_dump(values[key], default_flow_style=True, sort_keys=False,
                              width=1000).strip().removesuffix("...").strip()
    there, here = settings(theirs), settings(ours)
    keys = [*here, *(k for k in there if k not in here)]
    return [f"{k} is {shown(there, k)} in the study, {shown(here, k)} here" for k in keys
            if k not in there or k not in here or there[k] != here[k]]


def queue_recipe(study, recipe: dict) -> None:
    study.enqueue_trial(recipe, user_attrs={"recipe": True})


def requeue_recipe(study, recipe: dict | None) -> None:
    """Queue the recipe again if its trial failed (a worker interrupted during it, which
    marks its trial failed at once): the study's bar to beat should not vanish with one
    worker. A killed worker's trial is failed later, by ``stale_trial_failed``."""
    from optuna.trial import TrialState
    if recipe is None:
        return
    marked = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("recipe")]
    if marked and all(t.state == TrialState.FAIL for t in marked):
        queue_recipe(study, recipe)


def stale_trial_failed(recipe: dict | None) -> Callable:
    """The storage's callback for a trial it marks failed because its heartbeat stopped
    (its worker killed, its machine lost), run by the one worker that marks it: said,
    and the recipe's trial queued again, as ``requeue_recipe`` does for an interrupted one."""
    def failed(study, trial) -> None:
        again = recipe is not None and trial.user_attrs.get("recipe")
        if again:
            queue_recipe(study, recipe)
        print(f"trial {trial.number} failed: its heartbeat stopped (a killed worker)"
              f"{'; the recipe is queued again' if again else ''}", flush=True)
    return failed


def live_trials(study, before: int | None = None) -> int:
    """Trials that are or will be a result: finished, pruned, running or queued (failed
    ones do not count). ``before``: only those numbered below it."""
    from optuna.trial import TrialState
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states)
               if before is None or t.number < before)


def more_to_do(study, trials: int) -> bool:
    """A queued trial waits to be run, or the study holds fewer than ``trials``."""
    from optuna.trial import TrialState
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) or live_trials(study) < trials


class SurplusTrial(Exception):
    """A trial asked for the moment another worker took the study's last one."""


def make_pruner(kind: str, epochs: int):
    """median: stop a trial whose validation accuracy after an epoch is below the median
    of earlier trials' at that epoch (after 4 trials and the first quarter of the epochs:
    a cyclic LR makes early epochs noisy). hyperband: successive halving over epochs."""
    optuna = import_optuna()
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=max(1, epochs // 4))
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def make_sampler(trials: int, seed: int | None):
    """TPE (Bergstra et al. 2011). A third of the trials (3 to 10) sample at random
    first, so that short sweeps still spend most trials on TPE; constant_liar keeps
    parallel workers from proposing the same point while both are running."""
    optuna = import_optuna()
    return optuna.samplers.TPESampler(n_startup_trials=min(10, max(3, trials // 3)), seed=seed,
                                      constant_liar=True)


def describe(param: Param) -> str:
    if param.choices is not None:
        return "one of " + ", ".join(map(str, param.choices))
    return f"[{param.low:g}, {param.high:g}]{' log' if param.log else ''}{' int' if param.int else ''}"


def sweep_plan(model: str, space: Space, trials: int, out: str | Path, study_name: str,
               storage_url: str | None, pruner: str, seed: int) -> str:
    """What ``sweep`` would do, for --dry-run: nothing opened, nothing written."""
    base = space.config(model, {})
    recipe = recipe_values(base, space)
    lines = [
        f"study:      {study_name}, in {study_dir(out, study_name)} (trial-K run folders, space.yaml)",
        f"storage:    {safe_url(storage_url or default_storage(out, study_name))} "
        "(joined if the study exists, with the same model, space and seed)",
        f"trials:     {trials} in the study, every worker's counted; "
        + ("the first is the recipe itself" if recipe else "the recipe lies outside the space: not queued"),
        f"budget:     {base.epochs} epochs, "
        f"{'all' if base.data.train_subset is None else f'{base.data.train_subset:,}'} training images, "
        f"seed {seed}" + "".join(f", {k} {v}" for k, v in space.budget.items()
                                 if k not in ("epochs", "data.train_subset")),
        "searching:  " + "\n            ".join(f"{k} in {describe(p)}" for k, p in space.params.items()),
        f"pruner:     {pruner}, on validation accuracy after each epoch",
        "evaluated:  validation split only (eval.test false); the test split is never used",
    ]
    return "\n".join(lines)


@dataclass
class SweepResult:
    study: str
    counts: dict[str, int]
    best_number: int | None
    best_value: float | None


def run_sweep(model: str, data: FashionMNIST, trials: int, out: str | Path, study_name: str,
              storage_url: str | None = None, space: Space | None = None, pruner: str = "median",
              seed: int = 0, sampler_seed: int | None = None, fixed: list[dict] | None = None,
              heartbeat: int = 60) -> SweepResult:
    """One worker of study ``study_name``: trials until the study holds ``trials`` of
    them (counting every worker's), each an ordinary run folder OUT/STUDY/trial-K
    trained with ``seed`` on the training split and judged on validation only. With
    nothing left to take while trials still run, it waits for them (``wait_for_running``):
    it returns once they are all finished, or held by live workers."""
    optuna = import_optuna()
    space = space or default_space(load_config(model))
    space.check(model, "search space")
    url = storage_url or default_storage(out, study_name)
    at_budget = space.config(model, {})  # the recipe at the sweep's budget
    recipe = recipe_values(at_budget, space)
    if storage_url is None:  # the default storage, an SQLite file, lives in the study's folder
        runs.make_dir(study_dir(out, study_name))
    # A --storage that is wrong or out of reach stops here, before the folder is made.
    storage = open_storage(url, heartbeat, on_stale=stale_trial_failed(recipe))
    folder = runs.make_dir(study_dir(out, study_name))
    spec = StudySpec(model, space, seed)
    study = join_study(study_name, storage, spec, make_sampler(trials, sampler_seed),
                       make_pruner(pruner, at_budget.epochs), recipe)
    # Failed first: a killed worker's trials, past their heartbeat (a killed recipe's is
    # queued again as it is failed); then an interrupted recipe trial, failed already.
    optuna.storages.fail_stale_trials(study)
    requeue_recipe(study, recipe)
    runs.write_text(folder / "space.yaml", space.to_yaml())
    # eval.test false: a trial evaluates validation only; nothing of the test set is seen.
    fixed = [*(fixed or []), {"seed": seed}, {"eval": {"test": False}}]
    failures: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        try:
            return train_trial(trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:  # the reason, for our line on the trial (Optuna's are left out)
            trial.set_user_attr("failed", one_line(e))
            raise

    def train_trial(trial: optuna.Trial) -> float:
        if live_trials(study, before=trial.number) >= trials:
            raise SurplusTrial(f"the study had its {trials} trials when this one was asked for")
        if heartbeat:
            # Optuna's heartbeat thread writes its first beat when it gets to it; a worker
            # killed before that leaves a trial with no beat, which Optuna never takes for
            # dead (it stays running forever). Beating here first puts one on record before
            # any work starts (``_trial_id``: Optuna's Trial has no public storage id).
            storage.record_heartbeat(trial._trial_id)
        values = {key: param.suggest(trial, key) for key, param in space.params.items()}
        cfg = space.config(model, values, fixed)
        run_dir = folder / f"trial-{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        print(f"trial {trial.number}{' (the recipe)' if trial.user_attrs.get('recipe') else ''}: {shown}",
              flush=True)

        def report(row: dict) -> None:
            trial.report(row["val_acc"], row["epoch"])
            if row["epoch"] < cfg.epochs and trial.should_prune():  # a finished run is kept
                raise optuna.TrialPruned(f"validation accuracy {row['val_acc']:.4f} after epoch "
                                         f"{row['epoch']} is below the pruner's bar")
        try:
            summary = train_or_resume(cfg, data, run_dir, label=f"trial {trial.number}", on_epoch=report)
        except Diverged as e:
            # A diverged trial is a bad result, not a broken one: pruned, so that it counts
            # and TPE learns to avoid its region (a failed trial would teach it nothing).
            trial.set_user_attr("diverged", str(e))
            raise optuna.TrialPruned(str(e)) from None
        return summary.val_acc

    def after_trial(study, trial) -> None:
        state = trial.state.name.lower()
        if trial.state == optuna.trial.TrialState.FAIL:
            failures.append(trial.user_attrs.get("failed", "unknown"))
            value = failures[-1]
        else:
            failures.clear()
            value = f"val acc {trial.value:.4f}" if trial.value is not None else state
        best = best_complete(study)
        tail = f"; best so far trial {best.number}, {best.value:.4f}" if best else ""
        print(f"trial {trial.number} {state}: {value}{tail}", flush=True)
        # Failed trials (killed workers, past their heartbeat) are marked so first.
        optuna.storages.fail_stale_trials(study)
        if not more_to_do(study, trials):
            study.stop()
        elif len(failures) >= MAX_FAILURES_IN_A_ROW:
            study.stop()

    while True:
        if more_to_do(study, trials):
            print(f"study {study_name}: {live_trials(study)} of {trials} trials taken or queued; "
                  f"storage {safe_url(url)}", flush=True)
            # Failed, and the worker goes on: a surplus trial, a config the space's corners
            # allow but the config's cross-checks refuse, a configuration too large for the device.
            study.optimize(objective, catch=(SurplusTrial, ConfigError, torch.cuda.OutOfMemoryError),
                           callbacks=[after_trial], gc_after_trial=True)
            if len(failures) >= MAX_FAILURES_IN_A_ROW:
                raise FashionbenchError(f"{len(failures)} trials in a row failed; the last: {failures[-1]}")
        elif not wait_for_running(study, study_name, trials, heartbeat):
            return summarize(study, study_name)


def counted(numbers: list[int]) -> str:
    """'2 trials (trial 3, trial 5)'."""
    return f"{len(numbers)} trial{'' if len(numbers) == 1 else 's'} ({', '.join(f'trial {n}' for n in numbers)})"


def wait_for_running(study, name: str, trials: int, heartbeat: int) -> bool:
    """With nothing left to take while trials still run: wait until they finish, or one's
    heartbeat expires (its worker killed: it is failed, and its place is this worker's
    to fill), or long enough that each has beaten since (a live worker holds it), rather
    than end as if the study were complete. True when a place came free."""
    optuna = import_optuna()

    def running() -> list[int]:
        return [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    numbers = running()
    if not numbers:
        return False
    # A killed worker's last beat was before now, so its trial is past the grace period by
    # the deadline: heartbeats are stored to the second (1 s more), looked at every second
    # (1 s more), and 1 s to spare. A trial still running then has beaten since we began.
    patience = grace_period(heartbeat) + 3
    print(f"study {name}: {counted(numbers)} still running, in another worker or in a killed one; "
          f"waiting up to {patience} s for each to finish or for its heartbeat to expire", flush=True)
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        time.sleep(1)
        optuna.storages.fail_stale_trials(study)
        if more_to_do(study, trials):
            return True
        if not running():
            return False
    live = running()
    if live:
        print(f"study {name}: {counted(live)} still running with a live heartbeat, in live workers; "
              f"the study has its {trials} trial{'' if trials == 1 else 's'} once they finish", flush=True)
    return False


def safe_url(url: str) -> str:
    """A storage URL with any password hidden, to print."""
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@")[0]:
        user = tail.split("@")[0].split(":")[0]
        tail = f"{user}:***@{tail.split('@', 1)[1]}"
    return head + sep + tail


def best_complete(study):
    from optuna.trial import TrialState
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: t.value) if done else None


def summarize(study, name: str) -> SweepResult:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    best = best_complete(study)
    return SweepResult(name, counts, best.number if best else None, best.value if best else None)


# -- the best trial -------------------------------------------------------------------------

@dataclass
class BestResult:
    recipe: Path
    trial: int
    value: float
    params: dict
    importances: dict[str, float]
    figures: list[Path]
    trials: Path                 # trials.csv: every trial, pruned and failed ones too
    note: str = ""


def load_study(name: str, out: str | Path, storage_url: str | None):
    optuna = import_optuna()
    url = storage_url or default_storage(out, name)
    if storage_url is None and not (study_dir(out, name) / STUDY_DB).exists():
        raise FashionbenchError(f"no study {name}: {study_dir(out, name) / STUDY_DB} does not exist "
                                "(give --out or --storage where it is)")
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise FashionbenchError(f"no study {name} in {safe_url(url)} (it has: "
                                f"{', '.join(known) or 'none'})") from None


def importance_evaluator():
    """fANOVA (Hutter et al. 2014), seeded: the share of the variance of validation
    accuracy each parameter explains, the same figures on every call (Optuna 5's own
    default is PED-ANOVA)."""
    optuna = import_optuna()
    return optuna.importance.FanovaImportanceEvaluator(seed=0)


def best_recipe(name: str, out: str | Path, storage_url: str | None = None) -> BestResult:
    """The best trial of study ``name`` as a recipe (OUT/STUDY/best.yaml, which
    ``fashionbench train --config`` takes), parameter importances (``importance_evaluator``)
    and plots of the optimization history and the importances."""
    optuna = import_optuna()
    study = load_study(name, out, storage_url)
    best = best_complete(study)
    if best is None:
        raise FashionbenchError(f"study {name} has no finished trial yet")
    spec = study.user_attrs.get("spec")
    if not spec:
        raise FashionbenchError(f"study {name} records no fashionbench settings; was it made by something else?")
    space = parse_space(spec["space"], f"study {name}")
    # The trial's own config, rebuilt from the study rather than read from its folder,
    # which may be on another machine; evaluated on test again, as any recipe is.
    cfg = space.config(spec["model"], best.params, [{"seed": spec["seed"]}])
    folder = runs.make_dir(study_dir(out, name))
    header = (f"# The best trial of study {name}: trial {best.number}, validation accuracy "
              f"{best.value:.4f} after {cfg.epochs} epochs"
              f"{'' if cfg.data.train_subset is None else f' on {cfg.data.train_subset:,} training images'}"
              f", seed {spec['seed']}.\n# Searched: {', '.join(space.params)}. Written by "
              f"fashionbench sweep --best {name}; train it with\n#   fashionbench train --config "
              f"{folder / BEST_RECIPE}\n")
    recipe = folder / BEST_RECIPE
    runs.write_text(recipe, header + dump_config(cfg))
    importances, note = {}, ""
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(finished) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study, evaluator=importance_evaluator())
        except (RuntimeError, ValueError) as e:
            note = f"no importances: {one_line(e)}"
    else:
        note = "no importances: they need at least two finished trials"
    figures = [folder / "history.png"]
    from optuna.visualization import matplotlib as plots
    runs.write_bytes(figures[0], png(plots.plot_optimization_history(study).figure))
    if importances:
        figures.append(folder / "importances.png")
        runs.write_bytes(figures[1], png(plots.plot_param_importances(study, evaluator=importance_evaluator()).figure))
    runs.write_json(folder / "importances.json", importances)
    runs.write_text(folder / "trials.csv", trials_csv(study, list(space.params)))
    return BestResult(recipe, best.number, best.value, dict(best.params), dict(importances), figures,
                      folder / "trials.csv", note)


def trials_csv(study, keys: list[str]) -> str:
    """Every trial of the study, a row each: its number, state, validation accuracy
    (the final one; a pruned trial's last reported), epochs trained and values."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", "state", "val_acc", "epochs", *keys, "recipe"])
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.value is not None else (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        writer.writerow([t.number, t.state.name.lower(), "" if value is None else f"{value:.4f}",
                         max(t.intermediate_values, default=0), *(t.params.get(k, "") for k in keys),
                         "yes" if t.user_attrs.get("recipe") else ""])
    return buf.getvalue()
