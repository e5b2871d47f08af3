"""How much does the built-in world's zoo vary with the world seed, and do its design targets hold on each?

Notebook 00 checks its targets (teacher - student gap, student above chance, code teacher gain) on the
profile's one world. `world_seed_tables` trains the whole zoo again on other world seeds with everything
else of the profile unchanged, scores it as notebook 00 does, and returns one row per (seed, model, task)
and per (seed, check), so a reader sees whether the targets are a property of the world's design or of
one lucky seed. Notebook 00 runs it on its ``world_seeds`` parameter and the report shows the spread.

Each seed's zoo trains in its own worker when an executor is given (on CPU one single-thread worker per
core: a zoo trains the same with one thread as with two) and is cached like notebook 00's (the seed is
part of its key), so the study's own seed costs nothing after notebook 00 trained it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lsa_utils.evaluation.scoring import score_models
from lsa_utils.infra.device import resolve_device
from lsa_utils.infra.progress import progress_bar
from lsa_utils.study.executors import Executor
from lsa_utils.tasks.world.zoo import ZooConfig, gap_checks, load_zoo, model_key


def seed_zoo(zoo: dict, seed: int) -> dict:
    """The profile's zoo settings with another world seed."""
    settings = copy.deepcopy(zoo)
    settings.setdefault("world", {})["seed"] = seed
    return settings


@dataclass(frozen=True)
class SeedJob:
    """One world seed's zoo: train (or load) it and score it on the test splits (picklable, for workers)."""

    zoo: dict
    seed: int
    cache_dir: Path
    evaluation: dict
    device: str = "auto"


def score_seed(job: SeedJob) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, checks) of one world seed's zoo, each with a ``world_seed`` column."""
    config = ZooConfig.from_dict(seed_zoo(job.zoo, job.seed))
    world, models = load_zoo(config, job.cache_dir, resolve_device(job.device))
    keys = {name: model_key(config, name) for name in models}
    table, _ = score_models(models, world.tokenizer, world.tasks, "test", **job.evaluation, cache=job.cache_dir,
                            model_keys=keys)
    return table.assign(world_seed=job.seed), gap_checks(table).assign(world_seed=job.seed)


def world_seed_tables(zoo: dict, seeds: Sequence[int], cache_dir: Path, evaluation: dict, device: str = "auto",
                      executor: Executor | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, checks) of the zoo trained on each world seed, one row per (seed, model, task) / (seed, check),
    in seed order whichever worker finished first."""
    jobs = [SeedJob(zoo, seed, Path(cache_dir), evaluation, device) for seed in seeds]
    results = list(progress_bar((executor or Executor()).map_unordered(score_seed, jobs), total=len(jobs),
                                desc="world seeds", unit="zoo"))
    scores, checks = (pd.concat(frames, ignore_index=True).sort_values("world_seed", kind="stable", ignore_index=True)
                      for frames in zip(*results))
    return scores, checks
