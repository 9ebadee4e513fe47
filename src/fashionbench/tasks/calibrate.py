"""``fashionbench calibrate``: temperature scaling for a run finished without it.

A run trained by this fashionbench fits its temperature as it finishes, on the logits
of its final evaluation. One finished before (its summary has no
``temperature_scaling``; its model serves at T = 1) gets it here: its model predicts
its own validation split (and its test split, where the run evaluated one), T is fitted
on validation (calibration.py), and the summary is written again, atomically, with the
scores before and after. A run that has it already is left as it is, so calling it
again changes nothing.
"""

from __future__ import annotations

import dataclasses

from ..calibration import temperature_scaling
from ..data import FashionMNIST
from ..inference import load_run
from ..progress import stage
from ..rundir import FinishedRun, Summary


def calibrate_run(run: FinishedRun, data: FashionMNIST, device: str | None = None) -> tuple[Summary, bool]:
    """``run``'s summary with its temperature scaling, and whether it was fitted now
    (False: the summary had it already, and nothing was computed or written)."""
    if run.summary.temperature_scaling is not None:
        return run.summary, False
    loaded = load_run(run, data, device)
    splits = ("val", "test") if run.summary.test_acc is not None else ("val",)  # a sweep's trial: val only
    logits = stage(f"{run.cfg.model}: logits on {' and '.join(splits)} ({run.path})",
                   lambda: {split: loaded.logits(loaded.splits[split].images) for split in splits})
    labels = {split: loaded.splits[split].labels for split in splits}
    summary = dataclasses.replace(run.summary, temperature_scaling=temperature_scaling(logits, labels, run.cfg.head))
    run.folder.write_summary(summary)
    return summary, True
