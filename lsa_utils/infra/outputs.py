"""Writing what the notebooks show: tidy tables and figures, always atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lsa_utils.infra.cache import atomic_write


def save_table(table: pd.DataFrame, path: Path) -> Path:
    """Write a tidy CSV (one row per measurement) without a half-written file on failure."""
    with atomic_write(Path(path)) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4g")
    return Path(path)


def save_figure(figure: plt.Figure, path: Path, dpi: int = 120) -> Path:
    """Write a PNG atomically; the figure stays open so the notebook still displays it."""
    with atomic_write(Path(path)) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return Path(path)
