import pytest

from fashionbench.config import Config, all_keys, dump_config, load_config, parse_override, read_yaml
from fashionbench.errors import FashionbenchError


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
    ("epochs=0", "epochs must be in [1, inf], got 0"),
    ("schedule.name=step", "schedule.name must be one of cyclic, onecycle, constant"),
    ("optim=3", "optim must be a mapping"),
    ("augment.flip=1.5", "augment.flip must be in [0, 1]"),
    ("schedule.base_lr=0.5", "schedule.base_lr (0.5) must be below optim.lr"),
    ("device=tpu", "device must be one of auto, cpu, cuda, cuda:N"),
    ("novalue", "--set expects key=value"),
    ("model=resnet9000", "unknown model 'resnet9000'; available: basic_cnn"),
])
def test_bad_keys_and_values_name_what_is_valid(override, message):
    with pytest.raises(FashionbenchError) as err:
        load_config("basic_cnn", overrides=[parse_override(override)])
    assert message in str(err.value)


def test_all_keys_lists_nested_keys():
    keys = all_keys()
    assert "optim.lr" in keys and "swa.start_epoch" in keys and "augment.erase" in keys


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(FashionbenchError, match="invalid YAML"):
        read_yaml(bad)
    with pytest.raises(FashionbenchError, match="cannot read"):
        read_yaml(tmp_path / "missing.yaml")
