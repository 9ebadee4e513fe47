"""Where a training step's time goes: augmentation (with the uint8-to-float conversion
and normalization), forward, loss, backward and the optimizer step, timed apart over
real training batches of a recipe through fashionbench's Trainer; then one validation
pass as the recipe evaluates (with flip TTA where ``eval.tta``), and what a whole run's
validation passes cost beside its training.

On a CPU every operation has finished when it returns, so the clock between the phases
splits a step exactly; on a GPU each phase is synchronized first (which slows the step:
the split, not the total, is the figure there).

    python benchmarks/where_time_goes.py [--recipe speedrun_net] [--steps 60] [--data-dir DIR]
    python benchmarks/where_time_goes.py --tiny   # checks the script, figures mean nothing
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fashionbench.augment import augment
from fashionbench.config import load_config, parse_override
from fashionbench.data import load_fashion_mnist
from fashionbench.hardware import autocast
from fashionbench.inference import loss_fn
from fashionbench.splits import normalize, to_float
from fashionbench.training import Trainer

PHASES = ("augment", "forward", "loss", "backward", "optimizer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="speedrun_net")
    parser.add_argument("--steps", type=int, default=60, help="timed steps (after 5 untimed)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir")
    parser.add_argument("--tiny", action="store_true",
                        help="a quick check of the script (3 steps, a 500-image validation pass): "
                             "its figures mean nothing")
    args = parser.parse_args()
    if args.tiny:
        args.steps = 3
    data = load_fashion_mnist(args.data_dir)
    overrides = [f"device={args.device}"] + (["data.val_size=500"] if args.tiny else [])
    cfg = load_config(args.recipe, None, [parse_override(o) for o in overrides])
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(cfg, data, Path(tmp) / "run")
    sync = torch.cuda.synchronize if t.device.type == "cuda" else (lambda: None)
    train, bs = t.splits["train"], cfg.batch_size
    order = torch.randperm(len(train.labels), generator=t.generator, device=t.device)
    spent = dict.fromkeys(PHASES, 0.0)
    marks: list[float] = []

    def mark() -> None:
        sync()
        marks.append(time.perf_counter())

    t.model.train()
    for i in range(5 + args.steps):
        idx = order[i * bs:(i + 1) * bs]
        images, labels = train.images[idx], train.labels[idx]
        marks.clear()
        mark()
        x = normalize(augment(to_float(images), cfg.augment, t.generator), cfg.channels_last)
        mark()
        with autocast(t.device, t.precision):
            logits = t.forward(x)
        mark()
        loss = loss_fn(logits, labels, cfg.head, cfg.label_smoothing)
        mark()
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mark()
        t.optimizer.step()
        t.schedule.step(i + 1)
        mark()
        if i >= 5:
            for phase, a, b in zip(PHASES, marks, marks[1:]):
                spent[phase] += b - a
    step = sum(spent.values()) / args.steps
    start = time.perf_counter()
    t.evaluate(t.model, "val")
    sync()
    val = time.perf_counter() - start
    epoch = t.steps_per_epoch * step
    print(f"{args.recipe}: batch {bs}, {t.precision}, {torch.get_num_threads()} threads, "
          f"{args.steps} steps timed: {1000 * step:.1f} ms a step, {bs / step:.0f} images/s\n")
    print("| phase | ms a step | share of a step |\n|---|---:|---:|")
    for phase in PHASES:
        print(f"| {phase} | {1000 * spent[phase] / args.steps:.2f} | {100 * spent[phase] / args.steps / step:.1f}% |")
    tta = " (with flip TTA)" if cfg.eval.tta else ""
    print(f"\none validation pass{tta}, {len(t.splits['val'].labels):,} images: {val:.2f} s; "
          f"an epoch's training ({t.steps_per_epoch} steps): {epoch:.1f} s; "
          f"validating after every epoch adds {100 * val / epoch:.0f}% (untimed in a speedrun)")


if __name__ == "__main__":
    main()
