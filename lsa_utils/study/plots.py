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


def plot_recomposition(table: pd.DataFrame) -> plt.Figure:
    """Paper Fig. 2: cosine between a layer's output and its decompose-recompose image, per basis kind."""
    grid = sns.relplot(table, x="layer", y="cosine", hue="basis", col="model", kind="line", marker="o",
                       height=3.0, aspect=1.1, facet_kws={"sharex": False})
    grid.set(ylim=(-0.05, 1.05))
    grid.set_axis_labels("layer (block output)", "cos(h, S Sᵀ h)")
    return grid.figure


def plot_attribution(table: pd.DataFrame) -> plt.Figure:
    """Grad x Act share of each teacher layer, per task (rows sum to 1)."""
    shares = table.pivot(index="task", columns="layer", values="share")
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * shares.shape[1], 0.5 + 0.55 * len(shares)))
    sns.heatmap(shares, annot=True, fmt=".2f", cmap="viridis", cbar=False, ax=ax)
    ax.set(xlabel="teacher layer", ylabel="", title="Grad × Act share per layer")
    return fig


def plot_pairing(pairing: pd.DataFrame, n_teacher: int, n_student: int) -> plt.Figure:
    """The layer pairing as a bipartite graph per task: teacher layers left, student layers right."""
    tasks = list(dict.fromkeys(pairing["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = pairing[pairing["task"] == task]
        teacher_y = np.linspace(0, 1, n_teacher)
        student_y = np.linspace(0, 1, n_student)
        for row in rows.itertuples():
            ax.plot([0, 1], [teacher_y[row.teacher_layer - 1], student_y[row.student_layer - 1]],
                    color="tab:red" if row.trains else "0.6", linewidth=2.5 if row.trains else 1)
        critical = set(rows.loc[rows["critical"], "teacher_layer"])
        ax.scatter(np.zeros(n_teacher), teacher_y, s=60, zorder=3,
                   c=["tab:red" if k in critical else "tab:blue" for k in range(1, n_teacher + 1)])
        ax.scatter(np.ones(n_student), student_y, s=60, zorder=3, color="tab:green")
        for k, y in enumerate(teacher_y, start=1):
            ax.annotate(f"T{k}", (0, y), xytext=(-18, -3), textcoords="offset points", fontsize=8)
        for k, y in enumerate(student_y, start=1):
            ax.annotate(f"S{k}", (1, y), xytext=(6, -3), textcoords="offset points", fontsize=8)
        ax.set(xlim=(-0.3, 1.3), title=task)
        ax.axis("off")
    fig.suptitle("Layer pairing (red: critical teacher layer and the student layer that trains)", fontsize=9, y=1.04)
    return fig


def plot_alignment_quality(table: pd.DataFrame) -> plt.Figure:
    """Held-out cosine between mapped teacher states and the paired student states, mean over the paired
    layers: one panel per (pairing, site), the panel where SemAlign trains marked in its title."""
    grid = sns.catplot(table, x="task", y="cosine", hue="map", row="pairing", col="site", kind="bar",
                       errorbar=None, height=2.6, aspect=1.5)
    for (pairing, site), ax in grid.axes_dict.items():
        trains = table[(table["pairing"] == pairing) & (table["site"] == site)]["at_training_site"].any()
        ax.set_title(f"{pairing} at {site}" + ("  (where SemAlign trains)" if trains else ""), fontsize=9)
        ax.axhline(0, color="k", linewidth=0.6)
    grid.set_axis_labels("", "cosine on held-out tokens")
    return grid.figure


def plot_cka(matrices: dict, row_label: str = "teacher layer") -> plt.Figure:
    """Linear-CKA heatmaps side by side (rows: the first model's layers, columns: the student's)."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.6 * len(matrices), 3.2), squeeze=False)
    for ax, (title, matrix) in zip(axes[0], matrices.items()):
        sns.heatmap(matrix.numpy(), vmin=0, vmax=1, cmap="magma", annot=matrix.shape[0] <= 8, fmt=".2f",
                    cbar=False, ax=ax, xticklabels=range(1, matrix.shape[1] + 1),
                    yticklabels=range(1, matrix.shape[0] + 1))
        ax.set(title=title, xlabel="student layer",
               ylabel="student layer" if title.startswith("student") else row_label)
    return fig


def plot_transfer(summary: pd.DataFrame, title: str) -> plt.Figure:
    """Mean score per method and task with its 95% confidence interval over seeds."""
    tasks = list(dict.fromkeys(summary["task"]))
    methods = list(dict.fromkeys(summary["method"]))
    fig, ax = plt.subplots(figsize=(2.6 * len(tasks) + 2, 3.6))
    width = 0.8 / len(methods)
    colors = sns.color_palette("tab10", len(methods))
    for j, method in enumerate(methods):
        rows = summary[summary["method"] == method].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) + (j - (len(methods) - 1) / 2) * width
        errors = np.vstack([rows["mean"] - rows["low"], rows["high"] - rows["mean"]])
        ax.bar(x, rows["mean"], width, yerr=np.nan_to_num(errors), capsize=2, label=method, color=colors[j])
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.set(ylabel="score (%)", ylim=(0, 100), title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    return fig


def plot_paired_differences(table: pd.DataFrame, title: str) -> plt.Figure:
    """Each method minus the sft control (``mean_difference`` with its ``low`` / ``high`` interval, as the
    table says; ``title`` names the interval), one panel per task."""
    grid = sns.FacetGrid(table, col="task", col_wrap=min(4, table["task"].nunique()), height=2.8, sharex=False,
                         sharey=False)

    def draw(data: pd.DataFrame, **_: object) -> None:
        ax = plt.gca()
        y = np.arange(len(data))
        ax.errorbar(data["mean_difference"], y, xerr=np.nan_to_num(np.vstack(
            [data["mean_difference"] - data["low"], data["high"] - data["mean_difference"]])), fmt="o", capsize=3)
        ax.axvline(0, color="k", linewidth=0.8)
        ax.set_yticks(y, data["method"] + " (" + data["teacher"] + ")")

    grid.map_dataframe(draw)
    grid.set_axis_labels("score - sft (points)", "")
    grid.figure.suptitle(title, fontsize=9)
    grid.figure.tight_layout()
    return grid.figure


def plot_ablation(table: pd.DataFrame, factor: str) -> plt.Figure:
    """Score per level of one factor (mean and 95% CI over seeds), one line per task."""
    rows = table[table["factor"] == factor]
    fig, ax = plt.subplots(figsize=(1.2 * rows["level"].nunique() + 2.5, 3.2))
    sns.pointplot(rows, x="level", y="score", hue="task", order=list(dict.fromkeys(rows["level"])),
                  errorbar=("ci", 95), dodge=0.3 if rows["task"].nunique() > 1 else False, ax=ax)
    ax.set(xlabel=factor, ylabel="score (%)", title=f"Ablation: {factor}")
    ax.legend(frameon=False, fontsize=8)
    return fig
