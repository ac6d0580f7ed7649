"""Matplotlib figures as PNG data, the figure closed afterwards (pyplot keeps them otherwise)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: render to memory
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def png(fig: Figure) -> bytes:
    """``fig`` rendered as PNG; ``fig`` is closed whatever happens."""
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
