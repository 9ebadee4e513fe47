"""fashionbench: train, evaluate and compare image classifiers on Fashion-MNIST."""

__version__ = "0.1.0"
