"""``results/REPORT.md``, written from the tables the notebooks left: no number in it is typed by hand,
except the paper's, which are labelled as reported (docs/method.md section 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lsa_utils.study.stats import gap_closed, summarise
from lsa_utils.tasks.spec import get_task

# Reported by Gu et al. (arXiv 2510.24208, v1), per benchmark: Llama-2-13B-Chat -> 7B-Chat (Table 1) and the
# code teachers of Table 2, by the name a profile gives them (the world's code teacher stands in for
# CodeLlama's). No seeds, variances or sft control were reported.
REPORTED_TABLE1 = {
    "student": {"MMLU": 44.20, "GSM8K": 16.07, "HumanEval": 14.05, "MBPP": 17.80},
    "teacher": {"MMLU": 52.90, "GSM8K": 20.55, "HumanEval": 18.75, "MBPP": 19.20},
    "seeking": {"MMLU": 49.60, "GSM8K": 28.23, "HumanEval": 15.44, "MBPP": 20.60},
    "laten": {"MMLU": 44.40, "GSM8K": 20.47, "HumanEval": 14.63, "MBPP": 18.20},
    "semalign_v1": {"MMLU": 50.30, "GSM8K": 19.21, "HumanEval": 17.34, "MBPP": 18.78},
}
_CODELLAMA = {
    "teacher": {"HumanEval": 47.56, "MBPP": 37.80},
    "seeking": {"HumanEval": 16.05, "MBPP": 21.40},
    "laten": {"HumanEval": 14.02, "MBPP": 17.80},
    "semalign_v1": {"HumanEval": 20.12, "MBPP": 22.35},
}
_WIZARDCODER = {
    "teacher": {"HumanEval": 56.71, "MBPP": 41.60},
    "seeking": {"HumanEval": 15.04, "MBPP": 19.80},
    "laten": {"HumanEval": 14.02, "MBPP": 18.60},
    "semalign_v1": {"HumanEval": 19.46, "MBPP": 21.18},
}
REPORTED_TABLE2 = {"code_teacher": _CODELLAMA, "codellama_13b_python": _CODELLAMA,
                   "wizardcoder_13b_python": _WIZARDCODER}
FIGURES = {
    "00_model_scores.png": "Test scores of student, teacher and code teacher on the four task families.",
    "00_scores_by_frequency.png": "The same scores split by how often the recalled subject appears in the corpus.",
    "00_training_loss.png": "Pretraining loss curves of the three models.",
    "01_recomposition_cosine.png": "Cosine between each layer's output and its decompose-recompose image, per basis kind (paper Fig. 2).",
    "02_attribution.png": "Grad x Act share of each teacher layer, per task.",
    "02_pairing.png": "The teacher-to-student layer pairing and the layers SemAlign v1 trains.",
    "03_alignment_quality.png": "Held-out cosine between mapped teacher states and the paired student states, per map.",
    "03_cka.png": "Linear CKA between layers: teacher x student, aligned teacher x student, student x student (Figs. 4-6).",
    "04_table1.png": "Table 1 of this run: every method on every task, mean and 95% t interval over seeds.",
    "04_table2.png": "Table 2 of this run: the code teacher as the source on the code tasks.",
    "04_paired_vs_sft.png": "Each method and control minus sft on the same (seed, item) pairs, with "
                            "Bonferroni-corrected intervals (clustered standard errors).",
}


def _read(results: Path, name: str) -> pd.DataFrame | None:
    path = results / "tables" / name
    return pd.read_csv(path, dtype={"correct": str}) if path.exists() else None  # item bits stay a string


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


def _transfer_section(results: Path) -> list[str]:
    table = _read(results, "transfer.csv")
    if table is None:
        return ["## Transfer", "", "Notebook 04 has not been run: no transfer table."]
    lines = ["## Transfer (notebook 04)", "",
             "Scores in percent, mean over seeds with a 95% t interval in brackets; rows marked *(control)* are "
             "the controls, not transfer methods. *Reported* columns are the paper's Llama-2 numbers on the real "
             "benchmarks (docs/method.md section 5), shown for orientation only.", ""]
    labelled = table.assign(method=[f"{m} (control)" if k == "control" else m
                                    for m, k in zip(table["method"], table["kind"])])
    for teacher in dict.fromkeys(labelled["teacher"]):  # the teacher first, then each code teacher
        part = labelled[labelled["teacher"] == teacher]
        reported, title = ((REPORTED_TABLE1, "Table 1: teacher -> student") if teacher == "teacher"
                           else (REPORTED_TABLE2.get(teacher, {}), f"Table 2: {teacher.replace('_', ' ')} -> student"))
        lines += [f"### {title}", "", _results_table(summarise(part), reported, list(dict.fromkeys(part["task"]))), ""]
    lines += _budget_lines(table)
    verdicts = _read(results, "04_verdicts.csv")
    if verdicts is not None:
        lines += _verdict_lines(verdicts)
    return lines


def _budget_lines(table: pd.DataFrame) -> list[str]:
    """Whether the budget can move the score: the oracle's gain, and whether sft fits its training items."""
    summary = summarise(table).assign(gap_closed=lambda s: gap_closed(s))
    fit = table.groupby(["teacher", "task", "method"], sort=False)["train_score"].mean()
    means = summary.set_index(["teacher", "task", "method"])
    lines = ["### Can the budget move the score?", "",
             "The `oracle` trains on the gold answers of the test prompts with the methods' budget: its gain over "
             "the student is the most any method could show. *Gap closed* is (score - student) / (teacher - "
             "student). *Train items* is the score on the first training items, which sft trained on.", "",
             "| source | task | student | teacher | oracle (gap closed) | teacher_answers (gap closed) | "
             "sft (gap closed) | train items: student -> sft |", "|---|---|---|---|---|---|---|---|"]
    for teacher, task in dict.fromkeys(zip(summary["teacher"], summary["task"])):
        def cell(method: str, with_gap: bool = True) -> str:
            if (teacher, task, method) not in means.index:
                return "-"
            row = means.loc[(teacher, task, method)]
            if not with_gap:
                return f"{row['mean']:.1f}"
            gap = "no gap" if pd.isna(row["gap_closed"]) else f"{row['gap_closed']:.0%}"  # teacher = student
            return f"{row['mean']:.1f} ({gap})"
        fits = " -> ".join(f"{fit.get((teacher, task, m), float('nan')):.1f}" for m in ("student", "sft"))
        lines.append(f"| {teacher} | {task} | {cell('student', False)} | {cell('teacher', False)} | {cell('oracle')} | "
                     f"{cell('teacher_answers')} | {cell('sft')} | {fits} |")
    return lines + [""]


