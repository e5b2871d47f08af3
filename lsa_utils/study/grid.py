"""The transfer study's grid: methods x tasks x seeds, each run cached by a key of everything it depends on.

A run trains (or loads) nothing but the transferred student and stores only its scores, so re-running a
notebook with nothing changed reads JSON files; a changed knob recomputes only the runs it touches.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from itertools import product
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from lsa_utils.evaluation.scoring import evaluate_family
from lsa_utils.infra.cache import atomic_write, config_key
from lsa_utils.models.loading import Pair
from lsa_utils.study.methods import TargetCache, TransferConfig, transfer_model
from lsa_utils.study.stats import UNTRAINED

RUN_FORMAT = 1  # bump when a change of the methods or the evaluator changes results, so old runs are not reused


def run_grid(pair: Pair, tokenizer: PreTrainedTokenizerBase, tasks: dict, methods: Sequence[str],
             families: Sequence[str], seeds: Sequence[int], config: TransferConfig, cache_dir: Path,
             evaluation: dict, n_test: int | None = None) -> pd.DataFrame:
    """Scores of every (method, family, seed), one tidy row each; untouched models run once (seed 0)."""
    runs = [(m, f, s) for m, f, s in product(methods, families, seeds) if m not in UNTRAINED or s == seeds[0]]
    rows = []
    for method, family, seed in tqdm(runs, desc="transfer runs", unit="run"):
        seeded = replace(config, train=replace(config.train, seed=seed))
        key = config_key({"format": RUN_FORMAT, "pair": pair.key, "method": method, "family": family, "seed": seed,
                          "n_test": n_test, "evaluation": evaluation,
                          "config": asdict(seeded) if method not in UNTRAINED else None})
        path = Path(cache_dir) / "transfer" / f"{method}-{family}-{key}.json"
        if not path.exists():
            test = tasks[family]["test"]
            test = test.select(range(min(n_test, len(test)))) if n_test else test
            model = transfer_model(method, pair.teacher, pair.student, tokenizer, tasks[family], family, seeded,
                                   TargetCache(Path(cache_dir) / "targets", pair.key))
            result = evaluate_family(model, tokenizer, family, test, **evaluation)
            with atomic_write(path) as tmp:
                tmp.write_text(json.dumps({"metric": result.metric, "score": result.score}))
        record = json.loads(path.read_text())
        rows.append({"teacher": pair.teacher_name, "student": pair.student_name, "task": family, "method": method,
                     "seed": seed, "metric": record["metric"], "score": record["score"]})
    return pd.DataFrame(rows)


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


def run_ablations(pair: Pair, tokenizer: PreTrainedTokenizerBase, tasks: dict, ablations: dict[str, list],
                  families: Sequence[str], seeds: Sequence[int], base: TransferConfig, cache_dir: Path,
                  evaluation: dict, n_test: int | None = None) -> pd.DataFrame:
    """One row per (factor, level, task, seed) with the score of the varied SemAlign run."""
    frames = []
    for factor, levels in ablations.items():
        for level in levels:
            method, config = ablation_variant(base, factor, level)
            runs = run_grid(pair, tokenizer, tasks, [method], families, seeds, config, cache_dir, evaluation, n_test)
            frames.append(runs.assign(factor=factor, level=str(level)))
    table = pd.concat(frames, ignore_index=True)
    return table[["factor", "level", "method", "task", "seed", "metric", "score"]]
