"""Figures of the study; each returns a matplotlib Figure and leaves saving to `outputs.save_figure`.

Conventions, so that no figure misleads: a method (or model) has one colour in every figure
(`COLORS`); intervals are the t intervals over seeds that the tables print (`stats.summarise`), named in
the title; categorical levels are points, not lines; scores are drawn on 0-100 with the student, sft and
teacher as reference lines wherever a method is scored; heatmaps have a colour bar.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from lsa_utils.study.methods import CONTROLS, METHODS
from lsa_utils.study.stats import summarise
from lsa_utils.tasks.world.zoo import FREQUENCY_TERCILES

COLORS = (dict(zip((*METHODS, "code_teacher"), sns.color_palette("tab10", len(METHODS) + 1)))
          | dict(zip(CONTROLS, sns.color_palette("Dark2", len(CONTROLS)))))
REFERENCES = ("student", "sft", "teacher")  # the lines a method's score is read against


def _color(name: str) -> tuple[float, float, float]:
    """A method's or model's colour; names outside the study (a new ablation method) are black."""
    return COLORS.get(name, (0.0, 0.0, 0.0))


def plot_scores(scores: pd.DataFrame, chance: dict[str, float], title: str) -> plt.Figure:
    """Bars of ``score`` per task and model, with each task's chance level as a dashed line."""
    tasks = list(dict.fromkeys(scores["task"]))
    fig, ax = plt.subplots(figsize=(1.9 * len(tasks) + 2, 3.6))
    sns.barplot(scores, x="task", y="score", hue="model", order=tasks, ax=ax,
                palette={model: _color(model) for model in scores["model"].unique()})
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
        ax.plot(np.arange(len(smooth)) + window // 2, smooth, label=name, color=_color(name))
    ax.set(xlabel="optimiser step", ylabel="next-token loss", yscale="log", title="Training")
    ax.legend(frameon=False)
    return fig


def plot_scores_by_frequency(table: pd.DataFrame) -> plt.Figure:
    """One panel per task: score by how often the recalled subject appears in the corpus (terciles, rare to
    common, as points)."""
    models = list(dict.fromkeys(table["model"]))
    grid = sns.catplot(table, x="frequency", y="score", hue="model", col="task", kind="point",
                       order=list(FREQUENCY_TERCILES), col_order=list(dict.fromkeys(table["task"])),
                       hue_order=models, palette={m: _color(m) for m in models}, linestyle="none",
                       dodge=0.3 if len(models) > 1 else False, height=2.8, aspect=0.9, errorbar=None)
    grid.set(ylim=(0, 100))
    grid.set_axis_labels("corpus frequency of the subject", "score (%)")
    return grid.figure


def plot_world_seed_checks(checks: pd.DataFrame) -> plt.Figure:
    """Notebook 00's design targets on each world seed: one point per (seed, check), each check's target
    as a dashed line (a point left of its line is a missed target)."""
    table = checks.assign(label=checks["task"] + ": " + checks["check"])
    order = list(dict.fromkeys(table["label"]))
    fig, ax = plt.subplots(figsize=(6.5, 0.38 * len(order) + 1.2))
    sns.stripplot(table, x="value", y="label", hue="world_seed", order=order, dodge=True, jitter=False, size=6,
                  palette="viridis", ax=ax)
    targets = table.drop_duplicates("label").set_index("label")["target"]
    for i, label in enumerate(order):
        ax.vlines(targets[label], i - 0.45, i + 0.45, colors="k", linestyles="dashed", linewidth=1)
    ax.set(xlabel="points", ylabel="", title="Design targets per world seed (dashed: the target)")
    ax.legend(title="world seed", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


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
    fig, ax = plt.subplots(figsize=(2.2 + 0.7 * shares.shape[1], 0.8 + 0.55 * len(shares)))
    sns.heatmap(shares, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, cbar_kws={"label": "share"}, ax=ax)
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
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.6 * len(matrices) + 0.8, 3.2), squeeze=False)
    for j, (ax, (title, matrix)) in enumerate(zip(axes[0], matrices.items())):
        last = j == len(matrices) - 1  # one shared scale (0 to 1): one colour bar
        sns.heatmap(matrix.numpy(), vmin=0, vmax=1, cmap="magma", annot=matrix.shape[0] <= 8, fmt=".2f",
                    cbar=last, cbar_kws={"label": "linear CKA"} if last else None, ax=ax,
                    xticklabels=range(1, matrix.shape[1] + 1), yticklabels=range(1, matrix.shape[0] + 1))
        ax.set(title=title, xlabel="student layer",
               ylabel="student layer" if title.startswith("student") else row_label)
    return fig


