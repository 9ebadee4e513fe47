import pytest
import torch

from fashionbench.config import load_config, parse_override
from fashionbench.models import build_model
from fashionbench.plan import training_plan
from fashionbench.schedule import SchedulePlan, build_optimizer, build_scheduler
from fashionbench.training import Trainer

from conftest import small_config


def lrs(cfg, steps_per_epoch, n):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.optim.lr, momentum=0.9)
    sched = build_scheduler(cfg, opt, SchedulePlan(cfg, steps_per_epoch))
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def cfg_with(*items):
    return load_config("basic_cnn", overrides=[parse_override(i) for i in items])


def test_triangular_cycle_at_known_steps():
    cfg = cfg_with("optim.lr=0.1", "schedule.base_lr=0.01", "schedule.mode=triangular",
                   "schedule.cycle_epochs=2")
    lr = lrs(cfg, steps_per_epoch=10, n=41)  # one cycle = 20 steps
    assert lr[0] == pytest.approx(0.01) and lr[10] == pytest.approx(0.1)
    assert lr[5] == pytest.approx(0.055) and lr[20] == pytest.approx(0.01)
    assert lr[30] == pytest.approx(0.1) and lr[40] == pytest.approx(0.01)


def test_triangular2_halves_the_amplitude():
    cfg = cfg_with("optim.lr=0.1", "schedule.base_lr=0.01", "schedule.mode=triangular2",
                   "schedule.cycle_epochs=1")
    lr = lrs(cfg, steps_per_epoch=10, n=26)
    assert lr[5] == pytest.approx(0.1) and lr[15] == pytest.approx(0.055)
    assert lr[25] == pytest.approx(0.0325)


def test_exp_range_decays_by_gamma_per_step():
    cfg = cfg_with("optim.lr=0.1", "schedule.base_lr=0.01", "schedule.mode=exp_range",
                   "schedule.gamma=0.9", "schedule.cycle_epochs=1")
    lr = lrs(cfg, steps_per_epoch=10, n=16)
    assert lr[5] == pytest.approx(0.01 + 0.09 * 0.9 ** 5)
    assert lr[15] == pytest.approx(0.01 + 0.09 * 0.9 ** 15)


def test_onecycle_peaks_at_pct_start_and_ends_low():
    cfg = cfg_with("schedule.name=onecycle", "optim.lr=0.1", "schedule.pct_start=0.25", "epochs=4")
    lr = lrs(cfg, steps_per_epoch=25, n=100)
    assert max(lr) == pytest.approx(0.1) and lr.index(max(lr)) == 24
    assert lr[0] == pytest.approx(0.1 / 25) and lr[-1] < 1e-4


def test_swa_snapshots_at_cycle_ends_after_start():
    cfg = cfg_with("schedule.cycle_epochs=2", "swa.start=5", "epochs=10", "swa.lr=null")
    plan = SchedulePlan(cfg, 10)
    assert plan.cycle_steps == 20
    assert list(plan.snapshot_steps) == [60, 80, 100]  # ends of epochs 6, 8, 10: the cycle ends from epoch 5 on
    assert plan.snapshot_due(80) and not plan.snapshot_due(40) and not plan.snapshot_due(81)
    constant = cfg_with("schedule.name=constant", "swa.start=9", "epochs=10")
    assert list(SchedulePlan(constant, 10).snapshot_steps) == [90, 100]


@pytest.mark.parametrize("schedule", ["cyclic", "constant", "onecycle"])
@pytest.mark.parametrize("swa_lr", ["null", "0.01"])
def test_snapshots_are_the_cycle_or_epoch_ends_from_the_start_epoch(schedule, swa_lr):
    """The plan's arithmetic against the rule read literally, step by step, over
    budgets where snapshots fall mid-epoch, at epoch ends, or nowhere."""
    for epochs, start, cycle, spe in [(10, 5, 2, 10), (7, 0.67, 1.5, 7), (3, 3, 4, 9), (4, 5, 1, 5), (6, 2, 0.5, 3)]:
        cfg = cfg_with(f"schedule.name={schedule}", f"swa.lr={swa_lr}", f"epochs={epochs}",
                       f"swa.start={start}", f"schedule.cycle_epochs={cycle}")
        plan = SchedulePlan(cfg, spe)
        every = plan.cycle_steps if schedule == "cyclic" and swa_lr == "null" else spe
        first_allowed = (cfg.swa.start_epoch - 1) * spe + 1
        expected = [s for s in range(1, epochs * spe + 1) if s >= first_allowed and s % every == 0]
        assert list(plan.snapshot_steps) == expected
        assert plan.averaging == bool(expected)
        assert plan.handover_step == (cfg.swa.start_epoch * spe if expected and swa_lr != "null" else None)


def test_swa_off_takes_no_snapshot():
    assert not SchedulePlan(cfg_with("swa.enabled=false"), 10).averaging


def test_odd_steps_per_epoch_cycle_ends_at_epoch_end():
    cfg = cfg_with("optim.lr=0.1", "schedule.base_lr=0.01", "schedule.mode=triangular",
                   "schedule.cycle_epochs=1", "swa.start=1")
    lr = lrs(cfg, steps_per_epoch=7, n=15)
    assert lr[7] == pytest.approx(0.01) and lr[14] == pytest.approx(0.01)
    assert max(lr) == pytest.approx(0.01 + 0.09 * 3 / 3.5)
    assert list(SchedulePlan(cfg, 7).snapshot_steps)[:2] == [7, 14]


