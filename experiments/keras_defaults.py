"""Does PyTorch's initialisation explain the gap to the reference's figures? The check in
docs/experiments/reference_protocol.md.

The reference protocol's recipes (recipes/reference/) keep fashionbench's engine,
PyTorch's defaults included. The reference built its models in Keras, whose defaults
differ where it can matter for a network without BatchNorm trained with a decaying LR:

- weights: Glorot-uniform, limit sqrt(6 / (fan_in + fan_out)), in Keras; Kaiming-uniform
  with a = sqrt(5), limit 1 / sqrt(fan_in), in PyTorch: about 1.7 times smaller for
  MiniVGG's 3x3x32 convolutions, so each ReLU layer shrinks the signal;
- biases: zeros in Keras, uniform in PyTorch;
- BasicCNN's BatchNorm, as the reference's src/models.py (lines 962-996 at c57a908) sets
  it: Keras ``momentum=0.1`` (running statistics from the last few batches: PyTorch's
  ``momentum=0.9``), gamma drawn from Keras' ``'uniform'`` (U(-0.05, 0.05)); the dense
  layer's BatchNorm with Keras' defaults (momentum 0.99, epsilon 1e-3).

This script trains recipes/reference/MODEL.yaml with the model's parameters
re-initialised that way (same seeds, same everything else), each an ordinary
fashionbench run under OUT/runs (finished runs kept, interrupted ones resumed), and
writes OUT/protocol.md, the same table as ``fashionbench reproduce --protocol
reference``. The runs' config.yaml does not record the initialisation: this script
and OUT are the record.

    python experiments/keras_defaults.py --models mini_vgg --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from torch import nn

from fashionbench import runs
from fashionbench.config import load_config, parse_override, reference_recipe
from fashionbench.data import load_fashion_mnist
from fashionbench.models import REGISTRY
from fashionbench.tasks.reproduce import protocol_table
from fashionbench.training import train_or_resume


def keras_init(model: nn.Module, name: str) -> nn.Module:
    """Re-initialise ``model`` (built by PyTorch's defaults) with Keras' (see above)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)  # Keras' glorot_uniform: same fans for a conv
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d) and name == "basic_cnn":
            module.momentum, module.eps = 0.9, 1e-5  # Keras momentum=0.1 is PyTorch's 0.9
            nn.init.uniform_(module.weight, -0.05, 0.05)  # gamma_initializer='uniform'
        elif isinstance(module, nn.BatchNorm1d) and name == "basic_cnn":
            module.momentum, module.eps = 0.01, 1e-3  # Keras' defaults: momentum 0.99, epsilon 1e-3
    return model


def with_keras_init(name: str) -> None:
    """Make ``build_model(name)`` (which looks the registry up at each call) build the
    model with Keras' initialisation; the seed set before it fixes the draw, as before."""
    info = REGISTRY[name]

    def builder(num_classes: int = 10) -> nn.Module:
        return keras_init(info.builder(num_classes=num_classes), name)

    REGISTRY[name] = dataclasses.replace(info, builder=builder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mini_vgg", help="comma-separated (default mini_vgg)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated (default 0,1,2)")
    parser.add_argument("--out", type=Path, default=Path("results/reference_protocol_keras_init"))
    args = parser.parse_args()
    data = load_fashion_mnist()
    run_dirs = []
    for name in args.models.split(","):
        with_keras_init(name)
        for seed in map(int, args.seeds.split(",")):
            cfg = load_config(config_file=reference_recipe(name), overrides=[parse_override(f"seed={seed}")])
            run_dirs.append(args.out / "runs" / f"{name}-s{seed}")
            train_or_resume(cfg, data, run_dirs[-1], f"{name} seed {seed}, Keras initialisation")
    table = protocol_table(run_dirs)
    runs.write_text(args.out / "protocol.md",
                    f"# python experiments/keras_defaults.py --models {args.models} --seeds {args.seeds}\n\n"
                    f"recipes/reference/, parameters initialised as Keras does (see the script).\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
