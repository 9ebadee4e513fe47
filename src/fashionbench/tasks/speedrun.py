"""``fashionbench speedrun``: the speedrun recipe (recipes/speedrun_net.yaml, or any
recipe file given) trained from scratch on several seeds, timed. The result: test accuracy mean ± std over the
seeds (each seed's final model, the test set used once per seed) and the median
training time, with the one-off costs beside it rather than hidden in it.

What the timed figure is: for each seed, the seconds from its first training step to
its final model, i.e. the training steps (``train_seconds``) plus, where the recipe
averages weights, SWA's BatchNorm pass. Not in it, each reported on its own: loading
the data (``data_seconds``), the warm-up that pays one-off costs (kernel selection,
memory pools, ``torch.compile``) on a throwaway model before the first seed, and the
validation passes between epochs, which the final model does not depend on
(``val_seconds``: they make the accuracy-against-time curve).

A speedrun stopped by a signal continues with ``--resume FOLDER``: its plan (the config
with the epochs chosen, the seeds, the target; ``plan.json``) is written before the
first seed trains, so the continuation trains what the first process planned, even
where a budget chose the epochs. Finished seeds are kept and the interrupted one
resumes from its checkpoint; speedrun.json marks that seed ``resumed``: its time was
measured in two processes, each warmed up."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import runs
from ..config import MAX_EPOCHS, Config, config_from_dict
from ..data import FashionMNIST
from ..errors import FashionbenchError, UsageError
from ..rundir import State, Summary, state_of
from ..tracking import Tracking, track
from ..training import Trainer, train_or_resume

RECIPE = "speedrun_net"
# The warm-up: steps that pay the one-off costs, then steps that measure a step's cost.
# Five timed steps overestimated it by a fifth on 2 CPU cores (81 ms a step against
# about 65 in the run: 17 epochs chosen for 300 s, 190 to 241 s trained), so --budget
# left time unused. Twenty cost about 1.5 s and came closer (73 ms guessed against
# about 67 run, at 120 s), still on the safe side on a machine whose speed varies.
WARMUP_STEPS = 5
TIMED_STEPS = 20
# The longest --budget: a week. A figure of longer is no speedrun, and a mistyped budget
# (1e9 s: 1.3 billion epochs of the recipe) is refused rather than started.
MAX_BUDGET_SECONDS = 7 * 24 * 3600
PLAN = "plan.json"


def check_budget(seconds: float) -> float:
    if not 0 < seconds <= MAX_BUDGET_SECONDS:
        raise UsageError(f"budget must be more than 0 and at most {MAX_BUDGET_SECONDS} seconds "
                         f"(a week), got {seconds:g}")
    return seconds


def check_target(percent: float) -> float:
    if not 0 < percent <= 100:
        raise UsageError(f"target is a test accuracy in %: more than 0 and at most 100, got {percent:g}")
    return percent


@dataclass
class Warmup:
    seconds: float           # the throwaway model's steps, first ones included
    seconds_per_step: float  # after them: what a timed step costs
    steps_per_epoch: int     # of the config warmed up (its training split and batch)


def warm_up(cfg: Config, data: FashionMNIST, steps: int = WARMUP_STEPS, timed: int = TIMED_STEPS) -> Warmup:
    """A throwaway trainer of ``cfg`` takes ``steps`` steps and then ``timed`` more: the
    first pay the one-off costs, the others measure a step's cost."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, data, Path(tmp) / "warm-up")
        train, bs = trainer.splits["train"], cfg.batch_size
        images, labels = train.images[:bs], train.labels[:bs]  # the shapes are what warms up
        start = time.perf_counter()
        for i in range(steps + timed):
            if i == steps:
                warm = time.perf_counter()
            loss, _ = trainer.train_step(images, labels)
            loss.item()  # waits for the device
        end = time.perf_counter()
        return Warmup(warm - start, (end - warm) / timed, trainer.steps_per_epoch)


def epochs_for(budget: float, warmup: Warmup) -> int:
    """The most epochs whose training steps fit in ``budget`` seconds at the warmed-up
    step cost; a budget that not one epoch fits is refused (training one anyway would
    report a budget it did not keep)."""
    epoch = warmup.steps_per_epoch * warmup.seconds_per_step
    if budget < epoch:
        raise UsageError(f"--budget {budget:g} s is less than one epoch: an epoch takes about {epoch:.1f} s "
                         f"here ({warmup.steps_per_epoch} steps at {warmup.seconds_per_step * 1000:.0f} ms, "
                         f"measured); give --budget {math.ceil(epoch)} or more")
    # A week of a tiny subset's epochs can pass the epochs' bound (config.MAX_EPOCHS): the
    # budget is then more than that many epochs need, and the run trains the bound.
    return min(int(budget / epoch), MAX_EPOCHS)


