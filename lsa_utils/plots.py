"""Figures of the study; each returns a matplotlib Figure and leaves saving to `outputs.save_figure`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def plot_scores(scores: pd.DataFrame, chance: dict[str, float], title: str) -> plt.Figure:
    """Bars of ``score`` per task and model, with each task's chance level as a dashed line."""
    tasks = list(dict.fromkeys(scores["task"]))
    fig, ax = plt.subplots(figsize=(1.9 * len(tasks) + 2, 3.6))
    sns.barplot(scores, x="task", y="score", hue="model", order=tasks, ax=ax)
    for i, task in enumerate(tasks):
        ax.hlines(chance[task], i - 0.45, i + 0.45, colors="k", linestyles="dashed", linewidth=1)
    ax.set(ylim=(0, 100), ylabel="score (%)", xlabel="", title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def plot_training_curves(losses: dict[str, list[float]], smoothing: int = 20) -> plt.Figure:
    """Training loss per step (moving average) for each model."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, curve in losses.items():
        window = max(1, min(smoothing, len(curve) // 5))
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(len(smooth)) + window // 2, smooth, label=name)
    ax.set(xlabel="optimiser step", ylabel="next-token loss", yscale="log", title="Training")
    ax.legend(frameon=False)
    return fig


def plot_scores_by_frequency(table: pd.DataFrame) -> plt.Figure:
    """One panel per task: score by how often the recalled subject appears in the corpus."""
    grid = sns.catplot(table, x="frequency", y="score", hue="model", col="task", kind="point",
                       col_order=list(dict.fromkeys(table["task"])), hue_order=list(dict.fromkeys(table["model"])),
                       height=2.8, aspect=0.9, errorbar=None)
    grid.set(ylim=(-2, 102))
    grid.set_axis_labels("corpus frequency of the subject", "score (%)")
    return grid.figure
