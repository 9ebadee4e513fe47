"""MobileNetV2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks" (CVPR 2018).

Width 1.0: a 32-channel stem, the paper's seven bottleneck stages (expansion t,
channels c, repeats n, stride s), a 1x1 convolution to 1280 channels, global
average pooling and a linear classifier; ReLU6 everywhere except after the
projections, which stay linear. Adapted to 28x28x1: a one-channel stem with
stride 1 instead of 2, and the second stage at stride 1 instead of 2, so the
total stride is 8 instead of 32 and the last feature map is 4x4, not 1x1.
"""

from __future__ import annotations

import torch
from torch import nn

from . import register

# (expansion t, output channels c, repeats n, first stride s); the paper's table 2
# with the first two strides of 2 (stem and second stage) set to 1.
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _conv_bn_relu6(cin: int, cout: int, kernel: int = 1, stride: int = 1,
                   groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU6(inplace=True)]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        layers = _conv_bn_relu6(cin, hidden) if expansion != 1 else []
        layers += _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


@register(paper="Sandler et al. 2018, MobileNetV2: Inverted Residuals and Linear Bottlenecks",
          reference=93.2,
          adaptation="one-channel stem and second stage at stride 1 instead of 2, "
                     "so the total stride is 8 and the last feature map 4x4, not 1x1")
def mobilenet_v2(num_classes: int = 10) -> nn.Sequential:
    """MobileNetV2 1.0; about 2.24M parameters."""
    layers: list[nn.Module] = _conv_bn_relu6(1, 32, 3)
    cin = 32
    for t, c, n, s in SETTINGS:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += _conv_bn_relu6(cin, 1280)
    # The paper's classifier has dropout 0.2 before the linear layer (torchvision too).
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, num_classes)]
    return nn.Sequential(*layers)
