"""Using a finished run from the API: evaluate it, report on it, predict with it, audit
its dataset's labels, export its model, calibrate one finished before temperature scaling,
measure its accuracy under corruptions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..corruptions import CorruptionCache, check_levels, check_names
from ..data import FashionMNIST
from ..errors import FashionbenchError, UsageError
from ..inference import EVAL_BATCH, LoadedModel, load_model
from ..inference import load_run as load_with_splits
from ..rundir import ROBUSTNESS, Kind, RunDir
from ..splits import class_names
from ..summary import Summary
from ..tasks.audit import audit_run
from ..tasks.calibrate import calibrate_run
from ..tasks.export import export_run
from ..tasks.predict import expand_folders, image_pixels
from ..tasks.report import NOT_REPORTED, REPORTED, report_run
from ..tasks.report import predictions as split_predictions
from ..tasks.report_figures import Predictions
from ..tasks.robustness import measure
from ..tracking import Tracking, attach
from ._run import PathLike, Run, as_finished, dataset

# Images read, converted and predicted at a time by the predict command: memory stays flat.
PREDICT_BATCH = 256
# robustness's batch_size: images predicted at a time (the default: as evaluation does).
MAX_BATCH = 100_000


def evaluate(run: Run | PathLike, split: str = "val", *, data: FashionMNIST | None = None,
             data_dir: PathLike | None = None, device: str | None = None) -> dict:
    """Accuracy and loss of a run's final model on ``split`` ("val" or "test"; the test
    set is for final reporting only)."""
    if split not in ("val", "test"):
        raise UsageError(f"split must be val or test, not {split!r}")
    finished = as_finished(run)  # not a finished run: said before any data loads
    loaded = load_with_splits(finished, dataset(data, data_dir), device)
    return {"run": str(finished.path), "weights": loaded.weights, "split": split, **loaded.evaluate(split)}


def report(run: Run | PathLike, split: str = "test", *, errors: int = 25, data: FashionMNIST | None = None,
           data_dir: PathLike | None = None, device: str | None = None, track: str | Sequence[str] | None = None,
           tensorboard_dir: PathLike | None = None, tracking_uri: str | None = None,
           experiment: str | None = None) -> Path:
    """Write the run's report (confusion matrix, P/R/F1, confident errors, curves) into
    RUN/report (RUN/report-val for ``split="val"``); returns report.html's path. ``track``
    and its settings, as for ``train``: the report's folder is logged to the run's MLflow run."""
    if split not in ("val", "test"):
        raise UsageError(f"split must be val or test, not {split!r}")
    finished = as_finished(run, REPORTED, NOT_REPORTED)
    tracking = Tracking.of(track, tensorboard_dir, tracking_uri, experiment)  # a server down: said now
    path = report_run(finished, dataset(data, data_dir), split, device, errors)
    attach(tracking, finished.path, [path.parent])
    return path


def predictions(run: Run | PathLike, split: str = "val", *, data: FashionMNIST | None = None,
                data_dir: PathLike | None = None, device: str | None = None, temperature: bool = True) -> Predictions:
    """The final model's class probabilities on one of the run's splits, with the labels
    and images: what a report is made of (``fashionbench.tasks.report``'s figures take it).
    The probabilities are of the logits divided by the run's temperature, or with
    ``temperature=False`` as the network gives them."""
    if split not in ("train", "val", "test"):
        raise UsageError(f"split must be train, val or test, not {split!r}")
    return split_predictions(load_with_splits(as_finished(run), dataset(data, data_dir), device), split,
                             temperature)


def calibrate(run: Run | PathLike, *, data: FashionMNIST | None = None, data_dir: PathLike | None = None,
              device: str | None = None) -> Summary:
    """Fit a run's temperature on its validation split and write it, with ECE, NLL and
    Brier before and after it, into its summary (``temperature_scaling``): for a run
    finished before fashionbench did that itself. A run that has it already is returned
    as it is. Returns the summary."""
    return calibrate_run(as_finished(run), dataset(data, data_dir), device)[0]


@dataclass
class Prediction:
    """One image's most likely classes, most likely first."""
    source: str                       # the file, or "image N" for an array or PIL image
    top_k: list[tuple[str, float]]    # (class name, probability)
    probabilities: np.ndarray         # every class's
    indices: list[int]                # the top classes' indices (a binary run's: 0 the rest, 1 its class)

    @property
    def label(self) -> str:
        return self.top_k[0][0]


def image_files(paths: Iterable[PathLike], on_error: Callable[[str], None] | None = None) -> list[Path]:
    """The image files ``paths`` name: a folder is every file in it with an image
    extension (sorted, hidden files skipped, subfolders not searched); any other path as
    given. A folder with no image is an error: raised, or passed to ``on_error``."""
    files, errors = expand_folders([os.fspath(p) for p in paths])
    for message in errors:
        if on_error is None:
            raise FashionbenchError(message)
        on_error(message)
    return files


def check_top_k(loaded: LoadedModel, top_k: int, option: str = "top_k") -> None:
    """``top_k`` is a number of the model's classes (a binary run has two)."""
    count = len(class_names(loaded.cfg))
    if not 1 <= top_k <= count:
        raise UsageError(f"{option} must be between 1 and {count}, not {top_k}")


def predict(run: Run | PathLike | LoadedModel, images: Iterable, *, top_k: int = 3, tta: bool = False,
            invert: str = "auto", device: str | None = None, temperature: bool = True,
            on_error: Callable[[str], None] | None = None) -> list[Prediction]:
    """Classify images with a run's model: file paths (any format Pillow reads), PIL
    images, or uint8 arrays of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (28x28 as
    in Fashion-MNIST: light garment on black, taken as it is; any other converted as a
    file is). ``images`` is a list (or any iterable: an (N, H, W) array is N images); a
    single path or PIL image is one image. Each is converted the way Fashion-MNIST was
    made (``fashionbench predict --help``); a blank one is predicted with a warning on
    stderr. ``tta`` averages with the mirrored image. The probabilities are of the logits
    divided by the run's temperature (``temperature=False``: without it). A file that
    cannot be read raises, or with ``on_error`` is passed to it (one line) and left out."""
    loaded = run if isinstance(run, LoadedModel) else load_model(as_finished(run), device)
    check_top_k(loaded, top_k)
    names = class_names(loaded.cfg)
    if isinstance(images, (str, os.PathLike, Image.Image)):  # one image, not its characters
        images = [images]
    sources, pixels = [], []
    for i, image in enumerate(images):
        source = str(image) if isinstance(image, (str, os.PathLike)) else f"image {i}"
        try:
            pixels.append(image_pixels(image, invert, source))
        except FashionbenchError as e:
            if on_error is None or isinstance(e, UsageError):
                raise
            on_error(str(e))
            continue
        sources.append(source)
    if not pixels:
        return []
    probs = loaded.probabilities(torch.from_numpy(np.stack(pixels)[:, None]), tta, temperature).numpy()
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    return [Prediction(source, [(names[j], float(p[j])) for j in top], p, [int(j) for j in top])
            for source, p, top in zip(sources, probs, order)]


def audit(run: Run | PathLike, split: str = "train", *, top: int = 50, data: FashionMNIST | None = None,
          data_dir: PathLike | None = None, device: str | None = None) -> tuple[Path, Path, int]:
    """Likely label errors: the images of ``split`` where the model most confidently
    disagrees with the dataset. Returns (grid PNG, CSV of all, how many disagree)."""
    return audit_run(as_finished(run), dataset(data, data_dir), split, top, device)


@dataclass
class Exported:
    """An exported model: its file, and what the file says about itself."""
    path: Path
    metadata: dict[str, str]  # class_names (JSON), model, weights, git_commit, test_acc, ...

    def __fspath__(self) -> str:  # goes wherever a path does
        return str(self.path)


def export(run: Run | PathLike, format: str = "onnx", out: PathLike | None = None, *,
           track: str | Sequence[str] | None = None, tensorboard_dir: PathLike | None = None,
           tracking_uri: str | None = None, experiment: str | None = None) -> Exported:
    """Write a run's model, normalization included, as ONNX or TorchScript. ``track`` and
    its settings, as for ``train``: the file is logged to the run's MLflow run."""
    if format not in ("onnx", "torchscript"):
        raise UsageError(f"format must be onnx or torchscript, not {format!r}")
    finished = as_finished(run)
    tracking = Tracking.of(track, tensorboard_dir, tracking_uri, experiment)
    path = Path(out) if out else finished.folder.export_file(format)
    exported = Exported(path, export_run(finished, format, path))
    attach(tracking, finished.path, [path])
    return exported


def robustness(run: Run | PathLike, *, types: Iterable[str] | str | None = None,
               severities: Iterable[int] | None = None, seed: int = 0, batch_size: int = EVAL_BATCH,
               data: FashionMNIST | None = None, data_dir: PathLike | None = None, device: str | None = None,
               cache_dir: PathLike | None = None, track: str | Sequence[str] | None = None,
               tensorboard_dir: PathLike | None = None, tracking_uri: str | None = None,
               experiment: str | None = None) -> dict:
    """Accuracy of a finished run (or an ensemble: its members combined by its own rule) on
    its test images under each corruption (``types``, default all of
    ``fashionbench.api.CORRUPTIONS``) at each severity (1 to 5, default all), the
    corrupted images drawn from ``seed`` and cached in ``cache_dir`` (default
    ``$FASHIONBENCH_CORRUPTIONS_DIR``, else the per-user cache's
    fashionbench/corruptions). Writes RUN/robustness.json and returns it: ``accuracy``
    (corruption -> severity -> accuracy), ``corruption_acc`` (each corruption's mean),
    ``mca`` (the mean over all), ``clean_acc``, ``relative_drop``, ``complete``. ``track``
    and its settings, as for ``train``: robustness.json and, where every corruption and
    severity was measured, ``robustness/mca`` and ``robustness/relative_drop`` are logged
    to the run's own tracked run."""
    names = check_names([types] if isinstance(types, str) else None if types is None else list(types))
    levels = check_levels(None if severities is None else list(severities))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be a whole number, 0 or more, not {seed!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise UsageError(f"batch_size must be a whole number from 1 to {MAX_BATCH:,}, not {batch_size!r}")
    folder = run.folder if isinstance(run, Run) else RunDir(run)
    if folder.kind is Kind.ENSEMBLE:
        folder.summary  # noqa: B018 -- not finished, or damaged: said before any data loads
    else:
        folder = as_finished(run).folder
    tracking = Tracking.of(track, tensorboard_dir, tracking_uri, experiment)
    record = measure(folder, dataset(data, data_dir), names, levels, seed, batch_size, device,
                     CorruptionCache(cache_dir))
    figures = {"robustness/mca": record["mca"], "robustness/relative_drop": record["relative_drop"]}
    attach(tracking, folder.path, [folder.path / ROBUSTNESS], figures if record["complete"] else None)
    return record
