"""The statistics of the transfer tables: intervals over seeds, and item-level verdicts checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lsa_utils.study.stats import (
    clustered_mean, compare_items, gap_closed, item_correctness, subjects_for_mdd, summarise, t_quantile,
)


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


def test_gap_closed_is_the_fraction_of_the_teacher_student_gap():
    summary = summarise(_table([("t", "facts", m, 0, v) for m, v in
                                [("student", 40.0), ("teacher", 60.0), ("sft", 45.0), ("oracle", 70.0)]]))
    assert list(gap_closed(summary)) == pytest.approx([0.0, 1.0, 0.25, 1.5])


def test_the_clustered_standard_error_by_hand():
    # two clusters that each sum to +-1 around the mean 0.5: SE² = G/(G-1) * (1² + 1²) / N² = 2 * 2 / 16
    mean, se, g = clustered_mean(np.array([1.0, 1.0, 0.0, 0.0]), np.array(["a", "a", "b", "b"]))
    assert (mean, se, g) == (0.5, pytest.approx(0.5), 2)
    # the same values, each cluster balanced: the differences cancel inside clusters
    assert clustered_mean(np.array([1.0, 0.0, 0.0, 1.0]), np.array(["a", "a", "b", "b"]))[1] == 0.0
    # one item per cluster: the ordinary standard error of the mean
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0])
    assert clustered_mean(x, np.arange(5))[1] == pytest.approx(x.std(ddof=1) / math.sqrt(5))


def _items(method_bits: dict[str, str], clusters: list[str], seeds=(0, 1)) -> pd.DataFrame:
    return pd.DataFrame([{"teacher": "t", "task": "facts", "method": m, "seed": s, "item": i, "cluster": clusters[i],
                          "correct": int(bits[i])} for m, bits in method_bits.items() for s in seeds
                         for i in range(len(clusters))])


def test_item_comparison_by_hand():
    clusters = [f"e{i}" for i in range(11)]  # 11 clusters: 10 degrees of freedom
    items = _items({"sft": "00000000000", "kd": "11111111100", "laten": "10000000000"}, clusters)
    result = compare_items(items, ["kd", "laten"]).set_index("method")
    kd = result.loc["kd"]
    d = np.array([100.0] * 9 + [0.0] * 2)  # per item, the same on both seeds
    mean, se = d.mean(), math.sqrt(11 / 10 * ((2 * (d - d.mean())) ** 2).sum()) / 22
    assert kd["mean_difference"] == pytest.approx(mean) and kd["se"] == pytest.approx(se)
    assert kd["n_pairs"] == 22 and kd["n_clusters"] == 11 and kd["n_seeds"] == 2
    assert kd["level"] == 0.025  # Bonferroni over the two methods compared
    t_level, t_power = 2.6338, 0.8791  # t(1 - 0.0125, 10) and t(0.8, 10) from the tables
    assert kd["high"] - kd["mean_difference"] == pytest.approx(t_level * se, rel=1e-4)
    assert kd["mdd"] == pytest.approx((t_level + t_power) * se, rel=1e-4)
    assert kd["clusters_for_target"] == math.ceil(11 * (kd["mdd"] / 5.0) ** 2)
    assert kd["verdict"] == "better than sft"
    laten = result.loc["laten"]  # one item in eleven: not significant, bounded by the interval
    assert not laten["significant"]
    assert laten["verdict"] == f"no difference larger than {laten['high']:.1f} points"


def test_subjects_for_an_mdd_scale_with_its_square():
    assert subjects_for_mdd(10.0, 45, 5.0) == 180  # half the MDD: four times the subjects
    assert subjects_for_mdd(5.0, 45, 5.0) == 45
    assert subjects_for_mdd(4.01, 100, 4.0) == 101  # rounded up
    assert math.isnan(subjects_for_mdd(math.nan, 1, 5.0))  # one cluster: nothing to scale


def test_identical_answers_give_no_evidence_and_a_zero_interval():
    items = _items({"sft": "0110", "kd": "0110"}, ["a", "b", "c", "d"])
    row = compare_items(items, ["kd"]).iloc[0]
    assert (row["mean_difference"], row["p_value"], row["low"], row["high"]) == (0.0, 1.0, 0.0, 0.0)
    assert row["verdict"] == "no difference larger than 0.0 points"


def test_one_cluster_is_not_estimable_and_decides_nothing():
    items = _items({"sft": "0000", "kd": "1111"}, ["a", "a", "a", "a"])  # every item recalls one subject
    row = compare_items(items, ["kd"]).iloc[0]
    assert row["mean_difference"] == 100.0 and not row["significant"] and math.isnan(row["mdd"])
    assert row["verdict"] == "not estimable: every test item is in one cluster"


def test_gap_closed_is_undefined_where_teacher_and_student_tie():
    summary = summarise(_table([("t", "facts", m, 0, v) for m, v in
                                [("student", 40.0), ("teacher", 40.0), ("sft", 45.0)]]))
    assert gap_closed(summary).isna().all()


def test_item_correctness_unpacks_the_runs_and_refuses_missing_clusters():
    runs = pd.DataFrame([{"teacher": "t", "task": "facts", "method": "sft", "seed": 0, "correct": "101"}])
    items = item_correctness(runs, {"facts": ["a", "b", "a"]})
    assert list(items["correct"]) == [1, 0, 1] and list(items["cluster"]) == ["a", "b", "a"]
    with pytest.raises(ValueError, match="3 items scored but 2 cluster labels"):
        item_correctness(runs, {"facts": ["a", "b"]})


def test_item_strings_round_trip_bits_and_sampled_fractions():
    from lsa_utils.study.stats import item_string, item_values

    assert item_string([True, False, True]) == "101" and item_values("101") == [1, 0, 1]
    assert item_string([0.25, 1.0, 0.0]) == "0.25,1,0" and item_values("0.25,1,0") == [0.25, 1.0, 0.0]
    assert item_values(item_string([0.5])) == [0.5]
