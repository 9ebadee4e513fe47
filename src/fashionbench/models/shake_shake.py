"""Shake-Shake: Gastaldi, "Shake-Shake regularization" (2017, arXiv:1705.07485).

Every residual block has two parallel branches (ReLU-Conv3x3-BN-ReLU-Conv3x3-BN)
whose outputs are mixed as a*b1 + (1-a)*b2. "Shake-Shake-Image": in training, a
fresh a ~ U(0, 1) per sample in the forward pass and an independent b ~ U(0, 1)
per sample scales the gradients in the backward pass; at evaluation a = 0.5.
Where the shape changes the shortcut is the paper's: ReLU, then two 1x1
convolutions on stride-2 subsamplings, one shifted by a pixel, concatenated
and batch-normalized.

``shake_shake34`` puts these blocks in the ResNet-34 layout: stages [3, 4, 6, 3]
of widths 64 to 512 after a 3x3 stem, running at 28, 14, 7 and 4 pixels on
28x28x1 input. Depth counts one path (1 + 2 x 16 + 1 = 34), as the paper counts
its "Shake-Shake-26". The reference project's "ShakeShake34" was an 18-layer
layout that counted the layers of both branches; we follow the paper's count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import register
from .resnet import stages


class ShakeShake(torch.autograd.Function):
    """a*x1 + (1-a)*x2 forward; the gradient reaching x1 is b*g and x2 (1-b)*g."""

    @staticmethod
    def forward(ctx, x1, x2, alpha, beta):
        ctx.save_for_backward(beta)
        return alpha * x1 + (1 - alpha) * x2

    @staticmethod
    def backward(ctx, grad):
        (beta,) = ctx.saved_tensors
        return beta * grad, (1 - beta) * grad, None, None


def shake(x1: torch.Tensor, x2: torch.Tensor, training: bool) -> torch.Tensor:
    if not training:
        return 0.5 * (x1 + x2)
    shape = (x1.shape[0],) + (1,) * (x1.dim() - 1)
    alpha = torch.rand(shape, device=x1.device, dtype=x1.dtype)
    beta = torch.rand(shape, device=x1.device, dtype=x1.dtype)
    return ShakeShake.apply(x1, x2, alpha, beta)


def _branch(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))


class ShiftedShortcut(nn.Module):
    """The paper's downsampling shortcut: half the channels from even pixels,
    half from pixels shifted by one, so no input position is always skipped."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, cout // 2, 1, bias=False)
        self.conv2 = nn.Conv2d(cin, cout - cout // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        s = self.stride
        return self.bn(torch.cat([self.conv1(x[:, :, ::s, ::s]),
                                  self.conv2(shifted[:, :, ::s, ::s])], dim=1))


class ShakeBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.branch1 = _branch(cin, cout, stride)
        self.branch2 = _branch(cin, cout, stride)
        self.shortcut = (ShiftedShortcut(cin, cout, stride)
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + shake(self.branch1(x), self.branch2(x), self.training)


class ShakeShakeNet(nn.Module):
    def __init__(self, blocks: list[int], num_classes: int):
        super().__init__()
        widths = [64, 128, 256, 512]
        self.stem = nn.Sequential(nn.Conv2d(1, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64))
        self.stages = stages(ShakeBlock, blocks, widths, 64)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(widths[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# The reference figure is for the reference's own "ShakeShake34" (an 18-layer layout,
# see above): the published number for this name, not for this exact network.
@register(paper="Gastaldi 2017, Shake-Shake regularization",
          reference=95.71,
          adaptation="one-channel 3x3 stride-1 stem as in this package's ResNets; "
                     "stages at 28, 14, 7 and 4 pixels")
def shake_shake34(num_classes: int = 10) -> ShakeShakeNet:
    """Shake-Shake-Image in the ResNet-34 layout; about 42.38M parameters."""
    return ShakeShakeNet([3, 4, 6, 3], num_classes)
