"""Every number a user gives has bounds a user can read, NaN and infinities are refused
wherever a number is read (YAML, --set, options, the Python API), and a plan's cost
does not grow with the run it plans. docs/reliability.md lists what these hold."""

from __future__ import annotations

import dataclasses
import math
import re
import resource
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import fashionbench as fb
from fashionbench.config import RANGES, Config, ConfigError, _lookup, all_keys, load_config, parse_override
from fashionbench.errors import UsageError
from fashionbench.training import Diverged, Trainer

from conftest import run_main, small_config
from test_cli import assert_one_line_error


def number_kinds() -> dict[str, type]:
    """Every config key a number is given for, and its kind (bools are not numbers here;
    swa.start_epoch is written by fashionbench, never given)."""
    kinds = {}
    for key in all_keys():
        owner, _, name = key.rpartition(".")
        hint = typing.get_type_hints(type(_lookup(Config(), owner)) if owner else Config)[name]
        kind = next(a for a in (typing.get_args(hint) or (hint,)) if a is not type(None))
        if kind in (int, float) and key != "swa.start_epoch":
            kinds[key] = kind
    return kinds


FLOAT_KEYS = [key for key, kind in number_kinds().items() if kind is float]


def test_every_number_in_a_config_has_a_finite_range():
    missing = [key for key in number_kinds() if key not in RANGES]
    assert not missing, f"config keys with no range: {missing}"
    assert all(math.isfinite(high) for _, high, _ in RANGES.values())


def resolve(*overrides: str) -> Config:
    return load_config("basic_cnn", overrides=[parse_override(o) for o in overrides])


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "inf"])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_nan_and_infinity_are_refused_for_every_float_key(key, value):
    with pytest.raises(ConfigError, match=rf"^{key} must be in .*, got (nan|inf|-inf)$"):
        resolve(f"{key}={value}", "schedule.name=constant")  # constant: base_lr below lr is not asked


@pytest.mark.parametrize("override, message", [
    ("epochs=1000000000", "epochs must be in [1, 100000], got 1000000000"),
    ("batch_size=100000000", "batch_size must be in [1, 60000], got 100000000"),
    ("seed=99999999999999999999", "seed must be in [0, 4294967295]"),
    ("seed=-1", "seed must be in [0, 4294967295]"),
    ("data.split_seed=4294967296", "data.split_seed must be in [0, 4294967295]"),
    ("data.train_subset=1000000000", "data.train_subset must be in [10, 60000]"),
    ("optim.lr=1e300", "optim.lr must be in (0, 10000], got 1e+300"),
    ("optim.weight_decay=5", "optim.weight_decay must be in [0, 1], got 5"),
    ("schedule.cycle_epochs=1e9", "schedule.cycle_epochs must be in (0, 100000]"),
    ("swa.start=1e9", "swa.start must be in (0, 100000]"),
    ("schedule.pct_start=1", "schedule.pct_start must be in (0, 0.99], got 1"),
])
def test_numbers_have_upper_bounds_that_say_what_they_are(override, message):
    with pytest.raises(ConfigError) as e:
        resolve(override)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_adamw_momentum_is_a_beta_below_one():
    with pytest.raises(ConfigError, match="AdamW's beta1"):
        resolve("optim.name=adamw", "optim.momentum=1")


@pytest.mark.parametrize("options", [{"lr": float("nan")}, {"lr": float("inf")}, {"seed": 10**20},
                                     {"epochs": 10**9}, {"overrides": {"augment.flip": float("nan")}}])
def test_the_python_api_refuses_them_too(options):
    with pytest.raises(UsageError):
        fb.resolve_config("basic_cnn", **options)


BILLION, SEED_TOO_BIG = "1000000000", "99999999999999999999"
TRAIN, SWEEP = ["train", "--dry-run", "basic_cnn"], ["sweep", "--dry-run", "basic_cnn"]
SPEEDRUN = ["speedrun", "--dry-run"]


@pytest.mark.parametrize("args, fragment", [
    (TRAIN + ["--epochs", BILLION], "argument --epochs: must be between 1 and 100000, got 1000000000"),
    (TRAIN + ["--set", f"epochs={BILLION}"], "epochs must be in [1, 100000], got 1000000000"),
    (TRAIN + ["--seed", SEED_TOO_BIG], "argument --seed: must be between 0 and 4294967295"),
    (TRAIN + ["--batch-size", BILLION], "argument --batch-size: must be between 1 and 60000"),
    (TRAIN + ["--train-subset", BILLION], "argument --train-subset: must be between 10 and 60000"),
    (TRAIN + ["--lr", "nan"], "argument --lr: must be a number in (0, 10000], got nan"),
    (TRAIN + ["--lr", "1e300"], "argument --lr: must be a number in (0, 10000], got 1e300"),
    (TRAIN + ["--set", "augment.flip=.nan"], "augment.flip must be in [0, 1], got nan"),
    (TRAIN + ["--set", "optim.lr=.nan"], "optim.lr must be in (0, 10000], got nan"),
    (["one-vs-all", "--dry-run", "basic_cnn", "--epochs", BILLION], "argument --epochs: must be between 1 and"),
    (["reproduce", "--dry-run", "--seeds", f"0,{SEED_TOO_BIG}"], "argument --seeds: must be between 0 and"),
    (SWEEP + ["--trials", BILLION], "argument --trials: must be between 1 and 10000"),
    (SWEEP + ["--seed", "-1"], "argument --seed: must be at least 0"),
    (SWEEP + ["--sampler-seed", "4294967296"], "argument --sampler-seed: must be between 0 and 4294967295"),
    (SWEEP + ["--heartbeat", BILLION], "argument --heartbeat: must be between 1 and 86400"),
    (SPEEDRUN + ["--budget", "nan"], "budget must be more than 0 and at most 604800 seconds (a week), got nan"),
    (SPEEDRUN + ["--budget", "inf"], "budget must be more than 0 and at most 604800 seconds (a week), got inf"),
    (SPEEDRUN + ["--target", "101"], "--target: target is a test accuracy in %: more than 0 and at most 100, got 101"),
    (SPEEDRUN + ["--seeds", BILLION], "argument --seeds: must be between 1 and 1000"),
    (SPEEDRUN + ["--epochs", BILLION], "argument --epochs: must be between 1 and 100000"),
    (["lr-find", "basic_cnn", "--end", "1e300"], "argument --end: must be a number in (0, 10000]"),
    (["lr-find", "basic_cnn", "--start", "nan"], "argument --start: must be a number in (0, 10000]"),
    (["lr-find", "basic_cnn", "--steps", BILLION], "argument --steps: must be between 20 and 100000"),
    (["specialists", "r", "--epochs", BILLION], "argument --epochs: must be between 1 and 100000"),
    (["report", "r", "--errors", BILLION], "argument --errors: must be between 1 and 10000"),
    (["audit", "r", "--top", BILLION], "argument --top: must be between 1 and 10000"),
])
def test_every_number_on_the_command_line_is_bounded(args, fragment):
    """Refused as the command line is read (or, for --set, as the config is): nothing runs."""
    assert_one_line_error(run_main(*args), fragment, status=2)


