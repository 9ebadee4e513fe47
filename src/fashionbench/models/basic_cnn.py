"""BasicCNN, the reference project's baseline (94.21% test accuracy there).

A plain VGG-like stack kept exactly as the reference describes it, including its
one unusual choice: BatchNorm *after* the ReLU of the dense layer. Keras' defaults
are kept too ("same" padding, biases on every layer), which gives 732,114
parameters. No paper: the design is the reference project's own.
"""

from torch import nn

from . import register


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register(paper="the reference project's own baseline (no paper)",
          reference=94.21,
          adaptation="none needed: the reference project's own 28x28x1 design, "
                     "two 2x2 max-pools taking 28 to 14 to 7 pixels")
def basic_cnn(num_classes: int = 10) -> nn.Sequential:
    """[Conv32-BN-ReLU]x2, pool, drop .25, Conv64-ReLU, drop .5, [Conv64-BN-ReLU]x2,
    pool, drop .35, Dense200-ReLU-BN, Dense10; about 0.73M parameters."""
    return nn.Sequential(
        *_conv_bn_relu(1, 32), *_conv_bn_relu(32, 32),
        nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout(0.5),
        *_conv_bn_relu(64, 64), *_conv_bn_relu(64, 64),
        nn.MaxPool2d(2), nn.Dropout(0.35),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 200), nn.ReLU(inplace=True), nn.BatchNorm1d(200),
        nn.Linear(200, num_classes),
    )