def plot_transfer(summary: pd.DataFrame, title: str) -> plt.Figure:
    """Mean score per method and task with the interval of `summary` (``low`` / ``high``; ``title`` names it),
    and the student's and teacher's scores as dashed lines across each task's bars."""
    tasks = list(dict.fromkeys(summary["task"]))
    methods = list(dict.fromkeys(summary["method"]))
    fig, ax = plt.subplots(figsize=(2.6 * len(tasks) + 2, 3.6))
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        rows = summary[summary["method"] == method].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) + (j - (len(methods) - 1) / 2) * width
        errors = np.vstack([rows["mean"] - rows["low"], rows["high"] - rows["mean"]])
        ax.bar(x, rows["mean"], width, yerr=np.nan_to_num(errors), capsize=2, label=method, color=_color(method))
        if method in ("student", "teacher"):
            ax.hlines(rows["mean"], np.arange(len(tasks)) - 0.45, np.arange(len(tasks)) + 0.45,
                      colors=[_color(method)], linestyles="dashed", linewidth=1)
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.set(ylabel="score (%)", ylim=(0, 100), title=title)
    ax.title.set_fontsize(9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    return fig


def plot_paired_differences(table: pd.DataFrame, title: str) -> plt.Figure:
    """Each method minus the sft control (``mean_difference`` with its ``low`` / ``high`` interval, as the
    table says; ``title`` names the interval): one panel per task, stacked, one row per method and teacher."""
    tasks = list(dict.fromkeys(table["task"]))
    sizes = [int((table["task"] == task).sum()) for task in tasks]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(7, 0.9 + 0.28 * sum(sizes) + 0.5 * len(tasks)), sharex=True,
                             gridspec_kw={"height_ratios": sizes}, squeeze=False)
    for ax, task in zip(axes[:, 0], tasks):
        rows = table[table["task"] == task].reset_index(drop=True)
        for k, row in rows.iterrows():
            error = [[row["mean_difference"] - row["low"]], [row["high"] - row["mean_difference"]]]
            ax.errorbar(row["mean_difference"], k, xerr=np.nan_to_num(error), fmt="o", capsize=3,
                        color=_color(row["method"]))
        ax.axvline(0, color=_color("sft"), linewidth=1, linestyle="dashed")
        labels = rows["method"] + np.where(rows["teacher"] == "teacher", "", " (from " + rows["teacher"] + ")")
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_title(task, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("score - sft (points; dashed: sft)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return fig


def plot_ablation(table: pd.DataFrame, factor: str, references: pd.DataFrame | None = None) -> plt.Figure:
    """One panel per task: the score at each level of one factor as a point with its 95% t interval over
    seeds (the levels are categories: no lines between them), on 0-100, with the mean scores of
    ``references`` (rows of the transfer table: student, sft, teacher on the same tasks) as lines."""
    summary = summarise(table[table["factor"] == factor], by=("task", "level", "method"))
    tasks = list(dict.fromkeys(summary["task"]))
    levels = list(dict.fromkeys(summary["level"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=((1.0 * len(levels) + 1.5) * len(tasks) + 1.5, 3.2),
                             squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        rows = summary[summary["task"] == task].set_index("level").reindex(levels)
        errors = np.vstack([rows["mean"] - rows["low"], rows["high"] - rows["mean"]])
        for k, row in enumerate(rows.itertuples()):
            ax.errorbar(k, row.mean, yerr=np.nan_to_num(errors[:, k : k + 1]), fmt="o", capsize=3,
                        color=_color(row.method))
        if references is not None:
            means = references[references["task"] == task].groupby("method")["score"].mean()
            for method in REFERENCES:
                if method in means:
                    ax.axhline(means[method], color=_color(method), linestyle="dashed", linewidth=1, label=method)
        ax.set_xticks(range(len(levels)), levels, rotation=20 if len(levels) > 3 else 0)
        ax.set(xlim=(-0.5, len(levels) - 0.5), ylim=(0, 100), xlabel=factor, title=task)
    axes[0][0].set_ylabel("score (%)")
    if references is not None:
        axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    n_seeds = int(summary["n_seeds"].max())
    fig.suptitle(f"Ablation: {factor} (SemAlign v1 with one choice changed; mean and 95% t interval over "
                 f"{n_seeds} seeds)", fontsize=9)
    fig.tight_layout()
    return fig
