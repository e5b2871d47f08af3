"""The statistics of the transfer tables: intervals over seeds, and item-level comparisons with the control.

Two levels:

- `summarise`: each method's mean score over seeds with a t interval (what Tables 1 and 2 print), and
  `gap_closed`: the fraction of the teacher - student gap a mean closes.
- `compare_items`: the verdicts. Each method is compared with ``sft`` item by item on the same seeds: the
  difference d = correct(method) - correct(sft) on every (seed, test item), averaged, with a standard
  error clustered by the recalled subject (an entity or a function appears in several test items and
  every seed, so those differences are not independent). The intervals are Bonferroni-corrected over
  the methods of one table and task (the family of comparisons a verdict is drawn from), and the
  minimum detectable difference (MDD) is the true difference that this design finds with 80% power at
  that corrected level.

Kept free of torch so that the report (notebook 06) starts in a second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

UNTRAINED = ("student", "teacher")  # rows of the tables that no transfer method produced


def t_quantile(p: float, df: int) -> float:
    """Quantile of Student's t with ``df`` degrees of freedom."""
    return float(stats.t.ppf(p, df))


def _half_width(values: pd.Series, confidence: float) -> float:
    n = len(values)
    return t_quantile((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan


def summarise(table: pd.DataFrame, confidence: float = 0.95,
              by: Sequence[str] = ("teacher", "task", "method")) -> pd.DataFrame:
    """Mean score per group (by default (teacher, task, method)) with a t-based confidence interval over
    seeds: the interval every table and figure of the study reports."""
    def interval(scores: pd.Series) -> pd.Series:
        mean, half = scores.mean(), _half_width(scores, confidence)
        return pd.Series({"mean": mean, "low": mean - half, "high": mean + half, "n_seeds": len(scores)})
    return table.groupby(list(by), sort=False)["score"].apply(interval).unstack().reset_index()


def gap_closed(summary: pd.DataFrame) -> pd.Series:
    """Per row of `summarise`: the fraction of its table's teacher - student gap on that task the mean closes
    (NaN where the teacher scores the same as the student: there is no gap to close)."""
    means = summary.set_index(["teacher", "task", "method"])["mean"]
    student = summary[["teacher", "task"]].apply(lambda r: means.get((r.teacher, r.task, "student"), math.nan), axis=1)
    teacher = summary[["teacher", "task"]].apply(lambda r: means.get((r.teacher, r.task, "teacher"), math.nan), axis=1)
    return ((summary["mean"] - student) / (teacher - student)).where(teacher != student)


def item_string(correct: Sequence[float]) -> str:
    """Per-item correctness as one string for tables: ``0110`` when every value is 0 or 1, else the values
    joined by commas (``0.2,1,0``)."""
    if all(value in (0, 1) for value in correct):
        return "".join("1" if value else "0" for value in correct)
    return ",".join(f"{value:.6g}" for value in correct)


def item_values(text: str) -> list[float]:
    """The values `item_string` wrote."""
    return [float(v) for v in text.split(",")] if "," in text or "." in text else [int(bit) for bit in text]


def item_correctness(runs: pd.DataFrame, clusters: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """One row per (run, test item) from the runs' ``correct`` strings, with each item's cluster.

    ``clusters[task][i]`` names what test item ``i`` recalls (its entity or function).
    """
    rows = []
    for run in runs.itertuples(index=False):
        labels, values = clusters[run.task], item_values(run.correct)
        if len(values) > len(labels):
            raise ValueError(f"{run.task}: {len(values)} items scored but {len(labels)} cluster labels")
        rows += [{"teacher": run.teacher, "task": run.task, "method": run.method, "seed": run.seed, "item": i,
                  "cluster": labels[i], "correct": value} for i, value in enumerate(values)]
    return pd.DataFrame(rows)


def clustered_mean(values: np.ndarray, clusters: np.ndarray) -> tuple[float, float, int]:
    """(mean, cluster-robust standard error, number of clusters) of ``values``.

    The sandwich estimator with the small-sample factor G / (G - 1): SE² = G/(G-1) Σ_g (Σ_{i∈g} (x_i - x̄))² / N².
    """
    n = len(values)
    mean = float(values.mean())
    sums = pd.Series(values - mean).groupby(clusters).sum().to_numpy()
    g = len(sums)
    se = math.sqrt(g / (g - 1) * float((sums**2).sum())) / n if g > 1 else math.nan
    return mean, se, g


def subjects_for_mdd(mdd: float, n_clusters: int, target: float) -> float:
    """How many test subjects (clusters) would bring a comparison's MDD down to ``target`` points, at the same
    seeds and items per subject: the clustered SE falls as 1/sqrt(G), so G (mdd / target)² (rounded up)."""
    return float(math.ceil(n_clusters * (mdd / target) ** 2)) if math.isfinite(mdd) else math.nan


def compare_items(items: pd.DataFrame, methods: Sequence[str], control: str = "sft", alpha: float = 0.05,
                  power: float = 0.8, target_mdd: float = 5.0) -> pd.DataFrame:
    """Every method in ``methods`` against ``control`` on the same (seed, item) pairs, per table and task.

    Differences are in points (percent of items). Columns: the mean difference, its cluster-robust SE,
    the p-value of a two-sided t test with G - 1 degrees of freedom (G clusters), the interval and the
    decision at the Bonferroni level alpha / m (m = methods compared on that table and task), the MDD at
    that level and ``power``, the test subjects that would bring the MDD to ``target_mdd`` (`subjects_for_mdd`),
    and the verdict. Methods absent from a task are skipped.
    """
    keys = ["seed", "item"]
    rows = []
    for (teacher, task), group in items.groupby(["teacher", "task"], sort=False):
        base = group.loc[group["method"] == control, [*keys, "correct"]]
        if base.empty:
            raise ValueError(f"no {control!r} runs on {task} from {teacher}: the comparison needs the control")
        present = [m for m in methods if m in set(group["method"])]
        level = alpha / max(1, len(present))
        for method in present:
            joined = group[group["method"] == method].merge(base, on=keys, suffixes=("", "_control"))
            d = 100.0 * (joined["correct"] - joined["correct_control"]).to_numpy(dtype=float)
            mean, se, g = clustered_mean(d, joined["cluster"].to_numpy())
            test = _test(mean, se, g - 1, level, power, control)
            rows.append({"teacher": teacher, "task": task, "method": method, "control": control,
                         "n_pairs": len(d), "n_clusters": g, "n_seeds": joined["seed"].nunique(), **test,
                         "clusters_for_target": subjects_for_mdd(test["mdd"], g, target_mdd)})
    return pd.DataFrame(rows)


def _test(mean: float, se: float, df: int, level: float, power: float, control: str) -> dict[str, float | str]:
    """The t test, the corrected interval, the MDD and the verdict of one comparison."""
    if df < 1:  # one cluster: its standard error cannot be estimated, so nothing can be decided
        return {"mean_difference": mean, "se": se, "p_value": math.nan, "level": level, "low": math.nan,
                "high": math.nan, "significant": False, "mdd": math.nan,
                "verdict": "not estimable: every test item is in one cluster"}
    critical = t_quantile(1 - level / 2, df)
    if se == 0:  # every pair agrees: no evidence of any difference, and none can be bounded from the data
        p, low, high = 1.0, mean, mean
    else:
        p = float(2 * stats.t.sf(abs(mean / se), df))
        low, high = mean - critical * se, mean + critical * se
    mdd = (critical + t_quantile(power, df)) * se
    if p < level:
        verdict = f"{'better' if mean > 0 else 'worse'} than {control}"
    else:
        verdict = f"no difference larger than {max(abs(low), abs(high)):.1f} points"
    return {"mean_difference": mean, "se": se, "p_value": p, "level": level, "low": low, "high": high,
            "significant": p < level, "mdd": mdd, "verdict": verdict}
