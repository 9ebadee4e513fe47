"""Accuracy under corruptions: a finished run (or an ensemble of runs) evaluated on its
test images corrupted by every corruption of ``corruptions`` at every severity, as
ImageNet-C (Hendrycks & Dietterich 2019) and Fashion-MNIST-C (Weiss & Tonella 2022)
measure it. The record, ``robustness.json`` in the run's folder (``rundir.ROBUSTNESS``),
holds the accuracy of each (corruption, severity), each corruption's mean over its
severities, the mean corruption accuracy (mCA: the mean over all of them), the clean
accuracy measured the same way, and the relative drop (clean - mCA) / clean.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import runs
from ..combine import combine
from ..corruptions import LEVELS, NAMES, SEVERITIES, VERSION, CorruptionCache
from ..data import FashionMNIST
from ..errors import FashionbenchError
from ..inference import LoadedModel, load_run
from ..progress import Progress
from ..rundir import FinishedRun, Kind, RunDir, State, Summary, finished

RECORD_SCHEMA = 1


@dataclass
class Predictor:
    """What is measured: one run's model, or an ensemble's members combined by its own
    rule (method, flip TTA, fitted weights: as its summary records them)."""
    members: list[LoadedModel]
    method: str = "mean"
    tta: bool = False
    weights: np.ndarray | None = None

    @property
    def test(self):
        return self.members[0].splits["test"]

    def probabilities(self, images: torch.Tensor, batch: int) -> np.ndarray:
        if len(self.members) == 1 and self.method == "mean" and not self.tta:
            return self.members[0].probabilities(images, batch=batch).numpy()
        probs = np.stack([m.probabilities(images, self.tta, batch=batch).numpy() for m in self.members])
        return combine(probs, self.method, self.weights)

    def accuracy(self, images: torch.Tensor, labels: np.ndarray, batch: int) -> float:
        """Top-1 accuracy on ``images`` (uint8 (N, 1, 28, 28)), ``batch`` images at a time."""
        right = 0
        for start in range(0, len(images), batch):
            probs = self.probabilities(images[start:start + batch], batch)
            right += int((probs.argmax(1) == labels[start:start + batch]).sum())
        return right / len(images)


def ensemble_members(folder: RunDir, summary: Summary) -> list[FinishedRun]:
    """An ensemble's member runs, as its summary names them (paths as given when it was
    made: relative ones are tried from here, then from the ensemble's parent folder)."""
    found = []
    for name in summary.extra.get("runs") or []:
        path = Path(name)
        candidates = [path] if path.is_absolute() else [path, folder.path.parent / path,
                                                         folder.path.parent / path.name]
        member = next((p for p in candidates if RunDir(p).state is State.COMPLETE), None)
        if member is None:
            raise FashionbenchError(f"{folder.path}: its member {name} is not found (from here or from "
                                    f"{folder.path.parent}); robustness predicts with the members' models")
        found.append(finished(member))
    if not found:
        raise FashionbenchError(f"{folder.path}: an ensemble that names no member runs")
    return found


def predictor(folder: RunDir, data: FashionMNIST, device: str | None) -> Predictor:
    """A trained run's model, or an ensemble's members, loaded with the run's splits."""
    if folder.kind is Kind.ENSEMBLE:
        summary = folder.summary
        members = [load_run(run, data, device) for run in ensemble_members(folder, summary)]
        weights = summary.extra.get("member_weights")
        return Predictor(members, summary.extra.get("method", "mean"), summary.extra.get("tta") == "flip",
                         None if weights is None else np.asarray(weights))
    return Predictor([load_run(folder.finished(), data, device)])


def images_digest(images: torch.Tensor) -> str:
    """A short name for a set of images: the cache's files are made per set."""
    return hashlib.md5(images.numpy().tobytes()).hexdigest()[:12]


