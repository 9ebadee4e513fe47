"""ShuffleNet V2: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient
CNN Architecture Design" (ECCV 2018).

1.0x: a 24-channel 3x3 stem, three stages of 4, 8 and 4 units with output
widths 116, 232 and 464, a 1x1 convolution to 1024 channels, global average
pooling and a linear classifier. A unit splits its channels in two, transforms
one half (1x1 conv, 3x3 depthwise, 1x1 conv) and concatenates it with the
other, then shuffles the channels; a downsampling unit transforms both
halves, one through a strided depthwise branch. Adapted to 28x28x1: a
one-channel stem with stride 1 and no max-pool, so the stages run at 14, 7
and 4 pixels (the paper's stem and max-pool would divide 28x28 by 4 before the
first stage and leave 1x1 at the end).
"""

from __future__ import annotations

import torch
from torch import nn

from . import register


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
             relu: bool = True) -> list[nn.Module]:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.stride = stride
        half = cout // 2
        branch_in = cin if stride > 1 else half
        self.branch = nn.Sequential(
            *_conv_bn(branch_in, half),
            *_conv_bn(half, half, 3, stride, groups=half, relu=False),
            *_conv_bn(half, half))
        self.downsample = (nn.Sequential(*_conv_bn(cin, cin, 3, stride, groups=cin, relu=False),
                                         *_conv_bn(cin, half))
                           if stride > 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is None:
            keep, x = x.chunk(2, dim=1)
            out = torch.cat([keep, self.branch(x)], dim=1)
        else:
            out = torch.cat([self.downsample(x), self.branch(x)], dim=1)
        return channel_shuffle(out, 2)


@register(paper="Ma et al. 2018, ShuffleNet V2: Practical Guidelines for Efficient CNN Design",
          reference=92.9,
          adaptation="one-channel stem at stride 1 without the max-pool; "
                     "stages at 14, 7 and 4 pixels instead of ending at 1x1")
def shufflenet_v2(num_classes: int = 10) -> nn.Sequential:
    """ShuffleNet V2 1.0x; about 1.26M parameters."""
    layers: list[nn.Module] = _conv_bn(1, 24, 3)
    cin = 24
    for repeats, width in zip((4, 8, 4), (116, 232, 464)):
        for i in range(repeats):
            layers.append(ShuffleUnit(cin, width, 2 if i == 0 else 1))
            cin = width
    layers += _conv_bn(cin, 1024)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, num_classes)]
    return nn.Sequential(*layers)