def test_a_dry_run_of_the_longest_run_prints_its_plan(tmp_path):
    result = run_main("train", "basic_cnn", "--epochs", "100000", "--dry-run", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    swa = next(line for line in result.stdout.splitlines() if line.startswith("SWA:"))
    assert swa.startswith("SWA:        ends of epochs 67000, 67001, ..., 100000 (33001 snapshots)"), swa


def test_a_plan_takes_bounded_memory_whatever_the_epochs():
    """Past the bound on epochs too (a config built in Python is not validated): the plan
    is worked out arithmetically, never as a list of steps or snapshots."""
    script = (
        "import dataclasses\n"
        "from fashionbench.config import load_config, swa_start_epoch\n"
        "from fashionbench.plan import training_plan\n"
        "cfg = load_config('basic_cnn')\n"
        "n = 10**12\n"
        "swa = dataclasses.replace(cfg.swa, start_epoch=swa_start_epoch(cfg.swa.start, n))\n"
        "cfg = dataclasses.replace(cfg, epochs=n, swa=swa)\n"
        "print('\\n'.join(training_plan(cfg)))\n")
    limit = 2 * 1024**3  # importing torch takes under 1 GiB; a list of snapshots, hundreds

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            preexec_fn=cap_memory)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1000000000000" in result.stdout.replace(",", "")


def test_an_optimizer_overflow_is_a_divergence(data, tmp_path):
    """A learning rate past the bound (a config built in Python skips validation) makes
    torch's optimizer raise an overflow within the first steps: stopped as a divergence, one
    line, and the new run's folder is not left behind with its config.yaml alone."""
    cfg = small_config("optim.name=adamw", "epochs=1")
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=1e300))
    run_dir = tmp_path / "overflow"
    with pytest.raises(Diverged) as e:
        Trainer(cfg, data, run_dir).fit()
    message = str(e.value)
    assert "diverged at epoch 1, step" in message and "overflowed" in message and "\n" not in message
    assert not run_dir.exists()


def test_a_run_diverging_in_its_first_epoch_leaves_no_folder(data_dir, tmp_path):
    """Nothing was kept, so nothing is left: the same --name can be run again with a
    lower --lr (resuming a folder with only its config would diverge again)."""
    result = run_main("train", "basic_cnn", "--lr", "1e4", "--epochs", "1", "--batch-size", "100",
                      "--train-subset", "400", "--set", "data.val_size=200", "--set", "data.test_subset=200",
                      "--out", str(tmp_path), "--name", "x", "--data-dir", str(data_dir))
    assert_one_line_error(result, "diverged", "nothing was kept", status=1)
    assert not (tmp_path / "x").exists()


def test_seed_bound_is_what_the_generators_take():
    """The largest seed trains: numpy's RandomState (the validation split, Optuna's
    sampler) and torch both take it."""
    import numpy as np
    import torch

    high = RANGES["seed"][1]
    assert RANGES["data.split_seed"][1] == high
    np.random.RandomState(high)
    torch.manual_seed(high + 1_000_003 * 1024)  # a process's own stream under torchrun
    assert resolve(f"seed={high}", f"data.split_seed={high}").seed == high


def test_a_one_cycle_rise_of_one_step_is_refused_before_training():
    """pct_start x steps = 1: torch's OneCycleLR would divide by zero at the first step."""
    from fashionbench.schedule import SchedulePlan

    cfg = resolve("schedule.name=onecycle", "schedule.pct_start=0.25", "epochs=1")
    with pytest.raises(ConfigError, match="schedule.pct_start 0.25 of 4 steps is one step of rise"):
        SchedulePlan(cfg, 4)
    assert SchedulePlan(cfg, 8).total_steps == 8


def test_configuration_md_lists_every_range():
    from fashionbench.config import span

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    listed = dict(re.findall(r"^\| `([a-z_.]+)` \| `([\[(][^`]+\])` \|$", doc, flags=re.M))
    assert listed == {key: span(*bounds) for key, bounds in RANGES.items()}
