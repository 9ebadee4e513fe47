"""``fashionbench reproduce``: every model of the reference table, several seeds,
one results table. Finished runs are kept, interrupted ones resumed, so a
reproduction can be stopped and started again at will."""

from __future__ import annotations

from pathlib import Path

from .config import Config, config_from_dict, load_config, parse_override, read_yaml
from .data import FashionMNIST
from .errors import FashionbenchError
from .leaderboard import collect, write_tables
from .plan import training_plan
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


def reproduce_plan(models: list[str], seeds: list[int], budget: str, out: Path,
                   device: str | None = None) -> list[tuple[Config, Path, str]]:
    """Every (config, run folder, state) of a reproduction; state is "train", "resume"
    or "complete". A folder trained with another configuration stops it here, before
    anything is trained."""
    overrides = BUDGETS[budget] + ([f"device={device}"] if device else [])
    plan = []
    for model in models:
        for seed in seeds:
            cfg = load_config(model, None, [parse_override(o) for o in overrides + [f"seed={seed}"]])
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
              out: Path) -> list[Path]:
    for i, (cfg, run_dir, _) in enumerate(plan, 1):
        train_or_resume(cfg, data, run_dir, f"[{i}/{len(plan)}] {cfg.model} seed {cfg.seed}")
    seeds = ",".join(map(str, dict.fromkeys(cfg.seed for cfg, _, _ in plan)))
    title = f"fashionbench reproduce --budget {budget} (seeds {seeds})"
    return write_tables(collect([run_dir for _, run_dir, _ in plan]), out, title)
