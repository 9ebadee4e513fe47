"""init.whiten and init.dirac (initialisation.py): the first layer whitens the training
patches and stays frozen, the other convolutions start at the identity, a run with both
trains and resumes bit for bit, and with both off nothing changes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fashionbench.errors import UsageError
from fashionbench.initialisation import WHITEN_IMAGES, dirac, first_conv, whiten, whitening_filters
from fashionbench.models import build_model
from fashionbench.splits import normalize, to_float
from fashionbench.training import Trainer, train_or_resume

from conftest import small_config


def training_images(data, n: int = 2000) -> torch.Tensor:
    return normalize(to_float(data.train_images[:n]), False)


def test_the_filters_whiten_the_patches(data):
    """On real images: the filters' responses to the 3x3 patches have a second moment of
    eigenvalue / (eigenvalue + eps) on the diagonal (1 for all but the faintest
    directions) and nothing off it."""
    images = training_images(data)
    filters = whitening_filters(images, (3, 3), eps=5e-4)
    assert filters.shape == (9, 1, 3, 3)
    responses = F.conv2d(images.double(), filters.double()).transpose(0, 1).reshape(9, -1)
    moment = responses @ responses.T / responses.shape[1]
    assert torch.allclose(moment - torch.diag(moment.diag()), torch.zeros(9, 9, dtype=torch.double), atol=1e-6)
    patches = F.unfold(images.double(), (3, 3)).transpose(1, 2).reshape(-1, 9)
    eigenvalues = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0)  # largest first
    assert torch.allclose(moment.diag(), eigenvalues / (eigenvalues + 5e-4), atol=1e-4), moment.diag()
    assert (moment.diag() > 0.97).all()


def test_whitening_fills_pairs_of_channels_and_freezes_them(data):
    """speedrun_net's 16-channel stem: the 8 largest directions, each as it is and negated;
    speedrun_resnet's 24: all 9 in 18 channels, the other 6 as PyTorch initialised them."""
    images = training_images(data)
    filters = whitening_filters(images, (3, 3), eps=5e-4)
    for name, pairs in (("speedrun_net", 8), ("speedrun_resnet", 9)):
        torch.manual_seed(0)
        model = build_model(name)
        before = first_conv(model).weight.detach().clone()
        conv = whiten(model, images, eps=5e-4)
        assert conv is first_conv(model) and not conv.weight.requires_grad
        assert torch.allclose(conv.weight[:pairs], filters[:pairs]) and torch.allclose(conv.weight[pairs:2 * pairs],
                                                                                       -filters[:pairs])
        assert torch.equal(conv.weight[2 * pairs:], before[2 * pairs:])


def test_dirac_passes_each_input_channel_through():
    """After dirac, a convolution's first in_channels outputs are its input (3x3, padding
    1); grouped ones and the one skipped are left alone."""
    torch.manual_seed(0)
    model = build_model("speedrun_net")
    stem = first_conv(model)
    before = stem.weight.detach().clone()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert dirac(model, skip=stem) == len(convs) - 1
    assert torch.equal(stem.weight, before)
    x = torch.randn(2, 32, 14, 14)
    second = convs[2]  # the first group's second convolution, 32 -> 32
    assert second.in_channels == second.out_channels == 32
    with torch.no_grad():
        assert torch.equal(second(x), x)
        wider = convs[3]  # 32 -> 64: the first 32 outputs pass the input, the others do not
        out = wider(x)
        assert torch.equal(out[:, :32], x) and not torch.equal(out[:, 32:], out[:, :32])


class Stop(Exception):
    """Raised after epoch 1's checkpoint: the run stops there, as a kill would stop it."""


def test_a_run_with_both_trains_with_a_frozen_first_layer_and_resumes_exactly(data, tmp_path):
    """Two epochs with init.whiten and init.dirac: the stem's weights at the end are the
    whitening filters of the run's own training images (never updated), the rest trained;
    stopped after epoch 1 and resumed (the resumed trainer whitens again, then loads the
    checkpoint), it ends with the uninterrupted run's metrics and weights."""
    cfg = small_config("init.whiten=true", "init.dirac=true", "swa.enabled=false", "data.train_subset=500",
                       "data.val_size=200", "data.test_subset=200", "batch_size=50", model="speedrun_net")
    trainer = Trainer(cfg, data, tmp_path / "whole")
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    expected = whitening_filters(normalize(to_float(trainer.splits["train"].images[:WHITEN_IMAGES]), False).cpu(),
                                 (3, 3), 5e-4)
    trained = trainer.model.state_dict()
    assert torch.allclose(trained["0.weight"][:8].float().cpu(), expected[:8])
    assert torch.equal(trained["0.weight"], start["0.weight"])
    assert not torch.equal(trained["3.weight"], start["3.weight"])  # the first group's convolution learnt

    def stop(row):
        raise Stop

    with pytest.raises(Stop):
        train_or_resume(cfg, data, tmp_path / "stopped", on_epoch=stop)
    train_or_resume(cfg, data, tmp_path / "stopped")
    train_or_resume(cfg, data, tmp_path / "uninterrupted")
    assert rows(tmp_path / "stopped") == rows(tmp_path / "uninterrupted")
    a, b = (torch.load(tmp_path / name / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
            for name in ("stopped", "uninterrupted"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rows(run_dir):
    """metrics.jsonl without its timings."""
    return [{k: v for k, v in json.loads(line).items() if "seconds" not in k and k != "images_per_s"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_both_off_builds_the_model_as_before(data, tmp_path):
    """The defaults: the trainer's model is the registry's, seeded, untouched."""
    cfg = small_config(model="speedrun_net")
    torch.manual_seed(cfg.seed)
    built = build_model("speedrun_net").state_dict()
    trained = Trainer(cfg, data, tmp_path / "run").model.state_dict()
    assert all(torch.equal(built[k], trained[k].cpu()) for k in built)


def test_whitening_a_model_it_cannot_whiten_is_a_usage_error():
    """No convolution, or a first one of a single output channel: one line, no traceback."""
    images = torch.randn(8, 1, 28, 28)
    with pytest.raises(UsageError, match="^init.whiten needs a model whose first layer is a convolution$"):
        whiten(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)), images, 5e-4)
    with pytest.raises(UsageError, match="^init.whiten needs a first convolution of 2 or more output channels"):
        whiten(nn.Sequential(nn.Conv2d(1, 1, 3)), images, 5e-4)
