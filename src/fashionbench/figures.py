"""Matplotlib for files: the non-interactive backend, and figures as PNG bytes.

Every module that draws imports ``plt`` from here, so that the backend is chosen
once, before pyplot is first imported, and no command ever opens a window.
"""

from __future__ import annotations

import io
import sys

import matplotlib

# Files only, never a window: Agg. Except in a Jupyter kernel, whose inline backend puts
# the figures a notebook draws (curves_plot, scores_plot) under their cells; switching
# to Agg there would hide them. png() closes its figures, so none shows twice.
if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "png"]


def png(fig) -> bytes:
    """``fig`` as PNG bytes (110 dpi, tight); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
