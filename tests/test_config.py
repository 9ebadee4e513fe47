from pathlib import Path

import pytest
import yaml

from fashionbench.config import (
    Config,
    all_keys,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
    read_yaml,
)
from fashionbench.errors import FashionbenchError, UsageError
from fashionbench.models import MODELS

from conftest import run_main

# Every recipe resolved before swa.start replaced swa.start_epoch: the schedules the
# published numbers were trained with.
BEFORE_SWA_START = Path(__file__).parent / "data" / "recipes_before_swa_start"


def test_recipe_is_the_reference_setup():
    cfg = load_config("basic_cnn")
    assert cfg.epochs == 30 and cfg.schedule.name == "cyclic" and cfg.swa.enabled
    assert cfg.augment.flip == 0.1 and cfg.augment.zoom == 0.05
    assert cfg.data.val_size == 5000


def test_precedence_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 3\noptim: {lr: 0.2}\n")
    cfg = load_config("basic_cnn", recipe, [parse_override("optim.lr=1e-2"),
                                            parse_override("augment.flip=0")])
    assert cfg.epochs == 3 and cfg.optim.lr == 0.01 and cfg.augment.flip == 0.0
    assert cfg.optim.momentum == Config().optim.momentum


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("basic_cnn", overrides=[parse_override("data.train_subset=1000")])
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    assert load_config(None, tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", "unknown config key 'optim.lrr'; valid keys: model, epochs"),
    ("epochs=ten", "epochs must be int, got 'ten'"),
    ("epochs=0", "epochs must be in [1, 100000], got 0"),
    ("schedule.name=step", "schedule.name must be one of cyclic, onecycle, constant"),
    ("optim=3", "optim must be a mapping"),
    ("augment.flip=1.5", "augment.flip must be in [0, 1]"),
    ("schedule.base_lr=0.5", "schedule.base_lr (0.5) must be below optim.lr"),
    ("device=tpu", "device must be one of auto, cpu, cuda, cuda:N"),
    ("novalue", "--set expects key=value"),
    ("model=resnet9000", "unknown model 'resnet9000'; available: basic_cnn"),
    ("swa.start=1.5", "swa.start must be a fraction of the epochs (0 < start < 1) or a whole epoch"),
    ("swa.start=0", "swa.start must be in (0, 100000]"),
    ("swa.start_epoch=10", "swa.start_epoch is written by fashionbench; set swa.start instead"),
])
def test_bad_keys_and_values_are_usage_errors_naming_what_is_valid(override, message):
    with pytest.raises(UsageError) as err:
        load_config("basic_cnn", overrides=[parse_override(override)])
    assert message in str(err.value)


def test_all_keys_lists_nested_keys():
    keys = all_keys()
    assert "optim.lr" in keys and "swa.start" in keys and "augment.erase" in keys


PUBLISHED = sorted(path.stem for path in BEFORE_SWA_START.glob("*.yaml"))  # the recipes of that time


def test_every_published_recipe_is_still_a_model():
    assert len(PUBLISHED) == 8 and set(PUBLISHED) <= set(MODELS)


@pytest.mark.parametrize("model", PUBLISHED)
def test_recipes_resolve_to_the_schedules_of_the_published_runs(model):
    """A recipe's fractional swa.start, at its default epochs, gives exactly the config
    the recipe resolved to when SWA's start was an epoch number."""
    resolved = load_config(model).to_dict()
    assert resolved["swa"].pop("start") == 0.67  # the fraction: the one new key
    before = yaml.safe_load((BEFORE_SWA_START / f"{model}.yaml").read_text())
    assert before.pop("one_vs_all") is False  # retired since: one-vs-all is a command
    assert resolved.pop("dropout") is True and resolved.pop("sync_bn") is True  # new keys, defaults as before
    # New keys: a sweep's trials, flip TTA, the reference protocol's selection and schedule.
    assert resolved.pop("eval") == {"test": True, "tta": False, "tta_shift": 0, "select_on": "val"}
    assert resolved["schedule"].pop("decay") == 0.0
    # The speedrun frontier's tricks, each off by default.
    assert resolved.pop("ema") == {"enabled": False, "decay": 0.99, "every": 5, "start": 0.5, "lookahead": False}
    assert resolved.pop("bn_momentum") is None
    assert resolved["optim"].pop("bn_bias_lr_scale") == 1.0 and resolved["augment"].pop("flip_alternate") is False
    assert resolved.pop("init") == {"whiten": False, "whiten_eps": 5e-4, "dirac": False}
    assert resolved == before


def test_a_config_with_a_retired_key_still_reads_as_a_run_folder(tmp_path):
    """Run folders written before one-vs-all became a command have one_vs_all in their
    config.yaml; they still load. As a --config for new training, a one-vs-all config
    says which command trains it now."""
    old = tmp_path / "config.yaml"
    old.write_text(dump_config(load_config("basic_cnn")) + "one_vs_all: true\n")
    assert config_from_dict(read_yaml(old)) == load_config("basic_cnn")
    assert load_config(None, old) == load_config("basic_cnn")
    refused = run_main("train", "--config", str(old), "--dry-run")
    assert refused.returncode == 2 and f"fashionbench one-vs-all --config {old}" in refused.stderr
    planned = run_main("one-vs-all", "--config", str(old), "--out", str(tmp_path), "--dry-run")
    assert planned.returncode == 0 and "ten binary networks" in planned.stdout


@pytest.mark.parametrize("start, epochs, start_epoch", [
    (0.67, 30, 20), (0.67, 60, 40), (0.67, 5, 3), (0.67, 1, 1), (0.5, 3, 2), (0.01, 10, 1),
    (20, 30, 20), (20, 5, 20), (1, 2, 1), (3.0, 10, 3),
])
def test_swa_start_is_a_fraction_of_the_epochs_or_an_epoch(start, epochs, start_epoch):
    cfg = load_config("basic_cnn", overrides=[parse_override(f"swa.start={start}"),
                                              parse_override(f"epochs={epochs}")])
    assert cfg.swa.start_epoch == start_epoch
    assert f"start_epoch: {start_epoch}" in dump_config(cfg)  # config.yaml records it
    assert yaml.safe_load(dump_config(cfg))["swa"]["start"] == start  # 20 stays 20, not 20.0


def test_epochs_rescale_the_recipes_averaging_window():
    assert load_config("mini_vgg", overrides=[parse_override("epochs=6")]).swa.start_epoch == 4



def test_a_written_config_resolves_again_at_other_epochs(tmp_path):
    """config.yaml records start_epoch, but --config with --epochs recomputes it from start;
    a config.yaml from before swa.start existed reads its start_epoch as the start."""
    (tmp_path / "c.yaml").write_text(dump_config(load_config("basic_cnn")))
    assert load_config(None, tmp_path / "c.yaml", [parse_override("epochs=9")]).swa.start_epoch == 6
    old = tmp_path / "old.yaml"
    old.write_text((BEFORE_SWA_START / "basic_cnn.yaml").read_text())
    cfg = load_config(None, old, [parse_override("epochs=9")])
    assert cfg.swa.start == 20 and cfg.swa.start_epoch == 20


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(FashionbenchError, match="invalid YAML"):
        read_yaml(bad)
    with pytest.raises(FashionbenchError, match="cannot read"):
        read_yaml(tmp_path / "missing.yaml")
