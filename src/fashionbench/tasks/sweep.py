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
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import runs
from ..config import ConfigError, dump_config, load_config
from ..data import FashionMNIST
from ..errors import FashionbenchError
from ..figures import png
from ..tracking import Record, TrackedRun, Tracking, group, machine_tags, track
from ..training import Diverged, train_or_resume
from .search_space import Space, default_space, describe, parse_space, recipe_values
from .study import (
    StudySpec,
    best_complete,
    default_storage,
    grace_period,
    import_optuna,
    importance_evaluator,
    join_study,
    live_trials,
    load_study,
    make_pruner,
    make_sampler,
    more_to_do,
    one_line,
    open_storage,
    requeue_recipe,
    safe_url,
    stale_trial_failed,
    study_dir,
)

BEST_RECIPE = "best.yaml"


# A worker gives up after this many trials in a row that could not run at all (a space
# whose corners make invalid configs): failed trials do not count towards --trials, so
# without it such a worker would ask forever.
MAX_FAILURES_IN_A_ROW = 5


class SurplusTrial(Exception):
    """A trial asked for the moment another worker took the study's last one."""


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
              heartbeat: int = 60, tracking: Tracking | None = None) -> SweepResult:
    """One worker of study ``study_name``: trials until the study holds ``trials`` of
    them (counting every worker's), each an ordinary run folder OUT/STUDY/trial-K
    trained with ``seed`` on the training split and judged on validation only. With
    nothing left to take while trials still run, it waits for them (``wait_for_running``):
    it returns once they are all finished, or held by live workers. Logged where
    ``tracking`` says: in MLflow, each trial a run nested under the study's run (one for
    the study, kept in the study: every worker's trials under it)."""
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
    study_run = group(tracking, study_name, record=Record(lambda: study.user_attrs.get("tracking", {}),
                                                          lambda record: study.set_user_attr("tracking", record)))
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
        with track(tracking, run_dir, f"{study_name}/{run_dir.name}", study_run) as tracked:
            try:
                summary = train_or_resume(cfg, data, run_dir, label=f"trial {trial.number}", on_epoch=report,
                                          hooks=tracked.hooks)
            except Diverged as e:
                # A diverged trial is a bad result, not a broken one: pruned, so that it counts
                # and TPE learns to avoid its region (a failed trial would teach it nothing).
                trial.set_user_attr("diverged", str(e))
                ended(tracked, trial.number, "pruned (diverged)", "FAILED")
                raise optuna.TrialPruned(str(e)) from None
            except optuna.TrialPruned:
                ended(tracked, trial.number, "pruned", "KILLED")
                raise
            tracked.finish(summary, run_dir)
            ended(tracked, trial.number, "complete", "FINISHED")
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

    with study_run:
        study_run.start(study_params(model, study_name, trials, space, url, pruner, seed, sampler_seed),
                        machine_tags(runs.environment()))
        study_run.artifact(folder / "space.yaml")
        result = search(study, study_name, trials, url, heartbeat, objective, after_trial, failures)
        if result.best_value is not None:
            study_run.metrics({"best_val_acc": result.best_value}, 0)
            study_run.tags({"best_trial": str(result.best_number)})
    return result


def ended(tracked: TrackedRun, number: int, state: str, status: str) -> None:
    """A trial's MLflow run tagged with its number and how it ended, and ended so."""
    tracked.tags({"optuna.trial": str(number), "optuna.state": state})
    tracked.end(status)


def study_params(model: str, name: str, trials: int, space: Space, url: str, pruner: str, seed: int,
                 sampler_seed: int | None) -> dict[str, str]:
    """A study's settings, as its MLflow run's parameters: the space's ranges and budget too."""
    return {"model": model, "study": name, "trials": str(trials), "storage": safe_url(url), "pruner": pruner,
            "seed": str(seed), "sampler_seed": str(sampler_seed),
            **{f"space.{key}": describe(param) for key, param in space.params.items()},
            **{f"budget.{key}": str(value) for key, value in space.budget.items()}}


def search(study, study_name: str, trials: int, url: str, heartbeat: int, objective, after_trial,
           failures: list[str]) -> SweepResult:
    """The worker's loop: trials while the study wants them, then the wait for the running ones."""
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


def summarize(study, name: str) -> SweepResult:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    best = best_complete(study)
    return SweepResult(name, counts, best.number if best else None, best.value if best else None)


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
