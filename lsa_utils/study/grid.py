"""The transfer study's grid: methods x tasks x seeds, each run cached by a key of everything it depends on.

A run trains (or loads) nothing but the transferred student and stores only its scores, so re-running a
notebook with nothing changed reads JSON files; a changed knob, or a change of the code a run executes
(``stage_digest("transfer")``), recomputes only the runs it touches. The runs that are missing, and those
whose record fails its checksum, go to an executor (`lsa_utils.study.executors`) as picklable `Job`s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from itertools import product
from pathlib import Path

import pandas as pd
from datasets import Dataset

from lsa_utils.evaluation.scoring import evaluate_family
from lsa_utils.infra.cache import atomic_write, config_key, stage_digest, verified
from lsa_utils.infra.progress import progress_bar
from lsa_utils.models.loading import ModelRecipe, ModelSet
from lsa_utils.semalign.losses import registered_loss_source
from lsa_utils.study.executors import Executor
from lsa_utils.study.methods import TargetCache, TransferConfig, transfer_model
from lsa_utils.study.stats import UNTRAINED, item_string
from lsa_utils.tasks.spec import check_split_counts

ROWS = ("teacher", "student", "task", "method", "seed", "metric", "score", "train_score", "correct")


@dataclass(frozen=True)
class Job:
    """One run of the grid, complete enough to execute in another process: load, transfer, score, write."""

    models: ModelRecipe
    teacher: str
    student: str
    method: str
    family: str
    seed: int
    config: TransferConfig  # seeded
    evaluation: dict
    n_test: int | None
    n_fit: int  # train-split items scored as well, to see whether a method fits what it trained on
    cache_dir: str
    path: str  # where the run's record is written

    def row(self) -> dict:
        """The run's row of the tidy table, read from its record."""
        record = json.loads(Path(self.path).read_text())
        return {"teacher": self.teacher, "student": self.student, "task": self.family, "method": self.method,
                "seed": self.seed, "metric": record["metric"], "score": record["score"],
                "train_score": record["train_score"], "correct": record["correct"]}


def grid_jobs(models: ModelSet, teacher: str, methods: Sequence[str], families: Sequence[str],
              seeds: Sequence[int], config: TransferConfig, cache_dir: Path, evaluation: dict,
              n_test: int | None = None, n_fit: int = 0, student: str = "student") -> list[Job]:
    """Every (method, family, seed) of the grid as a job; untouched models run once (the first seed).

    A run's cache key holds everything it depends on. An untouched model's run depends only on that
    model, and the oracle's only on the student, so those of Table 1 are reused for Table 2.
    """
    pair = models.pair(teacher, student)
    check_split_counts(models.tasks, families, n_test, n_fit)  # here, before any job runs: not in a worker
    jobs = []
    custom_loss = registered_loss_source(config.layer_loss)
    for method, family, seed in product(methods, families, seeds):
        if method in UNTRAINED and seed != seeds[0]:
            continue
        seeded = replace(config, train=replace(config.train, seed=seed))
        source = ({"model": pair.model_key(method)} if method in UNTRAINED
                  else {"student": pair.student_key} if method == "oracle" else {"pair": pair.key})
        key = config_key({"code": stage_digest("transfer"), **source, "method": method, "family": family,
                          "seed": seed, "n_test": n_test, "n_fit": n_fit, "evaluation": evaluation,
                          "config": asdict(seeded) if method not in UNTRAINED else None,
                          **({"layer_loss_source": custom_loss} if custom_loss else {})})
        path = Path(cache_dir).resolve() / "transfer" / f"{method}-{family}-{key}.json"
        jobs.append(Job(models.recipe, teacher, student, method, family, seed, seeded, dict(evaluation), n_test,
                        n_fit, str(Path(cache_dir).resolve()), str(path)))
    return jobs


def item_clusters(models: ModelSet, families: Sequence[str], n_test: int | None = None) -> dict[str, list[str]]:
    """Per task, what each scored test item recalls (its first subject: an entity or a function), the
    clusters of the item-level statistics."""
    return {family: [row["subjects"][0] for row in _first(models.tasks[family]["test"], n_test)]
            for family in families}


