"""A sweep's Optuna study: its storage (SQLite in the study's folder, or a database URL
for workers on many machines), joining it, its queue and heartbeats, pruner and sampler.

Optuna is an optional extra (``pip install 'fashionbench[sweep]'``): it is imported by
the functions that need it (``import_optuna``), so that the rest of the command line
starts without it."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..errors import FashionbenchError, UsageError
from .search_space import Space

if TYPE_CHECKING:
    import optuna


INSTALL_HINT = "pip install 'fashionbench[sweep]'"


STUDY_DB = "study.db"        # the default storage: OUT/STUDY/study.db


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
