"""MiniVGG, the reference project's small VGG-style network (94.59% test there).

After Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition" (ICLR 2015): stacks of 3x3 convolutions between poolings.
The layer list is the reference's own; it names no activation for the
convolutions, so they get ReLU as in VGG (without one, each pair of convolutions
would collapse into a single linear map). Keras' defaults are kept: "same"
padding except where the reference asks for "valid", pooling stride equal to
its 3x3 window (28 -> 9 -> 7 -> 2), biases everywhere.
"""

from torch import nn

from . import register


@register(paper="Simonyan & Zisserman 2015, Very Deep Convolutional Networks (VGG)",
          reference=94.59,
          adaptation="none needed: the reference project's own 28x28x1 layer list, "
                     "3x3 max-pools taking 28 to 9 to 7 to 2 pixels")
def mini_vgg(num_classes: int = 10) -> nn.Sequential:
    """Conv32-Conv32-MaxPool3-Drop.25-Conv64-Conv64(valid)-MaxPool3-Drop.25-
    Dense256-LeakyReLU(.3)-Drop.25-Dense256-LeakyReLU(.3)-Dense10; about 0.20M parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(3), nn.Dropout(0.25),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, 3), nn.ReLU(inplace=True),
        nn.MaxPool2d(3), nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * 2 * 2, 256), nn.LeakyReLU(0.3, inplace=True), nn.Dropout(0.25),
        nn.Linear(256, 256), nn.LeakyReLU(0.3, inplace=True),
        nn.Linear(256, num_classes),
    )
