"""``fashionbench reproduce``: every model of the reference table, several seeds,
one results table. Finished runs are kept, interrupted ones resumed, so a
reproduction can be stopped and started again at will."""

from __future__ import annotations

from pathlib import Path

from .config import dump_config, load_config, parse_override
from .data import FashionMNIST
from .errors import FashionbenchError
from .leaderboard import collect, write_tables

# Overrides per budget. "smoke" checks that every model trains, averages (two SWA
# snapshots, BatchNorm recomputed) and reports end to end in 200 steps of 4
# images, small enough for CI on 2 CPU cores; its numbers mean nothing.
BUDGETS = {
    "full": [],
    "smoke": ["epochs=2", "batch_size=4", "data.train_subset=400", "data.val_size=100",
              "data.test_subset=100", "schedule.cycle_epochs=1", "swa.start_epoch=1"],
}


def reproduce(data: FashionMNIST, models: list[str], seeds: list[int], budget: str,
              out: Path, device: str | None = None) -> list[Path]:
    from .engine import train

    overrides = BUDGETS[budget] + ([f"device={device}"] if device else [])
    plan = []
    for model in models:
        for seed in seeds:
            cfg = load_config(model, None, [parse_override(o) for o in overrides + [f"seed={seed}"]])
            plan.append((cfg, out / "runs" / f"{model}-s{seed}"))
    for i, (cfg, run_dir) in enumerate(plan, 1):
        head = f"[{i}/{len(plan)}] {cfg.model} seed {cfg.seed}"
        done = (run_dir / "summary.json").exists()
        resume = (run_dir / "checkpoint.pt").exists()
        if (done or resume) and (run_dir / "config.yaml").read_text() != dump_config(cfg):
            raise FashionbenchError(f"{run_dir} was trained with another configuration "
                                    "(budget or recipe changed); remove it or choose another --out")
        if done:
            print(f"{head}: already complete in {run_dir}", flush=True)
            continue
        print(f"{head}: {'resuming' if resume else 'training'} in {run_dir}", flush=True)
        train(cfg, data, run_dir, resume=resume)
    title = f"fashionbench reproduce --budget {budget} (seeds {','.join(map(str, seeds))})"
    return write_tables(collect([run_dir for _, run_dir in plan]), out, title)

