"""`make world-seeds`: does the built-in world meet its design targets on other seeds, and how much does the zoo vary?

Notebook 00 checks its targets (teacher - student gap, student above chance, code teacher gain) on the
profile's one world. This trains the whole zoo again on other world seeds with everything else of the
profile unchanged, scores it as notebook 00 does, and writes one row per (seed, check), so a reader
sees whether the targets are a property of the world's design or of one lucky seed:

    python -m lsa_utils.study.world_seeds --profile cpu --seeds 0 1 2

writes ``results/tables/world_seeds.csv`` (scores) and ``results/tables/world_seed_checks.csv``. The
report reads them when they exist. Each seed's zoo is cached like notebook 00's (the seed is part of its
key), so seed 0 costs nothing after `make reproduce`.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lsa_utils.evaluation.scoring import score_models
from lsa_utils.infra.device import resolve_device
from lsa_utils.infra.outputs import save_table
from lsa_utils.infra.paths import PARAMS_DIR, REPO_ROOT, RESULTS_DIR
from lsa_utils.infra.profiles import load_profile, notebook_parameters
from lsa_utils.infra.progress import progress_bar
from lsa_utils.tasks.world.zoo import ZooConfig, gap_checks, load_zoo, model_key


def seed_zoo(zoo: dict, seed: int) -> dict:
    """The profile's zoo settings with another world seed."""
    settings = copy.deepcopy(zoo)
    settings.setdefault("world", {})["seed"] = seed
    return settings


def world_seed_tables(zoo: dict, seeds: Sequence[int], cache_dir: Path, evaluation: dict,
                      device: str = "auto") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, checks) of the zoo trained on each world seed, one row per (seed, model, task) / (seed, check)."""
    scores, checks = [], []
    for seed in progress_bar(seeds, desc="world seeds", unit="zoo"):
        config = ZooConfig.from_dict(seed_zoo(zoo, seed))
        world, models = load_zoo(config, cache_dir, resolve_device(device))
        keys = {name: model_key(config, name) for name in models}
        table, _ = score_models(models, world.tokenizer, world.tasks, "test", **evaluation, cache=cache_dir,
                                model_keys=keys)
        scores.append(table.assign(world_seed=seed))
        checks.append(gap_checks(table).assign(world_seed=seed))
    return pd.concat(scores, ignore_index=True), pd.concat(checks, ignore_index=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsa_utils.study.world_seeds", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", help=f"a profile in {PARAMS_DIR.name}/ [cpu]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="world seeds [0 1 2]")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache", help="[.cache/]")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="[results/]")
    args = parser.parse_args(argv)
    params = notebook_parameters(load_profile(args.profile), "00_world_and_models")
    scores, checks = world_seed_tables(params["zoo"], args.seeds, args.cache_dir, params["evaluation"])
    profile = Path(args.profile).stem
    save_table(scores.assign(profile=profile), args.results_dir / "tables" / "world_seeds.csv")
    save_table(checks.assign(profile=profile), args.results_dir / "tables" / "world_seed_checks.csv")
    print(checks.pivot_table(index=["task", "check"], columns="world_seed", values="value").round(1))
    print(f"targets met on every seed: {bool(checks['met'].all())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