@dataclass
class Plan:
    """What a speedrun trains, fixed before its first seed: seed S trains ``cfg`` with
    seed S, for the epochs chosen here (by the warm-up, under a budget)."""
    cfg: Config
    seeds: int
    target: float
    budget: float | None
    warmup: Warmup
    data_seconds: float

    def to_dict(self) -> dict:
        return {"config": self.cfg.to_dict(), "seeds": self.seeds, "target": self.target,
                "budget_seconds": self.budget, "warmup": dataclasses.asdict(self.warmup),
                "data_seconds": self.data_seconds}


def write_plan(folder: Path, plan: Plan) -> None:
    runs.write_json(folder / PLAN, plan.to_dict())


def read_plan(folder: Path) -> Plan:
    """An interrupted speedrun's plan; a folder that is not one, or is finished, is refused."""
    folder = Path(folder)
    if (folder / "speedrun.json").exists():
        raise FashionbenchError(f"{folder} is already complete (speedrun.json exists)")
    try:
        data = json.loads((folder / PLAN).read_text())
        return Plan(config_from_dict(data["config"]), data["seeds"], data["target"], data["budget_seconds"],
                    Warmup(**data["warmup"]), data["data_seconds"])
    except FileNotFoundError:
        raise FashionbenchError(f"{folder}: not a speedrun folder (no {PLAN})") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FashionbenchError(f"{folder / PLAN}: not a speedrun plan ({e})") from None


def timed_seconds(summary: Summary) -> float:
    return summary.train_seconds + summary.extra.get("swa_bn_seconds", 0.0)


def speedrun(plan: Plan, data: FashionMNIST, out: Path, tracking: Tracking | None = None) -> dict:
    """Train the plan's config once per seed into ``out/seed-S`` (finished seeds kept, an
    interrupted one resumed), each logged where ``tracking`` says (after each epoch, off
    the clock), and write ``out/speedrun.json``."""
    cfg, warmup = plan.cfg, plan.warmup
    per_seed = []
    for seed in range(plan.seeds):
        run_dir = out / f"seed-{seed}"
        resumed = state_of(run_dir) is State.INTERRUPTED
        with track(tracking, run_dir, f"{out.name}/{run_dir.name}") as tracked:
            summary = train_or_resume(dataclasses.replace(cfg, seed=seed), data, run_dir,
                                      f"[{seed + 1}/{plan.seeds}] {cfg.model} seed {seed}", hooks=tracked.hooks)
            tracked.finish(summary, run_dir)
        device = summary.device
        per_seed.append({"seed": seed, "run": str(run_dir), "test_acc": summary.test_acc,
                         "val_acc": summary.val_acc, "seconds": timed_seconds(summary),
                         "val_seconds": summary.val_seconds, "resumed": resumed})
    accs = [100 * s["test_acc"] for s in per_seed]
    result = {
        "model": cfg.model, "folder": str(out), "epochs": cfg.epochs, "budget_seconds": plan.budget,
        "target": plan.target,
        "test_acc_mean": statistics.mean(accs), "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else None,
        "median_seconds": statistics.median(s["seconds"] for s in per_seed),
        "reached_target": statistics.mean(accs) >= plan.target,
        "data_seconds": plan.data_seconds, "warmup_seconds": warmup.seconds,
        "seconds_per_step": warmup.seconds_per_step, "steps_per_epoch": warmup.steps_per_epoch,
        "seeds": per_seed,
        "full_training_set": cfg.data.train_subset is None, **runs.environment(),
        "device": device,
        "data_md5": data.md5,
    }
    runs.write_text(out / "speedrun.json", json.dumps(result, indent=2) + "\n")
    return result


def describe(result: dict) -> str:
    std = f" ± {result['test_acc_std']:.2f}" if result["test_acc_std"] is not None else ""
    verdict = "reached" if result["reached_target"] else "NOT reached"
    lines = [f"test accuracy {result['test_acc_mean']:.2f}%{std} over {len(result['seeds'])} seed(s); "
             f"target {result['target']:.2f}%: {verdict}",
             f"training, first step to final model: median {result['median_seconds']:.1f} s "
             f"({result['epochs']} epochs) on {result['device']}",
             f"not timed: data loading {result['data_seconds']:.1f} s, warm-up {result['warmup_seconds']:.1f} s, "
             f"validation between epochs {statistics.mean(s['val_seconds'] for s in result['seeds']):.1f} s a seed"]
    if not result["full_training_set"]:
        lines.append("a training subset: not a speedrun figure")
    resumed = [str(s["seed"]) for s in result["seeds"] if s.get("resumed")]
    if resumed:
        lines.append(f"resumed after a stop: seed {', '.join(resumed)} (its time adds up two processes' training)")
    return "\n".join(lines)
