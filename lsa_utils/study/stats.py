"""The statistics of the transfer tables: t intervals over seeds and paired differences against a control.

Kept free of torch so that the report (notebook 06) starts in a second.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

UNTRAINED = ("student", "teacher")  # rows of the tables that no transfer method produced


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t: the density integrated on a grid, then the CDF inverted by interpolation (no scipy)."""
    grid = np.linspace(0, 80, 400_001)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid**2 / df))
    cdf = 0.5 + np.concatenate([[0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(grid))])
    return float(np.interp(p, cdf, grid))


def _half_width(values: pd.Series, confidence: float) -> float:
    n = len(values)
    return t_quantile((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan


def summarise(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Mean score per (teacher, task, method) with a t-based confidence interval over seeds."""
    def interval(scores: pd.Series) -> pd.Series:
        mean, half = scores.mean(), _half_width(scores, confidence)
        return pd.Series({"mean": mean, "low": mean - half, "high": mean + half, "n_seeds": len(scores)})
    return table.groupby(["teacher", "task", "method"], sort=False)["score"].apply(interval).unstack().reset_index()


def paired_differences(table: pd.DataFrame, control: str = "sft", confidence: float = 0.95) -> pd.DataFrame:
    """Each method minus the control on the same seeds: mean difference and its t interval."""
    rows = []
    for (teacher, task), group in table.groupby(["teacher", "task"], sort=False):
        base = group[group["method"] == control].set_index("seed")["score"]
        for method, runs in group[~group["method"].isin([control, *UNTRAINED])].groupby("method", sort=False):
            diff = (runs.set_index("seed")["score"] - base).dropna()
            half = _half_width(diff, confidence)
            rows.append({"teacher": teacher, "task": task, "method": method, "control": control, "n_seeds": len(diff),
                         "mean_difference": diff.mean(), "low": diff.mean() - half, "high": diff.mean() + half})
    return pd.DataFrame(rows)
