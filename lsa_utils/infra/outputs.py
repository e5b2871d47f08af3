"""Writing what the notebooks show: tidy tables, figures and text, always atomically, and staged.

Under the runner a notebook's outputs are staged: `staged` sends a path under the results folder to the
run's staging folder (named in ``LSA_STAGING``), and the runner moves what was staged into the results
only when the whole notebook succeeded, so a failure late in a notebook leaves the previous tables and
figures as they were. Outside the runner (a notebook opened in JupyterLab) paths are used as given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lsa_utils.infra.cache import atomic_write
from lsa_utils.infra.paths import STAGING


def staged(path: Path) -> Path:
    """Where a notebook writes ``path`` now: its place in the staging folder when it lies under the results
    folder of a runner's run, else ``path`` itself."""
    folders = json.loads(os.environ.get(STAGING) or "null")
    absolute = Path(path).resolve()
    if folders is None or not absolute.is_relative_to(folders["results"]):
        return Path(path)
    return Path(folders["staging"]) / absolute.relative_to(folders["results"])


def save_table(table: pd.DataFrame, path: Path) -> Path:
    """Write a tidy CSV (one row per measurement) without a half-written file on failure."""
    with atomic_write(staged(path)) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4g")
    return Path(path)


def save_figure(figure: plt.Figure, path: Path, dpi: int = 120) -> Path:
    """Write a PNG atomically; the figure stays open so the notebook still displays it."""
    with atomic_write(staged(path)) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return Path(path)


def save_text(text: str, path: Path) -> Path:
    """Write a text file (a report) atomically."""
    with atomic_write(staged(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
