"""``results/REPORT.md``, written from the tables the notebooks left: no number in it is typed by hand,
except the paper's, which are labelled as reported (METHOD.md section 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lsa_utils.study.stats import summarise
from lsa_utils.tasks.spec import get_task

# Reported by Gu et al. (arXiv 2510.24208, v1), per benchmark: Llama-2-13B-Chat -> 7B-Chat (Table 1) and the
# CodeLlama-13B-Python teacher (Table 2). No seeds, variances or sft control were reported.
REPORTED_TABLE1 = {
    "student": {"MMLU": 44.20, "GSM8K": 16.07, "HumanEval": 14.05, "MBPP": 17.80},
    "teacher": {"MMLU": 52.90, "GSM8K": 20.55, "HumanEval": 18.75, "MBPP": 19.20},
    "seeking": {"MMLU": 49.60, "GSM8K": 28.23, "HumanEval": 15.44, "MBPP": 20.60},
    "laten": {"MMLU": 44.40, "GSM8K": 20.47, "HumanEval": 14.63, "MBPP": 18.20},
    "semalign_v1": {"MMLU": 50.30, "GSM8K": 19.21, "HumanEval": 17.34, "MBPP": 18.78},
}
REPORTED_TABLE2 = {
    "teacher": {"HumanEval": 47.56, "MBPP": 37.80},
    "seeking": {"HumanEval": 16.05, "MBPP": 21.40},
    "laten": {"HumanEval": 14.02, "MBPP": 17.80},
    "semalign_v1": {"HumanEval": 20.12, "MBPP": 22.35},
}
FIGURES = {
    "00_model_scores.png": "Test scores of student, teacher and code teacher on the four task families.",
    "00_scores_by_frequency.png": "The same scores split by how often the recalled subject appears in the corpus.",
    "00_training_loss.png": "Pretraining loss curves of the three models.",
    "01_recomposition_cosine.png": "Cosine between each layer's output and its decompose-recompose image, per basis kind (paper Fig. 2).",
    "02_attribution.png": "Grad x Act share of each teacher layer, per task.",
    "02_pairing.png": "The teacher-to-student layer pairing and the layers SemAlign v1 trains.",
    "03_alignment_quality.png": "Held-out cosine between mapped teacher states and the paired student states, per map.",
    "03_cka.png": "Linear CKA between layers: teacher x student, aligned teacher x student, student x student (Figs. 4-6).",
    "04_table1.png": "Table 1 of this run: every method on every task, mean and 95% interval over seeds.",
    "04_table2.png": "Table 2 of this run: the code teacher as the source on the code tasks.",
    "04_paired_vs_sft.png": "Each transfer method minus the sft control on the same seeds, with 95% intervals.",
}


def _read(results: Path, name: str) -> pd.DataFrame | None:
    path = results / "tables" / name
    return pd.read_csv(path) if path.exists() else None


def _markdown(frame: pd.DataFrame) -> str:
    """A small DataFrame as a Markdown table (index first)."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    rows = [[str(i), *(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row)] for i, row in frame.iterrows()]
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header), *rows])


def _cell(row: pd.Series) -> str:
    if pd.isna(row["low"]):
        return f"{row['mean']:.1f}"
    return f"{row['mean']:.1f} [{row['low']:.1f}, {row['high']:.1f}]"


def _results_table(summary: pd.DataFrame, reported: dict, tasks: list[str]) -> str:
    methods = list(dict.fromkeys(summary["method"]))
    benchmarks = {t: get_task(t).benchmark for t in tasks}
    header = "| method | " + " | ".join(f"{t} (ours) | {benchmarks[t]} (reported)" for t in tasks) + " |"
    lines = [header, "|---|" + "---|---|" * len(tasks)]
    indexed = summary.set_index(["method", "task"])
    for method in methods:
        cells = []
        for task in tasks:
            ours = _cell(indexed.loc[(method, task)]) if (method, task) in indexed.index else "-"
            theirs = reported.get(method, {}).get(benchmarks[task])
            cells.append(f"{ours} | {theirs:.2f}" if theirs is not None else f"{ours} | -")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _verdict(row: pd.Series) -> str:
    if pd.isna(row["low"]):
        return "one seed only: no interval"
    if row["low"] > 0:
        return "beats sft"
    if row["high"] < 0:
        return "worse than sft"
    return "no measurable difference from sft"


def _transfer_section(results: Path) -> list[str]:
    table = _read(results, "transfer.csv")
    if table is None:
        return ["## Transfer", "", "Notebook 04 has not been run: no transfer table."]
    lines = ["## Transfer (notebook 04)", "",
             "Scores in percent, mean over seeds with a 95% t interval in brackets. *Reported* columns are the "
             "paper's Llama-2 numbers on the real benchmarks (METHOD.md section 5), shown for orientation only.", ""]
    for teacher, reported, title in (("teacher", REPORTED_TABLE1, "Table 1: teacher -> student"),
                                     ("code_teacher", REPORTED_TABLE2, "Table 2: code teacher -> student")):
        part = table[table["teacher"] == teacher]
        if part.empty:
            continue
        lines += [f"### {title}", "", _results_table(summarise(part), reported, list(dict.fromkeys(part["task"]))), ""]
    paired = _read(results, "04_paired_vs_sft.csv")
    if paired is not None:
        lines += ["### Against the sft control (same seeds)", "", "| source | task | method | difference | verdict |",
                  "|---|---|---|---|---|"]
        for row in paired.itertuples():
            lines.append(f"| {row.teacher} | {row.task} | {row.method} | {row.mean_difference:+.1f} "
                         f"[{row.low:+.1f}, {row.high:+.1f}] | {_verdict(pd.Series(row._asdict()))} |")
        winners = paired[paired["low"] > 0]
        lines += ["", "Methods that beat sft with 95% confidence: " +
                  (", ".join(f"{r.method} on {r.task} ({r.teacher})" for r in winners.itertuples())
                   if len(winners) else "none. No transfer method measurably beat the sft control in this run."), ""]
    return lines


