"""Residual networks: He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016).

Basic blocks (Conv3x3-BN-ReLU-Conv3x3-BN, added to the shortcut, then ReLU),
four stages of widths 64, 128, 256, 512, 1x1 projection shortcuts (option B)
where the shape changes. Adapted to 28x28x1 the usual CIFAR way: a 3x3 stride-1
stem without the 7x7 convolution and max-pool, which would shrink 28x28 to 7x7
before the first block; the stages then run at 28, 14, 7 and 4 pixels.
As in the reference project, dropout 0.25 sits inside each block between the
two convolutions (not in the paper).
"""

from __future__ import annotations

import torch
from torch import nn

from . import register


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.dropout(torch.relu(self.bn1(self.conv1(x))))
        o = self.bn2(self.conv2(o))
        return torch.relu(o + self.shortcut(x))


def stages(block, blocks: list[int], widths: list[int], cin: int, **kwargs) -> nn.Sequential:
    """The residual stages shared by ResNet and Shake-Shake: the first block of
    every stage but the first halves the resolution."""
    layers = []
    for i, (n, width) in enumerate(zip(blocks, widths)):
        for j in range(n):
            layers.append(block(cin, width, 2 if i > 0 and j == 0 else 1, **kwargs))
            cin = width
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    def __init__(self, blocks: list[int], num_classes: int, dropout: float = 0.25):
        super().__init__()
        widths = [64, 128, 256, 512]
        self.stem = nn.Sequential(nn.Conv2d(1, 64, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.stages = stages(BasicBlock, blocks, widths, 64, dropout=dropout)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(widths[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


@register(paper="He et al. 2016, Deep Residual Learning for Image Recognition",
          reference=94.74,
          adaptation="3x3 stride-1 stem without the 7x7 convolution and max-pool; "
                     "stages at 28, 14, 7 and 4 pixels")
def resnet18(num_classes: int = 10) -> ResNet:
    """ResNet-18: stages [2, 2, 2, 2]; about 11.17M parameters."""
    return ResNet([2, 2, 2, 2], num_classes)


@register(paper="He et al. 2016, Deep Residual Learning for Image Recognition",
          reference=94.71,
          adaptation="3x3 stride-1 stem without the 7x7 convolution and max-pool; "
                     "stages at 28, 14, 7 and 4 pixels")
def resnet34(num_classes: int = 10) -> ResNet:
    """ResNet-34: stages [3, 4, 6, 3]; about 21.28M parameters."""
    return ResNet([3, 4, 6, 3], num_classes)
