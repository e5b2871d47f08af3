"""The statistics of the transfer tables: t quantiles, intervals over seeds, paired differences."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lsa_utils.study.stats import paired_differences, summarise, t_quantile


@pytest.mark.parametrize(("df", "expected"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (29, 2.0452)])
def test_t_quantiles_match_the_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=2e-4)


def _table(rows):
    return pd.DataFrame(rows, columns=["teacher", "task", "method", "seed", "score"])


def test_summary_interval_over_seeds():
    table = _table([("t", "facts", "sft", s, v) for s, v in enumerate([40.0, 44.0, 42.0])])
    row = summarise(table).iloc[0]
    half = 4.3027 * 2.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert row["mean"] == pytest.approx(42.0)
    assert row["high"] - row["mean"] == pytest.approx(half, rel=1e-4)
    assert row["n_seeds"] == 3


def test_paired_differences_cancel_what_the_seeds_share():
    rows = [("t", "arith", "sft", s, v) for s, v in enumerate([10.0, 30.0, 50.0])]
    rows += [("t", "arith", "kd", s, v + 5.0) for s, v in enumerate([10.0, 30.0, 50.0])]
    rows += [("t", "arith", "student", 0, 3.0)]
    diff = paired_differences(_table(rows))
    assert list(diff["method"]) == ["kd"]
    assert diff.iloc[0]["mean_difference"] == pytest.approx(5.0)
    assert diff.iloc[0]["high"] - diff.iloc[0]["low"] == pytest.approx(0.0)  # identical shifts: no spread