def _ablation_section(results: Path) -> list[str]:
    table = _read(results, "ablations.csv")
    if table is None:
        return ["## Ablations", "", "Notebook 05 has not been run: no ablation table."]
    lines = ["## Ablations (notebook 05)", "", "| factor | task | best level | its mean | worst level | its mean |",
             "|---|---|---|---|---|---|"]
    means = table.groupby(["factor", "task", "level"], sort=False)["score"].mean().reset_index()
    for (factor, task), group in means.groupby(["factor", "task"], sort=False):
        best, worst = group.loc[group["score"].idxmax()], group.loc[group["score"].idxmin()]
        lines.append(f"| {factor} | {task} | {best['level']} | {best['score']:.1f} | {worst['level']} | "
                     f"{worst['score']:.1f} |")
    seeds = table.groupby(["factor", "level", "task"])["seed"].nunique()
    lines += ["", f"Seeds per level: {seeds.min()} to {seeds.max()}; tasks: {', '.join(table['task'].unique())}.", ""]
    return lines


def _claims_section(results: Path) -> list[str]:
    lines = ["## The paper's claims, re-checked (METHOD.md section 6)", ""]
    recomposition = _read(results, "01_recomposition.csv")
    if recomposition is not None:
        means = recomposition.groupby(["model", "basis"])["cosine"].mean()
        parts = [f"{model}: " + ", ".join(f"{basis} {means[(model, basis)]:.2f}" for basis in means[model].index)
                 for model in means.index.get_level_values(0).unique()]
        lines += ["- **Fig. 2 (recomposition).** The paper: output bases near 1, input bases near 0. Measured mean "
                  "cosine over layers: " + "; ".join(parts) + ". With unit columns S Sᵀ is PSD, so no cosine is "
                  "negative; random bases with V ≫ D form a nearly tight frame and recompose well too, so a high "
                  "cosine alone does not show that a basis is semantic."]
    quality = _read(results, "03_alignment_quality.csv")
    if quality is not None:
        means = quality.groupby("map")["cosine"].mean()
        lines += ["- **Cross-model alignment.** Mean held-out cosine between mapped teacher states and the paired "
                  "student states: " + ", ".join(f"{m} {v:.2f}" for m, v in means.items()) + "."]
    cka = _read(results, "03_cka.csv")
    if cka is not None:
        lines += ["- **Figs. 4-6 (CKA).** " + _cka_sentence(cka)]
    ablations = _read(results, "ablations.csv")
    if ablations is not None and "n_trained_layers" in set(ablations["factor"]):
        layers = ablations[ablations["factor"] == "n_trained_layers"].groupby("level")["score"].mean()
        lines += ["- **A few paired layers are enough.** Mean score by number of trained layers: " +
                  ", ".join(f"{level}: {score:.1f}" for level, score in layers.items()) + "."]
    return lines + [""]


def _cka_sentence(cka: pd.DataFrame) -> str:
    parts = []
    for pair, group in cka.groupby("pair", sort=False):
        n_rows, n_cols = group["row_layer"].max(), group["student_layer"].max()
        depth_gap = (group["row_layer"] / n_rows - group["student_layer"] / n_cols).abs()
        near, far = group.loc[depth_gap <= 0.25, "cka"].mean(), group.loc[depth_gap > 0.25, "cka"].mean()
        parts.append(f"{pair}: {near:.2f} near the depth diagonal vs {far:.2f} away from it")
    return "Mean linear CKA " + "; ".join(parts) + "."


def _figures_section(results: Path) -> list[str]:
    figures = sorted(p.name for p in (results / "figures").glob("*.png"))
    lines = ["## Figures", ""]
    for name in figures:
        text = FIGURES.get(name) or (f"Ablation of {name.removeprefix('05_ablation_').removesuffix('.png')}: "
                                     "score per level, one line per task." if name.startswith("05_ablation_") else "")
        lines.append(f"- `figures/{name}`: {text}")
    return lines + [""]


def build_report(results: Path, profile: str) -> str:
    """The whole report as Markdown, from whatever tables exist under ``results``."""
    results = Path(results)
    record = results / "runs" / "04_transfer.json"
    commit = json.loads(record.read_text()).get("git_commit", "unknown") if record.exists() else "unknown"
    lines = [f"# Report: latent semantic alignment study ({profile} profile)", "",
             f"Generated by `notebooks/06_report.ipynb` from the tables under `results/tables/` (transfer runs at "
             f"commit `{commit}`).", ""]
    models = _read(results, "models.csv")
    if models is not None:
        wide = models.pivot(index="task", columns="model", values="score").round(1)
        lines += ["## The models (notebook 00)", "", _markdown(wide), ""]
    return "\n".join(lines + _transfer_section(results) + _ablation_section(results) + _claims_section(results)
                     + _figures_section(results))