def execute(job: Job) -> Job:
    """Transfer and score one run, and write its record (atomically); the models load once per process.

    The record holds the test score, the correctness of every test item (`item_string`: 0 and 1, or
    pass@1 estimates from samples, in item order, for the item-level statistics) and the score on the
    first ``n_fit`` train items.
    """
    models = job.models.load()
    pair = models.pair(job.teacher, job.student)
    splits = models.tasks[job.family]
    test = _first(splits["test"], job.n_test)
    model = transfer_model(job.method, pair.teacher, pair.student, models.tokenizer, splits, job.family, job.config,
                           TargetCache(Path(job.cache_dir) / "targets", pair.key), test, job.evaluation)
    result = evaluate_family(model, models.tokenizer, job.family, test, **job.evaluation)
    train_score = (evaluate_family(model, models.tokenizer, job.family, _first(splits["train"], job.n_fit),
                                   **job.evaluation).score if job.n_fit else None)
    record = {"metric": result.metric, "score": result.score, "train_score": train_score,
              "correct": item_string(result.correct)}
    with atomic_write(Path(job.path), checksum=True) as tmp:
        tmp.write_text(json.dumps(record))
    return job


def _first(split: Dataset, n: int | None) -> Dataset:
    """The first ``n`` items of a split (all of them for None), refusing more than it has."""
    if n is None:
        return split
    if n > len(split):
        raise ValueError(f"asked for {n} items of a split of {len(split)}: lower n_test / n_fit or enlarge the world")
    return split.select(range(n))


def run_jobs(jobs: Sequence[Job], executor: Executor | None = None, desc: str = "transfer runs") -> pd.DataFrame:
    """Execute the jobs whose record is missing (or corrupt), then one tidy row per job, in the jobs' order."""
    missing = list({job.path: job for job in jobs if not verified(Path(job.path))}.values())  # a run once
    executor = executor or Executor()
    for _ in progress_bar(executor.map_unordered(execute, missing), total=len(missing), desc=desc, unit="run"):
        pass
    return pd.DataFrame([job.row() for job in jobs], columns=list(ROWS))


def run_grid(models: ModelSet, teacher: str, methods: Sequence[str], families: Sequence[str],
             seeds: Sequence[int], config: TransferConfig, cache_dir: Path, evaluation: dict,
             n_test: int | None = None, executor: Executor | None = None, n_fit: int = 0) -> pd.DataFrame:
    """Scores of every (method, family, seed) from ``teacher`` to the student, one tidy row each."""
    jobs = grid_jobs(models, teacher, methods, families, seeds, config, cache_dir, evaluation, n_test, n_fit)
    return run_jobs(jobs, executor)


ABLATION_FACTORS = ("basis", "pairing", "site", "layer_loss", "output_loss", "n_trained_layers", "n_train",
                    "lora_rank")


def ablation_variant(base: TransferConfig, factor: str, level: str | int) -> tuple[str, TransferConfig]:
    """(method, config) for one level of one factor; everything else stays at the base configuration.

    ``n_trained_layers: all`` runs SemAlign v2's frontier schedule over every student layer; every other
    level runs v1 with the factor changed.
    """
    if factor not in ABLATION_FACTORS:
        raise ValueError(f"unknown ablation factor {factor!r}; choose from {', '.join(ABLATION_FACTORS)}")
    if factor == "n_trained_layers":
        if level == "all":
            return "semalign_v2", replace(base, layer_loss="cosine", output_loss="cosine_onehot")
        return "semalign_v1", replace(base, n_trained_layers=int(level))
    if factor == "lora_rank":
        return "semalign_v1", replace(base, lora=replace(base.lora, rank=int(level), alpha=int(level)))
    if factor == "n_train":
        return "semalign_v1", replace(base, n_train=int(level))
    return "semalign_v1", replace(base, **{factor: level})


def run_ablations(models: ModelSet, teacher: str, ablations: dict[str, list], families: Sequence[str],
                  seeds: Sequence[int], base: TransferConfig, cache_dir: Path, evaluation: dict,
                  n_test: int | None = None, executor: Executor | None = None) -> pd.DataFrame:
    """One row per (factor, level, task, seed) with the score of the varied SemAlign run.

    Every level's runs go to the executor at once, so workers stay busy across levels.
    """
    levels = [(factor, level, *ablation_variant(base, factor, level))
              for factor, factor_levels in ablations.items() for level in factor_levels]
    jobs = {(factor, level): grid_jobs(models, teacher, [method], families, seeds, config, cache_dir, evaluation,
                                       n_test)
            for factor, level, method, config in levels}
    table = run_jobs([job for level_jobs in jobs.values() for job in level_jobs], executor, desc="ablation runs")
    labels = [(factor, str(level)) for (factor, level), level_jobs in jobs.items() for _ in level_jobs]
    table = table.assign(factor=[f for f, _ in labels], level=[lv for _, lv in labels])
    return table[["factor", "level", "method", "task", "seed", "metric", "score"]]
