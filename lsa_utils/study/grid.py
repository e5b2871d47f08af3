"""The transfer study's grid: methods x tasks x seeds, each run cached by a key of everything it depends on.

A run trains (or loads) nothing but the transferred student and stores only its scores, so re-running a
notebook with nothing changed reads JSON files; a changed knob recomputes only the runs it touches. The
runs that are missing go to an executor (`lsa_utils.study.executors`) as picklable `Job`s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from itertools import product
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from lsa_utils.evaluation.scoring import evaluate_family
from lsa_utils.infra.cache import atomic_write, config_key
from lsa_utils.models.loading import ModelRecipe, ModelSet
from lsa_utils.study.executors import Executor
from lsa_utils.study.methods import TargetCache, TransferConfig, transfer_model
from lsa_utils.study.stats import UNTRAINED

RUN_FORMAT = 1  # bump when a change of the methods or the evaluator changes results, so old runs are not reused
ROWS = ("teacher", "student", "task", "method", "seed", "metric", "score")


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
    cache_dir: str
    path: str  # where the run's record is written

    def row(self) -> dict:
        """The run's row of the tidy table, read from its record."""
        record = json.loads(Path(self.path).read_text())
        return {"teacher": self.teacher, "student": self.student, "task": self.family, "method": self.method,
                "seed": self.seed, "metric": record["metric"], "score": record["score"]}


def grid_jobs(models: ModelSet, teacher: str, methods: Sequence[str], families: Sequence[str],
              seeds: Sequence[int], config: TransferConfig, cache_dir: Path, evaluation: dict,
              n_test: int | None = None, student: str = "student") -> list[Job]:
    """Every (method, family, seed) of the grid as a job; untouched models run once (the first seed).

    A run's cache key holds everything it depends on. An untouched model's run depends only on that
    model, so the student scored for Table 1 is reused for Table 2.
    """
    pair = models.pair(teacher, student)
    jobs = []
    for method, family, seed in product(methods, families, seeds):
        if method in UNTRAINED and seed != seeds[0]:
            continue
        seeded = replace(config, train=replace(config.train, seed=seed))
        source = {"pair": pair.key} if method not in UNTRAINED else {"model": pair.model_key(method)}
        key = config_key({"format": RUN_FORMAT, **source, "method": method, "family": family, "seed": seed,
                          "n_test": n_test, "evaluation": evaluation,
                          "config": asdict(seeded) if method not in UNTRAINED else None})
        path = Path(cache_dir).resolve() / "transfer" / f"{method}-{family}-{key}.json"
        jobs.append(Job(models.recipe, teacher, student, method, family, seed, seeded, dict(evaluation), n_test,
                        str(Path(cache_dir).resolve()), str(path)))
    return jobs


def execute(job: Job) -> Job:
    """Transfer and score one run, and write its record (atomically); the models load once per process."""
    models = job.models.load()
    pair = models.pair(job.teacher, job.student)
    splits = models.tasks[job.family]
    test = splits["test"].select(range(min(job.n_test, len(splits["test"])))) if job.n_test else splits["test"]
    model = transfer_model(job.method, pair.teacher, pair.student, models.tokenizer, splits, job.family, job.config,
                           TargetCache(Path(job.cache_dir) / "targets", pair.key))
    result = evaluate_family(model, models.tokenizer, job.family, test, **job.evaluation)
    with atomic_write(Path(job.path)) as tmp:
        tmp.write_text(json.dumps({"metric": result.metric, "score": result.score}))
    return job


def run_jobs(jobs: Sequence[Job], executor: Executor | None = None, desc: str = "transfer runs") -> pd.DataFrame:
    """Execute the jobs whose record is missing, then one tidy row per job, in the jobs' order."""
    missing = list({job.path: job for job in jobs if not Path(job.path).exists()}.values())  # a run once
    executor = executor or Executor()
    for _ in tqdm(executor.map_unordered(execute, missing), total=len(missing), desc=desc, unit="run"):
        pass
    return pd.DataFrame([job.row() for job in jobs], columns=list(ROWS))


def run_grid(models: ModelSet, teacher: str, methods: Sequence[str], families: Sequence[str],
             seeds: Sequence[int], config: TransferConfig, cache_dir: Path, evaluation: dict,
             n_test: int | None = None, executor: Executor | None = None) -> pd.DataFrame:
    """Scores of every (method, family, seed) from ``teacher`` to the student, one tidy row each."""
    jobs = grid_jobs(models, teacher, methods, families, seeds, config, cache_dir, evaluation, n_test)
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
