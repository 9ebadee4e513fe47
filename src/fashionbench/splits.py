"""The images a run sees: its seeded splits of the original files, held on the
training device, the order an epoch takes them in, and how their pixels become the
model's input.

The split depends only on the configuration (``data.*``), never on the run's seed,
so every run of one configuration, and every command that rebuilds a finished
run's splits (evaluate, report, ensembles), sees exactly the same images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import Config
from .data import CLASSES, FashionMNIST, stratified_split, stratified_subset

# Training-set statistics (published with the dataset), in units of 1/255.
MEAN, STD = 0.2860, 0.3530


@dataclass
class Split:
    """One split as tensors on the training device: uint8 images (N, 1, 28, 28), int64
    labels; and, on the CPU, each image's position in its original IDX file."""
    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor


def split_indices(train_labels: torch.Tensor, test_labels: torch.Tensor,
                  cfg: Config) -> dict[str, torch.Tensor]:
    """Indices of the train, val and test images the config selects from the original
    files: the seeded stratified split, subsets, and a specialist's pair of classes."""
    train_idx, val_idx = stratified_split(train_labels, cfg.data.val_size, cfg.data.split_seed,
                                          cfg.data.train_subset)
    test_idx = (torch.arange(len(test_labels)) if cfg.data.test_subset is None else
                stratified_subset(test_labels, cfg.data.test_subset, cfg.data.split_seed,
                                  "data.test_subset"))
    indices = {"train": (train_labels, train_idx), "val": (train_labels, val_idx),
               "test": (test_labels, test_idx)}
    if cfg.data.negative_class is not None:  # a pair's specialist sees only the pair's images
        pair = torch.tensor([cfg.data.positive_class, cfg.data.negative_class])
        return {name: index[torch.isin(labels[index], pair)] for name, (labels, index) in indices.items()}
    return {name: index for name, (_, index) in indices.items()}


def planned_split_sizes(cfg: Config) -> dict[str, int]:
    """The split sizes a run of ``cfg`` will have, without reading the dataset: the
    stratified split's per-class counts depend only on the class counts, and
    Fashion-MNIST has exactly 6,000 training and 1,000 test images of every class."""
    classes = torch.arange(len(CLASSES))
    indices = split_indices(classes.repeat_interleave(6000), classes.repeat_interleave(1000), cfg)
    return {name: len(index) for name, index in indices.items()}


def prepare_splits(data: FashionMNIST, cfg: Config, device: torch.device) -> dict[str, Split]:
    """The run's three splits on ``device``; a binary run's labels are 1 for its
    positive class and 0 for the rest."""
    positive = cfg.data.positive_class

    def split(images, labels, index):
        labels = labels[index]
        if positive is not None:
            labels = (labels == positive).long()
        return Split(images[index].to(device), labels.to(device), index)

    indices = split_indices(data.train_labels, data.test_labels, cfg)
    return {"train": split(data.train_images, data.train_labels, indices["train"]),
            "val": split(data.train_images, data.train_labels, indices["val"]),
            "test": split(data.test_images, data.test_labels, indices["test"])}


def epoch_order(labels: torch.Tensor, size: int, generator: torch.Generator,
                balanced: bool) -> torch.Tensor:
    """Indices of one epoch: a permutation, or for a binary task half positives and half
    negatives, shuffled; a side drawn without replacement where it has enough images,
    else with (one-vs-all positives are the rarer tenth)."""
    device = labels.device
    if not balanced:
        return torch.randperm(len(labels), device=device, generator=generator)

    def draw(pool: torch.Tensor, k: int) -> torch.Tensor:
        if len(pool) >= k:
            return pool[torch.randperm(len(pool), device=device, generator=generator)[:k]]
        return pool[torch.randint(len(pool), (k,), device=device, generator=generator)]

    picks = torch.cat([draw(torch.nonzero(labels == 1).flatten(), size // 2),
                       draw(torch.nonzero(labels == 0).flatten(), size - size // 2)])
    return picks[torch.randperm(len(picks), device=device, generator=generator)]


def ten_class_labels(data: FashionMNIST, split: str, index: torch.Tensor) -> np.ndarray:
    """The original ten-class labels of a split's images (a binary run's own are 0/1)."""
    source = data.test_labels if split == "test" else data.train_labels
    return source.numpy()[index.numpy()]


def binary_task(cfg: Config) -> str:
    d = cfg.data
    other = "the rest" if d.negative_class is None else CLASSES[d.negative_class]
    return f"{CLASSES[d.positive_class]} against {other}"


def class_names(cfg: Config) -> list[str]:
    """The name of each model output; a binary run's output 1 is its positive class."""
    d = cfg.data
    if d.positive_class is None:
        return list(CLASSES)
    positive = CLASSES[d.positive_class]
    return [f"not {positive}" if d.negative_class is None else CLASSES[d.negative_class], positive]


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to floats in [0, 1] (a new tensor, divided in place for speed)."""
    return images_u8.float().div_(255)


def normalize(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Pixels in [0, 1] standardized with the training set's statistics, in the
    memory format the model was placed in."""
    x = (images - MEAN) / STD
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
