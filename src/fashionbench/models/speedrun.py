"""SpeedrunNet: a network of our own for time-to-accuracy on 28x28x1 (not in the
reference table).

After Keller Jordan's airbench (CIFAR-10 speedruns, 2024), which follows Page's
ResNet-9 DAWNBench entry: each group is a 3x3 convolution at the group's input
resolution, then a 2x2 max-pool, then BatchNorm and GELU, then a second 3x3
convolution at the pooled resolution. Pooling right after the first convolution
puts half of each group's convolutions at a quarter of the pixels; the group's
first convolution still sees the finer grid. No biases (BatchNorm follows every
convolution), no dropout (the runs are too short to overfit), a global max-pool and
one linear layer as the head, the logits scaled down (airbench's 1/9) so that the
first steps' softmax is not saturated.

For 28x28 inputs three groups take 28 to 14 to 7 to 3 pixels. The widths are kept
small because on CPUs time is FLOPs (32 MFLOPs an image forward, BasicCNN 52), and
multiples of 16: bf16 matrix units work in tiles of them, and a stem of 24 channels
trained at about 1,500 images/s against 2,000 for 16 (bf16, 2 CPU cores, batch 256;
benchmarks/speedrun_widths.py, docs/experiments/speedrun.md).

SpeedrunResNet, for the longer budgets, is the same network wider (one and a half
times) and deeper as airbench96 makes it (Jordan 2024): each group gains a third
convolution, and the second and third sit in a residual branch around the pooled
activations. The added convolutions work at the pooled resolution, so a group's
extra depth costs little (base widths: 42 MFLOPs against 32, about a tenth more time a
step in bf16 on 2 CPU cores).
"""

from torch import nn

from . import register


class Scale(nn.Module):
    """Multiplies by a constant: the logits' temperature at initialization."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _bn_gelu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.GELU()]


class Residual(nn.Module):
    """x + body(x)."""

    def __init__(self, *body: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*body)

    def forward(self, x):
        return x + self.body(x)


def _conv_bn_gelu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), *_bn_gelu(cout)]


def _group(cin: int, cout: int, residual: bool) -> list[nn.Module]:
    pooled = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2), *_bn_gelu(cout)]
    if residual:  # airbench96's group: two more convolutions in a branch around the pooled map
        return [*pooled, Residual(*_conv_bn_gelu(cout, cout), *_conv_bn_gelu(cout, cout))]
    return [*pooled, *_conv_bn_gelu(cout, cout)]


def _network(num_classes: int, widths: tuple[int, ...], residual: bool) -> nn.Sequential:
    stem, *groups = widths
    layers: list[nn.Module] = _conv_bn_gelu(1, stem)
    for cin, cout in zip(widths, groups):
        layers += _group(cin, cout, residual)
    return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(groups[-1], num_classes, bias=False), Scale(1 / 9))


@register(paper="Jordan 2024, airbench: 94% on CIFAR-10 in 3.29 seconds (after Page 2018, ResNet-9)",
          adaptation="a 3x3 stem of 16 channels at 28x28, then three conv-pool-conv groups "
                     "taking 28 to 14 to 7 to 3 pixels at widths 32, 64, 128")
def speedrun_net(num_classes: int = 10, widths: tuple[int, int, int, int] = (16, 32, 64, 128)) -> nn.Sequential:
    """Conv16-BN-GELU, then three groups [Conv-MaxPool2-BN-GELU-Conv-BN-GELU] of 32, 64
    and 128 channels, global max-pool, Dense10, logits x 1/9; about 0.30M parameters."""
    return _network(num_classes, widths, residual=False)


@register(paper="Jordan 2024, airbench96: 96% on CIFAR-10 (its residual conv groups, after Page 2018, ResNet-9)",
          adaptation="speedrun_net one and a half times as wide (a stem of 24, groups of 48, 96, 192), "
                     "each group with two more 3x3 convolutions in a residual branch after the pool")
def speedrun_resnet(num_classes: int = 10, widths: tuple[int, int, int, int] = (24, 48, 96, 192)) -> nn.Sequential:
    """Conv24-BN-GELU, then three groups [Conv-MaxPool2-BN-GELU, x + (Conv-BN-GELU-Conv-BN-GELU)(x)]
    of 48, 96 and 192 channels, global max-pool, Dense10, logits x 1/9; about 1.09M parameters."""
    return _network(num_classes, widths, residual=True)
