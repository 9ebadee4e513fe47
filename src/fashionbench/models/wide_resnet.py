"""Wide residual networks: Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016).

WRN-d-k: pre-activation basic blocks (BN-ReLU-Conv3x3, dropout, BN-ReLU-Conv3x3),
(d - 4) / 6 blocks in each of three groups of widths 16k, 32k, 64k, a 3x3 stem
of 16 channels, strided 3x3 convolutions for downsampling and 1x1 projections
where the shape changes. Adapted to 28x28x1: a one-channel stem, and the groups
run at 28x28, 14x14 and 7x7 before global average pooling (the paper's CIFAR
layout, 4 pixels smaller). Dropout 0.3 between the two convolutions, the
paper's CIFAR setting.
"""

from __future__ import annotations

import torch
from torch import nn

from . import register


class WideBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        # The projection sees the pre-activated input, as in the authors' code.
        shortcut = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(self.dropout(torch.relu(self.bn2(o))))
        return o + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, dropout: float, num_classes: int):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("WRN depth must be 6n + 4")
        n = (depth - 4) // 6
        widths = [16 * widen, 32 * widen, 64 * widen]
        layers: list[nn.Module] = [nn.Conv2d(1, 16, 3, 1, 1, bias=False)]
        cin = 16
        for i, width in enumerate(widths):
            for j in range(n):
                layers.append(WideBasicBlock(cin, width, 2 if i > 0 and j == 0 else 1, dropout))
                cin = width
        layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register(paper="Zagoruyko & Komodakis 2016, Wide Residual Networks",
          reference=95.33,
          adaptation="the paper's CIFAR layout with a one-channel stem; "
                     "groups at 28, 14 and 7 pixels before global average pooling")
def wide_resnet16_4(num_classes: int = 10) -> WideResNet:
    """WRN-16-4: two blocks per group, widths 64/128/256; about 2.75M parameters."""
    return WideResNet(16, 4, 0.3, num_classes)
