"""``fashionbench reproduce``: every model of the reference table, several seeds,
one results table. Finished runs are kept, interrupted ones resumed, so a
reproduction can be stopped and started again at will. Runs go cheapest model first,
seed 0 of every model before any seed 1 (``PRIORITY``).

``--deadline SECONDS`` fits the work into a time limit (a lent GPU's session): a run is
started only where its measured cost (costs.py) says it ends in time, one that falls
behind stops after an epoch with its checkpoint written, and the deadline's hard stop
ends whatever still runs when it passes; finished runs make the table.

``--protocol reference`` trains recipes/reference/MODEL.yaml instead: the reference
project's own protocol (its saved code's settings, the model selected on the test
set), to measure what its published figures were worth; it also writes
protocol.md, the best epoch on test beside the last epoch, per model."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from .. import runs
from ..config import LEAKY, Config, load_config, parse_override, reference_recipe
from ..costs import SAFETY, CostTable
from ..data import FashionMNIST
from ..deadline import Deadline, DeadlineReached
from ..errors import FashionbenchError, UsageError
from ..hardware import device_name, resolve_device
from ..models import reference_figures
from ..pages import md_table
from ..plan import training_plan
from ..rundir import CONFIG, HISTORY, RunDir, State, Summary, read_history, read_summary, state_of
from ..tracking import Tracking, track
from ..training import train_or_resume
from .leaderboard import collect, mean_std, write_tables

# Overrides per budget. "smoke" checks that every model trains, averages (two SWA
# snapshots, BatchNorm recomputed) and reports end to end in 40 steps of 8 images:
# about a minute for all eight models on 2 CPU cores (docs/experiments/smoke.md),
# short enough for the test suite. Its numbers mean nothing.
BUDGETS = {
    "full": [],
    "smoke": ["epochs=2", "batch_size=8", "data.train_subset=160", "data.val_size=100",
              "data.test_subset=100", "schedule.cycle_epochs=1", "swa.start=1"],
}


# The order runs train in, cheapest full recipe first (training time per seed on 2 CPU
# cores, docs/benchmarks.md; the GPU's order is alike), each seed of every model before
# the next seed: a reproduction stopped early has the most models' first seeds, and a
# model's figure grows a seed at a time. Models not named here come last.
PRIORITY = ("mini_vgg", "basic_cnn", "shufflenet_v2", "mobilenet_v2", "wide_resnet16_4", "resnet18",
            "resnet34", "shake_shake34")


def in_priority(models: list[str]) -> list[str]:
    return sorted(models, key=lambda m: PRIORITY.index(m) if m in PRIORITY else len(PRIORITY))


# Which recipe each model trains with: its own (recipes/MODEL.yaml), or the reference
# project's protocol (recipes/reference/MODEL.yaml, selected on test).
PROTOCOLS = ("ours", "reference")


def recipe_for(model: str, protocol: str) -> Path | None:
    """The recipe file of ``model`` under ``protocol`` (None: the model's own recipe)."""
    if protocol == "ours":
        return None
    recipe = reference_recipe(model)
    if recipe is None:
        raise UsageError(f"no reference-protocol recipe for {model} (recipes/reference/ has "
                         f"{', '.join(sorted(default_models(protocol)))})")
    return recipe


def default_models(protocol: str) -> list[str]:
    """The reference table's eight models; under the reference protocol, those with a
    recipe for it."""
    return [m for m in reference_figures() if protocol == "ours" or reference_recipe(m) is not None]


def reproduce_plan(models: list[str], seeds: list[int], budget: str, out: Path,
                   device: str | None = None, protocol: str = "ours",
                   compile: bool = False) -> list[tuple[Config, Path, State]]:
    """Every (config, run folder, state) of a reproduction, in the order they train
    (``PRIORITY``). A folder trained with another configuration stops it here, before
    anything is trained."""
    overrides = BUDGETS[budget] + ([f"device={device}"] if device else []) + (["compile=true"] if compile else [])
    recipes = {model: recipe_for(model, protocol) for model in models}
    plan = []
    for seed in seeds:
        for model in in_priority(models):
            recipe = recipes[model]
            cfg = load_config(model, recipe, [parse_override(o) for o in overrides + [f"seed={seed}"]])
            run_dir = out / "runs" / f"{model}-s{seed}"
            folder = RunDir(run_dir)
            state = folder.state
            # A folder is only ever continued by the configuration that started it; a
            # finished one is kept whatever device or compilation trained it.
            if run_dir.exists():
                if not folder.has_config:
                    raise FashionbenchError(f"{run_dir} exists but is not a run of this reproduction "
                                            f"(no {CONFIG}); remove it or choose another --out")
                if not same_config(folder, cfg, SETTINGS if state is State.COMPLETE else ()):
                    raise FashionbenchError(f"{run_dir} was trained with another configuration "
                                            "(budget or recipe changed); remove it or choose another --out")
            plan.append((cfg, run_dir, state))
    return plan


# How a run is trained, not what it trains: a finished run counts whatever they were
# (a GPU session with --compile keeps the eager runs of earlier ones).
SETTINGS = ("device", "compile")


def same_config(folder: RunDir, cfg: Config, ignore: tuple[str, ...] = ()) -> bool:
    """Does the config ``folder`` trained with describe ``cfg`` (but for the keys ``ignore``)?
    Compared as configurations, not as text: a run folder written before a config key
    was retired still matches."""
    try:
        return dataclasses.replace(folder.config, **{k: getattr(cfg, k) for k in ignore}) == cfg
    except FashionbenchError:  # unreadable, or no longer a valid configuration
        return False


def describe_plan(plan: list[tuple[Config, Path, State]]) -> str:
    lines = []
    for i, (cfg, run_dir, state) in enumerate(plan, 1):
        doing = {State.NEW: "would train", State.INTERRUPTED: "would resume", State.COMPLETE: "already complete"}
        lines.append(f"[{i}/{len(plan)}] {cfg.model} seed {cfg.seed}: {doing[state]} in {run_dir}")
        if state is not State.COMPLETE:
            lines += ["    " + line for line in training_plan(cfg)]
    return "\n".join(lines)


def describe_outcome(plan: list[tuple[Config, Path, State]]) -> tuple[str, bool]:
    """What of the plan is finished, partial (with its epochs) or not started, as its
    folders are now; and whether all is finished."""
    finished = [run_dir for _, run_dir, _ in plan if state_of(run_dir) is State.COMPLETE]
    partial = [f"{cfg.model} seed {cfg.seed}: {len(read_history(run_dir))} of {cfg.epochs} epochs"
               for cfg, run_dir, _ in plan if state_of(run_dir) is State.INTERRUPTED]
    line = (f"{len(finished)} of {len(plan)} runs finished, {len(partial)} partial"
            + (f" ({'; '.join(partial)})" if partial else "")
            + f", {len(plan) - len(finished) - len(partial)} not started")
    return line, len(finished) == len(plan)


class FallingBehind(Exception):
    """A run whose remaining epochs no longer fit before the deadline (raised after an
    epoch's checkpoint is written)."""


def train_plan(data: FashionMNIST, plan: list[tuple[Config, Path, State]], deadline: Deadline | None = None,
               costs: CostTable | None = None, tracking: Tracking | None = None) -> None:
    """Train (or resume, or read back) the plan's runs in order, each logged where
    ``tracking`` says (a run read back finished is not logged again). With a ``deadline``
    (and the cost table ``costs``, measured as the runs go), each run only as far as
    the time allows (``train_within``); its hard stop ends what still runs when it passes."""
    labels = [f"[{i}/{len(plan)}] {cfg.model} seed {cfg.seed}" for i, (cfg, _, _) in enumerate(plan, 1)]
    if deadline is None:
        for label, (cfg, run_dir, _) in zip(labels, plan):
            with track(tracking, run_dir, run_dir.name) as tracked:
                tracked.finish(train_or_resume(cfg, data, run_dir, label, hooks=tracked.hooks), run_dir)
        return
    costs = costs or CostTable(None)
    try:
        with deadline.hard_stop():
            for label, (cfg, run_dir, _) in zip(labels, plan):
                train_within(cfg, data, run_dir, label, deadline, costs, tracking)
    except DeadlineReached:
        print(f"the deadline ({deadline.seconds:g} s) has passed: stopped", flush=True)


def train_within(cfg: Config, data: FashionMNIST, run_dir: Path, label: str, deadline: Deadline,
                 costs: CostTable, tracking: Tracking | None = None) -> None:
    """One run as far as ``deadline`` allows. Its cost measured before on this device
    decides whether it starts; one not measured yet starts, its first epoch measuring
    it (a run that cannot finish is lost on a lent GPU, but skipping what is unmeasured
    would never measure it, and an epoch is the cheapest exact measurement: the next
    session plans from it). After each epoch the table is updated, and the run stops
    there, its checkpoint written, when its remaining epochs and finish would end
    after the deadline."""
    state = state_of(run_dir)
    if state is State.COMPLETE:
        train_or_resume(cfg, data, run_dir, label)  # read back, said so
        return
    device = device_name(resolve_device(cfg.device))
    epochs_left = cfg.epochs - (len(read_history(run_dir)) if state is State.INTERRUPTED else 0)
    cost = costs.get(device, cfg)
    need = None if cost is None else cost.to_start(epochs_left)
    left = deadline.left()
    if need is not None and need * SAFETY > left:
        if epochs_left and cost.first_epoch_seconds * SAFETY > left:
            print(f"{label}: not started: the {max(left, 0):.0f} s left are too short for one epoch of "
                  f"{cfg.model} seed {cfg.seed} (about {cost.first_epoch_seconds:.0f} s on {device}, "
                  "start-up included)", flush=True)
        else:
            print(f"{label}: not started: needs about {need:.0f} s on {device}, {max(left, 0):.0f} s left",
                  flush=True)
        return
    if need is None:
        print(f"{label}: its cost on {device} is not measured yet; its first epoch measures it", flush=True)
    existed = run_dir.exists()
    mark, first = deadline.clock(), True

    def watch(row: dict) -> None:  # after each epoch's checkpoint
        nonlocal mark, first
        now = deadline.clock()
        measured = costs.record(device, cfg, **{"first_epoch" if first else "epoch": now - mark})
        mark, first = now, False
        epochs_left = cfg.epochs - row["epoch"]
        rest, left = measured.to_end(epochs_left), deadline.left()
        # After the last epoch only the finish is left, seconds: it goes on, the hard stop
        # its only limit (stopped there, a run on a lent GPU would be lost all the same).
        if epochs_left and rest * SAFETY > left:
            raise FallingBehind(f"{label}: stopped after epoch {row['epoch']} of {cfg.epochs}: the rest needs "
                                f"about {rest:.0f} s, {max(left, 0):.0f} s left; its checkpoint is kept")

    try:
        with track(tracking, run_dir, run_dir.name) as tracked:
            try:
                summary = train_or_resume(cfg, data, run_dir, label, on_epoch=watch, hooks=tracked.hooks)
            except FallingBehind:
                tracked.end("KILLED")  # stopped to be resumed, as a signal stops it; not failed
                raise
            tracked.finish(summary, run_dir)
    except FallingBehind as e:
        print(e, flush=True)
        return
    except DeadlineReached:
        if state_of(run_dir) is State.INTERRUPTED:
            done = len(read_history(run_dir))
            during = f"epoch {done + 1}" if done < cfg.epochs else "its final evaluation"
            print(f"{label}: the deadline came during {during}; the checkpoint of epoch {done} is kept",
                  flush=True)
        else:
            print(f"{label}: the deadline came before its first epoch ended; nothing of it is kept", flush=True)
            if not existed:  # only its config: no folder is better than a run that never ran
                shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if not first:  # an epoch trained in this call: what finishing took
        costs.record(device, cfg, finish=deadline.clock() - mark)


def reproduce(data: FashionMNIST, plan: list[tuple[Config, Path, State]], budget: str,
              out: Path, protocol: str = "ours", deadline: Deadline | None = None,
              costs: CostTable | None = None, tracking: Tracking | None = None) -> list[Path]:
    """Train the plan (``train_plan``), then write the tables of its finished runs
    (none: no table, and [] returned)."""
    train_plan(data, plan, deadline, costs, tracking)
    run_dirs = [run_dir for _, run_dir, _ in plan if state_of(run_dir) is State.COMPLETE]
    if not run_dirs:
        return []
    seeds = ",".join(map(str, dict.fromkeys(cfg.seed for cfg, _, _ in plan)))
    title = (f"fashionbench reproduce --budget {budget}" + (f" --protocol {protocol}" if protocol != "ours" else "")
             + f" (seeds {seeds})")
    paths = write_tables(collect(run_dirs), out, title)
    if protocol == "reference":
        paths.append(out / "protocol.md")
        runs.write_text(paths[-1], f"# {title}\n\n{protocol_table(run_dirs)}\n")
    return paths


def val_chosen(run_dir: Path) -> dict:
    """The epoch (its history's row) with the best validation accuracy, the first of
    equals: what an honest early stop would keep of the same training."""
    history = read_history(run_dir)
    if not history or any("test_acc" not in row for row in history):
        raise FashionbenchError(f"{run_dir}: {HISTORY} lacks the per-epoch test accuracy of the reference protocol")
    return max(history, key=lambda row: row["val_acc"])  # max keeps the first of equals


def protocol_figures(runs: dict[Path, Summary]) -> dict[str, list[float]]:
    """Of reference-protocol runs, in %, one per run (in ``runs``' order): the best epoch's
    test accuracy (selected on test), the last epoch's (what the reference's saved code
    read) and that of the epoch validation would have chosen (the same training, read
    honestly)."""
    return {"best": [100 * s.test_acc for s in runs.values()],
            "last": [100 * s.accuracy("last", "test") for s in runs.values()],
            "on_val": [100 * val_chosen(path)["test_acc"] for path in runs]}


def protocol_table(run_dirs: list[Path]) -> str:
    """Per model, over its seeds: the reference's published figure, the best epoch's test
    accuracy (the protocol's selection on test) with its range over seeds, which epochs
    those were, the last epoch's (what the reference's saved code read), the test
    accuracy of the epoch validation would have chosen (the same training, read
    honestly), and the gap between best and last (the optimism of selecting on test), in
    %, mean ± sample std."""
    by_model: dict[str, list] = {}
    for run_dir in run_dirs:
        summary = read_summary(run_dir)
        if not summary.leaky:
            raise FashionbenchError(f"{run_dir}: not a run of the reference protocol (eval.select_on val)")
        by_model.setdefault(summary.model, []).append((summary, run_dir))
    header = ["model", "reference published %", f"best epoch on test % ({LEAKY})", "its range over seeds %",
              "best epochs", "last epoch %", "epoch chosen on val: test %", "best - last (points)", "seeds"]
    rows = []
    for model, pairs in by_model.items():
        summaries = [summary for summary, _ in pairs]
        best, last, on_val = protocol_figures({run_dir: summary for summary, run_dir in pairs}).values()
        published = reference_figures().get(model)
        rows.append([model, "-" if published is None else f"{published:.2f}", mean_std(best),
                     f"{min(best):.2f} to {max(best):.2f}",
                     ", ".join(str(s.extra["best_epoch"]) for s in summaries), mean_std(last), mean_std(on_val),
                     mean_std([b - a for b, a in zip(best, last)]), ",".join(str(s.seed) for s in summaries)])
    first = next(iter(by_model.values()))[0][0]
    return (md_table(header, rows) + f"\n\nBest epochs of {first.epochs}, each run's test split of "
            f"{first.test_size:,} images evaluated after every epoch.")