def _verdict_lines(verdicts: pd.DataFrame) -> list[str]:
    """Per table and task: the minimum detectable difference, then each method's verdict against sft."""
    lines = ["### Verdicts: each method against sft, item by item", "",
             "Each method minus `sft` on the same (seed, test item) pairs, in points, with the standard error "
             "clustered by the recalled entity or function. Intervals are Bonferroni-corrected over the methods "
             "of one table and task; the **MDD** (minimum detectable difference) is the true difference the "
             "design finds with 80% power at that level. The controls form a family of their own. *Test "
             "subjects* are the entities or functions the test items recall: how many there are, and how many "
             "the largest MDD would need to come down to 5 points with the same seeds (the clustered SE falls "
             "with the square root of the subjects).", ""]
    methods = verdicts[verdicts["kind"] == "method"]
    lines += ["| source | task | MDD (largest over methods) | MDD range | comparisons | level | test subjects: now "
              "-> for MDD 5 |", "|---|---|---|---|---|---|---|"]
    for (teacher, task), group in methods.groupby(["teacher", "task"], sort=False):
        widest = group.loc[group["mdd"].idxmax()] if group["mdd"].notna().any() else None
        largest, span, subjects = (
            (f"{widest['mdd']:.1f}", f"{group['mdd'].min():.1f}-{widest['mdd']:.1f}",
             f"{widest['n_clusters']} -> {widest['clusters_for_target']:.0f}") if widest is not None
            else ("not estimable (one cluster)", "-", "-"))
        lines.append(f"| {teacher} | {task} | {largest} | {span} | {len(group)} | {group['level'].iloc[0]:.4f} "
                     f"| {subjects} |")
    lines += ["", "| source | task | kind | method | difference [corrected interval] | verdict |",
              "|---|---|---|---|---|---|"]
    for row in verdicts.itertuples():
        interval = f"[{row.low:+.1f}, {row.high:+.1f}]" if pd.notna(row.low) else "[not estimable]"
        lines.append(f"| {row.teacher} | {row.task} | {row.kind} | {row.method} | {row.mean_difference:+.1f} "
                     f"{interval} | {row.verdict} |")
    better = methods[methods["significant"] & (methods["mean_difference"] > 0)]
    lines += ["", "Transfer methods better than sft after the correction: " +
              (", ".join(f"{r.method} on {r.task} ({r.teacher})" for r in better.itertuples())
               if len(better) else "none in this run."), ""]
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
    lines = ["## The paper's claims, re-checked (docs/method.md section 6)", ""]
    recomposition = _read(results, "01_recomposition.csv")
    if recomposition is not None:
        means = recomposition.groupby(["model", "basis"])["cosine"].mean()
        parts = [f"{model}: " + ", ".join(f"{basis} {means[(model, basis)]:.2f}" for basis in means[model].index)
                 for model in means.index.get_level_values(0).unique()]
        lines += ["- **Fig. 2 (recomposition).** The paper: output bases near 1, input bases near 0. Measured mean "
                  "cosine over layers: " + "; ".join(parts) + ". With unit columns S Sᵀ is PSD, so no cosine is "
                  "negative; random bases with V ≫ D form a nearly tight frame and recompose well too, so a high "
                  "cosine alone does not show that a basis is semantic." + _tied_caveat(recomposition)]
    quality = _read(results, "03_alignment_quality.csv")
    if quality is not None:
        lines += ["- **Cross-model alignment.** " + _alignment_sentence(quality)]
    cka = _read(results, "03_cka.csv")
    if cka is not None:
        lines += ["- **Figs. 4-6 (CKA).** " + _cka_sentence(cka)]
    ablations = _read(results, "ablations.csv")
    if ablations is not None and "n_trained_layers" in set(ablations["factor"]):
        layers = ablations[ablations["factor"] == "n_trained_layers"].groupby("level")["score"].mean()
        lines += ["- **A few paired layers are enough.** Mean score by number of trained layers: " +
                  ", ".join(f"{level}: {score:.1f}" for level, score in layers.items()) + "."]
    return lines + [""]


