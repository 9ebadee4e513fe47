"""Label-noise audit: the images a trained model most confidently disagrees with
the dataset about. Fashion-MNIST has mislabeled and duplicated images (see
Northcutt et al., "Pervasive Label Errors in Test Sets", 2021); a confident
disagreement, on images the model even trained on, is where to look first."""

from __future__ import annotations

from pathlib import Path

from .. import runs
from ..data import FashionMNIST
from ..inference import load_run
from ..rundir import FinishedRun
from .report import confident_errors, errors_csv, predictions
from .report_figures import image_grid


def audit_run(run: FinishedRun, data: FashionMNIST, split: str = "train", top: int = 50,
              device: str | None = None) -> tuple[Path, Path, int]:
    """Write RUN_DIR/audit-SPLIT/{suspects.png, suspects.csv}; returns their paths and
    the number of disagreements."""
    pred = predictions(load_run(run, data, device), split)
    order = confident_errors(pred)
    out = run.path / f"audit-{split}"
    png, table = out / "suspects.png", out / "suspects.csv"
    runs.write_bytes(png, image_grid(
        pred, order[:top], f"{split}: the {min(top, len(order))} most confident disagreements "
                           f"with the dataset's labels (of {len(order)})", given_name="label"))
    runs.write_text(table, errors_csv(pred, order, given_name="label"))
    return png, table, len(order)
