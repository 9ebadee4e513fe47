"""``fashionbench reproduce``: every model of the reference table, several seeds,
one results table. Finished runs are kept, interrupted ones resumed, so a
reproduction can be stopped and started again at will.

``--protocol reference`` trains recipes/reference/MODEL.yaml instead: the reference
project's own protocol (its saved code's settings, the model selected on the test
set), to measure what its published figures were worth; it also writes
protocol.md, the best epoch on test beside the last epoch, per model."""

from __future__ import annotations

from pathlib import Path

from . import runs
from .config import LEAKY, Config, config_from_dict, load_config, parse_override, read_yaml, reference_recipe
from .data import FashionMNIST
from .errors import FashionbenchError, UsageError
from .leaderboard import collect, mean_std, write_tables
from .models import reference_figures
from .pages import md_table
from .plan import training_plan
from .runs import read_summary
from .training import train_or_resume

# Overrides per budget. "smoke" checks that every model trains, averages (two SWA
# snapshots, BatchNorm recomputed) and reports end to end in 40 steps of 8 images:
# about a minute for all eight models on 2 CPU cores (docs/experiments/smoke.md),
# short enough for the test suite. Its numbers mean nothing.
BUDGETS = {
    "full": [],
    "smoke": ["epochs=2", "batch_size=8", "data.train_subset=160", "data.val_size=100",
              "data.test_subset=100", "schedule.cycle_epochs=1", "swa.start=1"],
}


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
                   device: str | None = None, protocol: str = "ours") -> list[tuple[Config, Path, str]]:
    """Every (config, run folder, state) of a reproduction; state is "train", "resume"
    or "complete". A folder trained with another configuration stops it here, before
    anything is trained."""
    overrides = BUDGETS[budget] + ([f"device={device}"] if device else [])
    plan = []
    for model in models:
        recipe = recipe_for(model, protocol)
        for seed in seeds:
            cfg = load_config(model, recipe, [parse_override(o) for o in overrides + [f"seed={seed}"]])
            run_dir = out / "runs" / f"{model}-s{seed}"
            state = ("complete" if (run_dir / "summary.json").exists() else
                     "resume" if (run_dir / "checkpoint.pt").exists() else "train")
            # A folder is only ever continued by the configuration that started it.
            if run_dir.exists():
                if not (run_dir / "config.yaml").is_file():
                    raise FashionbenchError(f"{run_dir} exists but is not a run of this reproduction "
                                            "(no config.yaml); remove it or choose another --out")
                if not same_config(run_dir / "config.yaml", cfg):
                    raise FashionbenchError(f"{run_dir} was trained with another configuration "
                                            "(budget or recipe changed); remove it or choose another --out")
            plan.append((cfg, run_dir, state))
    return plan


def same_config(path: Path, cfg: Config) -> bool:
    """Does the config file at ``path`` describe ``cfg``? Compared as configurations, not
    as text: a run folder written before a config key was retired still matches."""
    try:
        return config_from_dict(read_yaml(path)) == cfg
    except FashionbenchError:  # unreadable, or no longer a valid configuration
        return False


def describe_plan(plan: list[tuple[Config, Path, str]]) -> str:
    lines = []
    for i, (cfg, run_dir, state) in enumerate(plan, 1):
        doing = {"train": "would train", "resume": "would resume", "complete": "already complete"}
        lines.append(f"[{i}/{len(plan)}] {cfg.model} seed {cfg.seed}: {doing[state]} in {run_dir}")
        if state != "complete":
            lines += ["    " + line for line in training_plan(cfg)]
    return "\n".join(lines)


def reproduce(data: FashionMNIST, plan: list[tuple[Config, Path, str]], budget: str,
              out: Path, protocol: str = "ours") -> list[Path]:
    for i, (cfg, run_dir, _) in enumerate(plan, 1):
        train_or_resume(cfg, data, run_dir, f"[{i}/{len(plan)}] {cfg.model} seed {cfg.seed}")
    seeds = ",".join(map(str, dict.fromkeys(cfg.seed for cfg, _, _ in plan)))
    title = (f"fashionbench reproduce --budget {budget}" + (f" --protocol {protocol}" if protocol != "ours" else "")
             + f" (seeds {seeds})")
    run_dirs = [run_dir for _, run_dir, _ in plan]
    paths = write_tables(collect(run_dirs), out, title)
    if protocol == "reference":
        paths.append(out / "protocol.md")
        runs.write_text(paths[-1], f"# {title}\n\n{protocol_table(run_dirs)}\n")
    return paths


def val_chosen(run_dir: Path) -> dict:
    """The epoch (metrics.jsonl's row) with the best validation accuracy, the first of
    equals: what an honest early stop would keep of the same training."""
    history = runs.read_history(run_dir)
    if not history or any("test_acc" not in row for row in history):
        raise FashionbenchError(f"{run_dir}: metrics.jsonl lacks the per-epoch test accuracy of the reference protocol")
    return max(history, key=lambda row: row["val_acc"])  # max keeps the first of equals


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
        best = [100 * s.test_acc for s in summaries]
        last = [100 * s.accuracy("last", "test") for s in summaries]
        on_val = [100 * val_chosen(run_dir)["test_acc"] for _, run_dir in pairs]
        published = reference_figures().get(model)
        rows.append([model, "-" if published is None else f"{published:.2f}", mean_std(best),
                     f"{min(best):.2f} to {max(best):.2f}",
                     ", ".join(str(s.extra["best_epoch"]) for s in summaries), mean_std(last), mean_std(on_val),
                     mean_std([b - a for b, a in zip(best, last)]), ",".join(str(s.seed) for s in summaries)])
    first = next(iter(by_model.values()))[0][0]
    return (md_table(header, rows) + f"\n\nBest epochs of {first.epochs}, each run's test split of "
            f"{first.test_size:,} images evaluated after every epoch.")
