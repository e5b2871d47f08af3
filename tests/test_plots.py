"""The figure conventions (lsa_utils.study.plots): one colour per method, the tables' intervals, points
for categorical levels, ordered categories in order, reference lines, colour bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import torch
from matplotlib.colors import to_rgb

from lsa_utils.study import plots
from lsa_utils.study.stats import summarise


def _runs(methods=("student", "teacher", "sft", "semalign_v1"), tasks=("facts", "arith"), seeds=(0, 1, 2)):
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"teacher": "teacher", "task": t, "method": m, "seed": s, "score": rng.uniform(20, 80)}
                         for m in methods for t in tasks for s in seeds])


def test_a_method_has_one_colour_in_every_figure():
    runs = _runs()
    bars = plots.plot_transfer(summarise(runs), "t").axes[0].patches
    assert to_rgb(bars[-1].get_facecolor()) == to_rgb(plots.COLORS["semalign_v1"])
    verdicts = pd.DataFrame([{"teacher": "teacher", "task": "facts", "method": "semalign_v1", "mean_difference": 1.0,
                              "low": -1.0, "high": 3.0}])
    ax = plots.plot_paired_differences(verdicts, "t").axes[0]
    assert to_rgb(ax.lines[0].get_color()) == to_rgb(plots.COLORS["semalign_v1"])
    assert len(set(plots.COLORS.values())) == len(plots.COLORS)


def test_ablation_points_carry_the_tables_t_interval_and_reference_lines():
    runs = pd.concat([_runs(methods=("semalign_v1",), tasks=("facts",)).assign(factor="basis", level=level)
                      for level in ("output", "random", "input")], ignore_index=True)
    references = _runs(methods=plots.REFERENCES, tasks=("facts",))
    fig = plots.plot_ablation(runs, "basis", references)
    ax = fig.axes[0]
    assert ax.get_ylim() == (0, 100) and "t interval" in fig._suptitle.get_text()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["output", "random", "input"]  # as given
    summary = summarise(runs[runs["level"] == "output"], by=("task", "level", "method")).iloc[0]
    caps = [line for line in ax.lines if line.get_marker() == "_"]
    assert np.isclose(min(c.get_ydata()[0] for c in caps[:2]), summary["low"])  # the table's interval is drawn
    markers = [line for line in ax.lines if line.get_marker() == "o"]
    assert all(len(line.get_xdata()) == 1 for line in markers)  # points, never a line through levels
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(dashed) == len(plots.REFERENCES)


def test_frequency_terciles_stay_in_order():
    table = pd.DataFrame([{"model": "student", "task": "facts", "frequency": f, "score": s}
                          for f, s in (("middle", 50), ("common", 70), ("rare", 20))])
    ax = plots.plot_scores_by_frequency(table).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["rare", "middle", "common"]


def test_heatmaps_have_a_colour_bar():
    fig = plots.plot_cka({"teacher x student": torch.rand(3, 2), "student x student": torch.rand(2, 2)})
    assert len(fig.axes) == 3  # two heatmaps and one shared colour bar
    attribution = pd.DataFrame({"task": ["facts"] * 2, "layer": [1, 2], "share": [0.3, 0.7]})
    assert len(plots.plot_attribution(attribution).axes) == 2