def test_swa_lr_takes_over_from_the_schedule_at_start_epoch(data, tmp_path):
    cfg = small_config("optim.name=sgd", "optim.lr=0.1", "schedule.base_lr=0.01",
                       "schedule.mode=triangular", "schedule.cycle_epochs=2", "epochs=6",
                       "swa.start=2", "swa.lr=0.05")
    trainer = Trainer(cfg, data, tmp_path / "run")
    spe = trainer.steps_per_epoch
    lr = []
    for step in range(1, 6 * spe + 1):
        lr.append(trainer.lr)
        trainer.optimizer.step()  # no gradients: the weights stay, the LR steps in order
        trainer.schedule.step(step)
    # The cycle (2 epochs) runs to the end of epoch 2 and ends at its low point ...
    assert lr[:2 * spe + 1] == pytest.approx(lrs(cfg, spe, 2 * spe + 1))
    assert lr[2 * spe] == pytest.approx(0.01)
    # ... then the LR glides to swa.lr over one epoch (cosine: halfway at mid-epoch) and stays.
    assert lr[2 * spe + spe // 2] == pytest.approx((0.01 + 0.05) / 2)
    assert lr[3 * spe:] == pytest.approx([0.05] * 3 * spe)
    assert trainer.plan.learning_rates() == lr  # the plan alone says the same, without a model
    # Snapshots at every epoch's end from epoch 2, not at cycle ends.
    assert list(trainer.plan.snapshot_steps) == [2 * spe, 3 * spe, 4 * spe, 5 * spe, 6 * spe]


def test_the_plan_gives_every_step_s_lr_without_a_model():
    cfg = cfg_with("optim.lr=0.1", "schedule.base_lr=0.01", "schedule.mode=triangular",
                   "schedule.cycle_epochs=2", "epochs=6", "swa.start=2", "swa.lr=0.05")
    lr = SchedulePlan(cfg, 10).learning_rates()
    assert len(lr) == 60 and lr[:21] == pytest.approx(lrs(cfg, 10, 21))  # the cycle to epoch 2's end
    assert lr[25] == pytest.approx((0.01 + 0.05) / 2) and lr[30:] == pytest.approx([0.05] * 30)


def test_a_run_whose_swa_takes_one_snapshot_says_it_is_not_an_average(data, tmp_path, capsys):
    # BasicCNN's recipe snapshots every epoch's end from epoch 1 of 1 (swa.lr set): one snapshot.
    plan = SchedulePlan(cfg_with("epochs=1"), 100)
    assert list(plan.snapshot_steps) == [100]
    assert plan.lone_snapshot() == ("SWA takes a single snapshot in 1 epoch (at the end of epoch 1): the SWA "
                                    "model is those weights with their BatchNorm statistics recomputed, "
                                    "not an average")
    assert SchedulePlan(cfg_with("epochs=3"), 100).lone_snapshot() is None  # epochs 2 and 3: an average
    trainer = Trainer(small_config("epochs=1", "swa.lr=0.001", "data.train_subset=300", "data.val_size=100",
                                   "data.test_subset=100"), data, tmp_path / "run")
    assert capsys.readouterr().err == ""  # not up front: a run that fails before never makes an SWA model
    trainer.fit()
    assert capsys.readouterr().err == f"fashionbench: warning: {plan.lone_snapshot()}\n"


@pytest.mark.parametrize("schedule", [("schedule.name=onecycle",), ("schedule.name=cyclic", "swa.lr=0.02"),
                                      ("schedule.name=inverse_time", "schedule.decay=0.01")],
                         ids=["onecycle", "cyclic-then-swalr", "inverse_time"])
def test_batchnorm_shifts_train_at_their_lr_scale_at_every_step(schedule):
    cfg = cfg_with("optim.lr=0.1", "schedule.base_lr=0.01", "optim.bn_bias_lr_scale=64", "optim.weight_decay=6.4e-3",
                   "epochs=4", "swa.start=2", *schedule)
    model = build_model("basic_cnn")
    optimizer = build_optimizer(cfg, model)
    rest, shifts = optimizer.param_groups
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert [id(p) for p in shifts["params"]] == [id(m.bias) for m in norms] and len(norms) == 5
    assert len(rest["params"]) + len(shifts["params"]) == len(list(model.parameters()))
    assert rest["weight_decay"] == 6.4e-3 and shifts["weight_decay"] == pytest.approx(1e-4)
    plan = SchedulePlan(cfg, 10)
    schedule = plan.schedule(optimizer)
    for step in range(1, plan.total_steps + 1):
        assert shifts["lr"] == pytest.approx(64 * rest["lr"], rel=1e-9), step
        optimizer.step()
        schedule.step(step)
    assert rest["lr"] != pytest.approx(0.1)  # the schedule moved it
    assert any(line.startswith("optimizer:  adamw, ") and line.endswith("; BatchNorm shifts at 64x the LR")
               for line in training_plan(cfg))


def test_without_an_lr_scale_the_optimizer_has_one_group_of_every_parameter():
    model = build_model("basic_cnn")
    (group,) = build_optimizer(cfg_with(), model).param_groups
    assert "lr_scale" not in group and [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]
