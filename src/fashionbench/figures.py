"""Matplotlib for files: the non-interactive backend, and figures as PNG bytes.

Every module that draws imports ``plt`` from here, so that the backend is chosen
once, before pyplot is first imported, and no command ever opens a window.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "png"]


def png(fig) -> bytes:
    """``fig`` as PNG bytes (110 dpi, tight); the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