def measure(folder: RunDir, data: FashionMNIST, types: list[str], levels: list[int], seed: int,
            batch: int, device: str | None, cache: CorruptionCache) -> dict:
    """Accuracy on the run's test images, clean and under each (corruption, severity) asked
    for, merged into the folder's record (one measured with the same seed and corruptions'
    version on the same images keeps its other entries); the record, written."""
    started = time.monotonic()
    model = predictor(folder, data, device)
    test = model.test
    index, labels = test.index, test.labels.cpu().numpy()
    source = data.test_images  # the whole test file, corrupted once for every run that uses it
    digest = images_digest(source)
    clean = model.accuracy(test.images.cpu(), labels, batch)
    accuracy: dict[str, dict[str, float]] = {}
    steps = len(types) * len(levels)
    with Progress(steps, f"robustness: {steps} corruptions and severities on {len(labels):,} test images",
                  announce="stage") as progress:
        for name in types:
            for level in levels:
                corrupted = cache.images(source, digest, name, level, seed)
                images = torch.from_numpy(corrupted[index.numpy()])
                accuracy.setdefault(name, {})[str(level)] = model.accuracy(images, labels, batch)
                progress.update(1, corruption=f"{name} {level}")
    previous = folder.read_robustness()
    same = (previous is not None and previous.get("corruptions_version") == VERSION
            and previous.get("seed") == seed and previous.get("test_images") == len(labels)
            and previous.get("images_md5") == digest)
    if same:
        for name, by_level in previous.get("accuracy", {}).items():
            if name in SEVERITIES:
                accuracy[name] = {**by_level, **accuracy.get(name, {})}
    record = make_record(folder, clean, accuracy, seed, len(labels), digest, model, time.monotonic() - started)
    folder.write_robustness(record)
    return record


def make_record(folder: RunDir, clean: float, accuracy: dict, seed: int, images: int, digest: str,
                model: Predictor, seconds: float) -> dict:
    ordered = {name: {str(s): accuracy[name][str(s)] for s in LEVELS if str(s) in accuracy[name]}
               for name in NAMES if name in accuracy}
    values = [acc for by_level in ordered.values() for acc in by_level.values()]
    mca = statistics.fmean(values)
    summary = folder.summary
    return {
        "schema": RECORD_SCHEMA,
        "corruptions_version": VERSION,
        "model": summary.model,
        "kind": summary.kind.value,
        "weights": summary.weights,
        "split": "test",
        "test_images": images,
        "images_md5": digest,
        "seed": seed,
        "clean_acc": clean,
        "mca": mca,
        "relative_drop": (clean - mca) / clean if clean else 0.0,
        "complete": all(len(ordered.get(name, {})) == len(LEVELS) for name in NAMES),
        "corruption_acc": {name: statistics.fmean(by_level.values()) for name, by_level in ordered.items()},
        "accuracy": ordered,
        "severities": {name: [list(p) if isinstance(p, tuple) else p for p in SEVERITIES[name]]
                       for name in ordered},
        "device": str(model.members[0].device),
        "seconds": round(seconds, 1),
        "command": runs.command_line(),
        "git_commit": runs.git_commit(),
    }


def complete_mca(record: dict | None) -> float | None:
    """A record's mCA where it covers every corruption at every severity of this version
    (a partial one, or one of other corruptions, is not comparable with the others)."""
    if not record or not record.get("complete") or record.get("corruptions_version") != VERSION:
        return None
    mca = record.get("mca")
    return float(mca) if isinstance(mca, (int, float)) and not isinstance(mca, bool) else None


def table(record: dict) -> str:
    """The record as lines of text: a row per corruption, its accuracy (%) per severity and
    its mean, then the clean accuracy, the mCA and the relative drop."""
    levels = sorted({int(s) for by_level in record["accuracy"].values() for s in by_level})
    width = max(len("corruption"), *map(len, record["accuracy"]))
    lines = [f"{'corruption':<{width}}" + "".join(f"{f's{s}':>8}" for s in levels) + f"{'mean':>8}"]
    for name, by_level in record["accuracy"].items():
        cells = "".join(f"{100 * by_level[str(s)]:8.2f}" if str(s) in by_level else f"{'—':>8}" for s in levels)
        lines.append(f"{name:<{width}}{cells}{100 * record['corruption_acc'][name]:8.2f}")
    scope = "" if record["complete"] else " (part of the corruptions: not comparable with a complete record)"
    lines.append(f"clean accuracy {100 * record['clean_acc']:.2f}%, mCA {100 * record['mca']:.2f}%{scope}, "
                 f"relative drop {100 * record['relative_drop']:.1f}%")
    return "\n".join(lines)