def _tied_caveat(recomposition: pd.DataFrame) -> str:
    if "tied" not in recomposition or not recomposition["tied"].any():
        return ""
    tied = ", ".join(sorted(recomposition.loc[recomposition["tied"], "model"].unique()))
    return (f" These models ({tied}) tie the input embedding to the LM head, so their `input` bases are the head's "
            "own rows (the `output` bases whitened): the paper's input-vs-output contrast is not tested by them.")


def _alignment_sentence(quality: pd.DataFrame) -> str:
    """Held-out cosine of each map where SemAlign trains, then elsewhere for context."""
    def means(rows: pd.DataFrame) -> str:
        return ", ".join(f"{m} {v:.2f}" for m, v in rows.groupby("map")["cosine"].mean().items())
    trains = quality[quality["at_training_site"]]
    parts = [f"where SemAlign trains ({trains['site'].iloc[0]}, its plan's pairing): {means(trains)}"]
    for (site, pairing), rows in quality[~quality["at_training_site"]].groupby(["site", "pairing"], sort=False):
        parts.append(f"at {site} with the {pairing} pairing: {means(rows)}")
    return ("Mean held-out cosine between mapped teacher states and the paired student states, "
            + "; ".join(parts) + ".")


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
                                     "score per level (one panel per task, mean and 95% t interval over seeds) "
                                     "against student, sft and teacher." if name.startswith("05_ablation_") else "")
        lines.append(f"- `figures/{name}`: {text}")
    return lines + [""]


def _sandbox_lines(results: Path) -> list[str]:
    """Where the scored notebooks ran generated code, from their run records."""
    used = {}
    for record in sorted((results / "runs").glob("0[045]_*.json")):
        used[record.stem] = json.loads(record.read_text()).get("sandbox", "unknown")
    if not used:
        return []
    if set(used.values()) == {"bubblewrap"}:
        return ["Generated code ran inside bubblewrap (own PID, network, IPC and mount namespaces, as `nobody`); "
                "the hidden tests ran in the evaluator.", ""]
    listed = ", ".join(f"{stem}: {how}" for stem, how in used.items())
    return [f"**Generated code did not all run inside bubblewrap** ({listed}). `guard` is the in-process audit "
            "hook the profile asked for (`evaluation: {sandbox: guard}`): it stops accidents, not code written to "
            "escape it.", ""]


def _world_seed_lines(results: Path, profile: str) -> list[str]:
    """How much the zoo itself varies with the world seed (notebook 00's ``world_seeds``), when this profile ran it."""
    scores, checks = _read(results, "world_seeds.csv"), _read(results, "world_seed_checks.csv")
    if scores is None or checks is None:
        return []
    scores, checks = scores[scores["profile"] == profile], checks[checks["profile"] == profile]
    if scores.empty:
        return []
    seeds = sorted(scores["world_seed"].unique())
    spread = _by_seed(scores, ["task", "model"], "score")
    spread = spread.assign(range=spread.max(axis=1) - spread.min(axis=1))
    failed = checks.loc[~checks["met"], ["world_seed", "task", "check"]]
    verdict = ("Every design target of notebook 00 holds on every world seed." if failed.empty else
               "Targets missed: " + "; ".join(f"seed {r.world_seed} {r.task} ({r.check})"
                                               for r in failed.itertuples()) + ".")
    return ["### How much the zoo varies with the world seed", "",
            f"Notebook 00 trains the profile's zoo on world seeds {', '.join(map(str, seeds))}. {verdict} "
            "Scores per task and model on each seed (points):", "", _markdown(spread), "",
            "The design targets per seed:", "", _markdown(_by_seed(checks, ["task", "check"], "value")), ""]


def _by_seed(table: pd.DataFrame, rows: list[str], value: str) -> pd.DataFrame:
    """``value`` with one row per combination of ``rows`` (named "a: b") and one column per world seed."""
    wide = table.pivot_table(index=rows, columns="world_seed", values=value)
    wide.index = [": ".join(map(str, key)) for key in wide.index]
    wide.columns = [f"seed {seed}" for seed in wide.columns]
    return wide


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
    lines += _world_seed_lines(results, profile) + _sandbox_lines(results)
    return "\n".join(lines + _transfer_section(results) + _ablation_section(results) + _claims_section(results)
                     + _figures_section(results))
