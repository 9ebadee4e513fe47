"""Every architecture: shapes, size, a learning step, determinism, memory
formats, bf16 and SWA; the registry's metadata; and Shake-Shake's mixing rule
against a hand computation."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch.optim import swa_utils

from fashionbench.errors import UsageError
from fashionbench.models import (
    MODELS,
    PAPERS,
    REGISTRY,
    ModelInfo,
    build_model,
    count_parameters,
    model_info,
    reference_figures,
    register,
)
from fashionbench.models.shake_shake import ShakeBlock, ShakeShake

NAMES = sorted(MODELS)

# The reference project's published test accuracies (%), in its table's order. A
# deliberate copy, not read from the registry: the published figures must not drift.
REFERENCE_TABLE = {"shake_shake34": 95.71, "wide_resnet16_4": 95.33, "resnet18": 94.74,
                   "resnet34": 94.71, "mini_vgg": 94.59, "basic_cnn": 94.21,
                   "mobilenet_v2": 93.2, "shufflenet_v2": 92.9}


@pytest.fixture(scope="module")
def batch(data):
    """16 real training images (normalized) with their labels, fixed."""
    x = data.train_images[:16].float() / 255
    return (x - x.mean()) / x.std(), data.train_labels[:16]


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_docstring_size(name):
    model = build_model(name)
    assert model.eval()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    stated = re.search(r"about ([\d.]+)M parameters", MODELS[name].__doc__)
    assert stated, f"{name}'s docstring states no size"
    assert count_parameters(model) == pytest.approx(float(stated[1]) * 1e6, rel=0.10)


@pytest.mark.parametrize("name", NAMES)
def test_registry_carries_paper_and_adaptation(name):
    info = model_info(name)
    assert info.name == name and info.builder is MODELS[name]
    assert info.paper.strip() and info.paper == PAPERS[name]
    assert info.adaptation.strip() and "\n" not in info.adaptation  # one sentence, one line
    assert info.family == MODELS[name].__module__.rpartition(".")[2]


def test_models_and_papers_follow_the_registry_in_order():
    assert list(MODELS) == list(PAPERS) == list(REGISTRY)


def test_reference_figures_are_the_reference_table_in_order():
    assert list(reference_figures().items()) == list(REFERENCE_TABLE.items())


def test_unknown_model_info_names_the_available_models():
    with pytest.raises(UsageError, match="unknown model 'resnet50'") as e:
        model_info("resnet50")
    assert all(name in str(e.value) for name in NAMES)


def test_a_model_without_a_reference_figure_registers():
    before = dict(REGISTRY)
    try:
        @register(paper="a paper", adaptation="none needed")
        def throwaway(num_classes: int = 10) -> torch.nn.Module:
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, num_classes))

        assert model_info("throwaway") == ModelInfo(
            "throwaway", throwaway, "a paper", None, "none needed", family="test_models")
        assert build_model("throwaway")(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        assert list(reference_figures()) == list(REFERENCE_TABLE)
        with pytest.raises(ValueError, match="already registered"):
            register(paper="a paper", adaptation="none needed")(throwaway)
    finally:  # leave no test model behind for the other tests
        for registry in (REGISTRY, MODELS, PAPERS):
            registry.pop("throwaway", None)
    assert REGISTRY == before and list(MODELS) == list(REGISTRY)


@pytest.mark.parametrize("paper, adaptation, reference", [
    ("", "none needed", None), ("a paper", " ", None), ("a paper", "none needed", 952.1)])
def test_model_info_refuses_missing_text_and_non_percentages(paper, adaptation, reference):
    with pytest.raises(ValueError):
        ModelInfo("m", torch.nn.Identity, paper, reference, adaptation, family="m")


@pytest.mark.parametrize("name", NAMES)
def test_one_step_lowers_the_loss(name, batch):
    x, y = batch
    torch.manual_seed(0)
    model = build_model(name).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def loss():
        torch.manual_seed(1)  # the same dropout masks and shake coefficients each time
        return F.cross_entropy(model(x), y)

    before = loss()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        assert loss() < before.detach()


@pytest.mark.parametrize("name", NAMES)
def test_eval_is_deterministic_and_layout_and_precision_agnostic(name, batch):
    x, _ = batch
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, model(x))
        channels_last = model.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(out, channels_last, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
        assert low.shape == (16, 10) and torch.isfinite(low).all()


@pytest.mark.parametrize("name", NAMES)
def test_swa_average_with_recomputed_batchnorm(name, batch):
    x, _ = batch
    model = build_model(name)
    swa = swa_utils.AveragedModel(model)
    for _ in range(2):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)
        swa.update_parameters(model)
    bns = [m for m in swa.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    swa_utils.update_bn([x[:8], x[8:]], swa)
    for bn in bns:  # update_bn resets, then averages batch statistics over the passes
        assert bn.num_batches_tracked == 2 and bn.running_mean.abs().sum() > 0
    assert bool(bns) == (name != "mini_vgg")  # the reference's MiniVGG has no BatchNorm
    assert swa.eval()(x).shape == (16, 10)


def test_shake_shake_mixes_with_alpha_and_backpropagates_with_beta():
    x1 = torch.randn(4, 3, 2, 2, requires_grad=True)
    x2 = torch.randn(4, 3, 2, 2, requires_grad=True)
    alpha = torch.tensor([0.1, 0.4, 0.7, 0.9]).view(4, 1, 1, 1)
    beta = torch.tensor([0.8, 0.3, 0.2, 0.5]).view(4, 1, 1, 1)
    out = ShakeShake.apply(x1, x2, alpha, beta)
    assert torch.allclose(out, alpha * x1 + (1 - alpha) * x2)
    grad = torch.randn_like(out)
    out.backward(grad)
    assert torch.allclose(x1.grad, beta * grad)
    assert torch.allclose(x2.grad, (1 - beta) * grad)


def test_shake_block_draws_independent_coefficients_per_sample():
    torch.manual_seed(0)
    block = ShakeBlock(3, 3, 1).train()
    x = torch.randn(5, 3, 4, 4)
    outputs = {}
    block.branch1.register_forward_hook(lambda m, i, o: outputs.setdefault("b1", o))
    block.branch2.register_forward_hook(lambda m, i, o: outputs.setdefault("b2", o))
    torch.manual_seed(7)
    out = block(x)
    for o in outputs.values():
        o.retain_grad()
    torch.manual_seed(7)  # the branches draw nothing, so these are the block's draws
    alpha, beta = torch.rand(5, 1, 1, 1), torch.rand(5, 1, 1, 1)
    assert len(set(alpha.flatten().tolist())) == 5 and not torch.equal(alpha, beta)
    b1, b2 = outputs["b1"], outputs["b2"]
    assert torch.allclose(out, x + alpha * b1 + (1 - alpha) * b2, atol=1e-6)
    grad = torch.randn_like(out)
    out.backward(grad)
    assert torch.allclose(b1.grad, beta * grad, atol=1e-6)
    assert torch.allclose(b2.grad, (1 - beta) * grad, atol=1e-6)


def test_shake_block_evaluates_with_one_half_deterministically():
    torch.manual_seed(0)
    block = ShakeBlock(3, 3, 1).eval()
    x = torch.randn(5, 3, 4, 4)
    with torch.no_grad():
        expected = x + 0.5 * block.branch1(x) + 0.5 * block.branch2(x)
        assert torch.allclose(block(x), expected, atol=1e-6)
        assert torch.equal(block(x), block(x))
