"""Ensembles of finished runs, of any architectures.

Members' class probabilities are combined by their mean, by majority vote, or
by a weighted mean whose weights minimize the negative log-likelihood on the
validation split (the test set only ever sees the final combination; the rules
are in ``combine``). Optionally each member also sees every image mirrored and
averages the two (test-time augmentation). An ensemble is written like a run:
a summary and the same report, so ``fashionbench table`` lists it beside single
models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..calibration import log_of, temperature_scaling
from ..combine import combine, combined_summary, fit_weights, split_scores
from ..data import FashionMNIST
from ..errors import FashionbenchError
from ..inference import LoadedModel, load_run
from ..progress import Progress
from ..rundir import REPORT, FinishedRun, RunDir, Summary
from .report import headline, split_predictions, write_report
from .report_figures import TemperatureScaled


def ensemble_runs(finished: list[FinishedRun], data: FashionMNIST, method: str, tta: bool, out: Path,
                  device: str | None = None) -> Summary:
    """Combine finished runs into the ensemble folder ``out``; returns its summary."""
    run_dirs = [run.path for run in finished]
    summaries = [run.summary for run in finished]
    members = [load_run(run, data, device) for run in finished]
    first = members[0].splits
    for run_dir, member in zip(run_dirs[1:], members[1:]):
        for split in ("val", "test"):
            if not torch.equal(member.splits[split].index, first[split].index):
                raise FashionbenchError(f"{run_dir} used other {split} images than {run_dirs[0]} "
                                        "(data.val_size, data.split_seed or data.test_subset differ)")

    def member_probs(m: LoadedModel) -> dict[str, np.ndarray]:
        # Each member's own probabilities, without its temperature: the combination is
        # what is calibrated (a mean of calibrated members is underconfident).
        return {split: m.probs(split, tta, temperature=False).numpy() for split in ("val", "test")}

    # A member's predictions take as long as evaluating it (twice with flip TTA): each says so.
    labels = {split: first[split].labels.cpu().numpy() for split in ("val", "test")}
    n = len(members)
    with Progress(n + (method == "weighted"), "ensemble", announce="steps") as progress:
        per_member = [progress.step(f"member {k}/{n} ({d}): predictions on val and test"
                                    + (", and on their mirror images (flip TTA)" if tta else ""), member_probs, m)
                      for k, (d, m) in enumerate(zip(run_dirs, members), 1)]
        probs = {split: np.stack([p[split] for p in per_member]) for split in labels}
        weights = (progress.step("fitting the members' weights on val", fit_weights, probs["val"], labels["val"])
                   if method == "weighted" else None)
    combined = {split: combine(probs[split], method, weights) for split in probs}
    results = split_scores(combined, labels)
    models = [s.model for s in summaries]
    name = " + ".join(f"{m} x{models.count(m)}" for m in dict.fromkeys(models))
    summary = combined_summary(
        "ensemble", f"ensemble {method}{' +flip' if tta else ''}: {name}", "ensemble",
        {"ensemble": results, "members": {str(d): s.reported for d, s in zip(run_dirs, summaries)}},
        run_dirs, summaries, labels, data, seed="+".join(str(s.seed) for s in summaries),
        temperature_scaling=temperature_scaling({split: log_of(p) for split, p in combined.items()},
                                                {split: torch.from_numpy(y) for split, y in labels.items()}),
        extra={"method": method, "tta": "flip" if tta else None,
               "member_weights": None if weights is None else weights.tolist()})
    RunDir(out).write_summary(summary)
    pred = split_predictions(first["test"], combined["test"])
    head = headline(
        ("ensemble", f"{len(run_dirs)} runs ({name}), {method}{', flip TTA' if tta else ''}"), pred, "test",
        {"accuracy, ensemble": f"{100 * results['test']['acc']:.2f}%",
         "accuracy, members": ", ".join("-" if s.test_acc is None else f"{100 * s.test_acc:.2f}%"
                                        for s in summaries)},  # a sweep's trials have no test figure
        summary, None if weights is None else
        {"weights (fitted on validation)": ", ".join(f"{w:.3f}" for w in weights)})
    write_report(out / REPORT, pred, f"{summary.model}: {out.name}", head,
                 scaled=TemperatureScaled.of(log_of(combined["test"]), "softmax", summary.temperature))
    return summary
