"""The notebooks' parameters, typed by the settings they become and the registries that name the choices.

`PARAMETER_TYPES` types every parameter a study notebook declares. Nested settings are derived from what
consumes them (`ZooConfig`, `TransferConfig` with its `TrainSpec` and `LoraSpec`, `ModelSpec`, the keywords
of `load_benchmark` and `evaluate_family`), so a field added there is checked here without an edit; every
choice (method, control, task, benchmark, site, basis, pairing, loss, schedule, projection, executor, dtype)
is its registry's. `check_profile` is what the runner calls before papermill starts (`python -m lsa_utils`
hands it over, as the infra stage may not import this one): one `ProfileError`, a line per problem.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator
from pydantic_core import PydanticCustomError

from lsa_utils.evaluation.generation import check_sampling
from lsa_utils.evaluation.scoring import evaluate_family, score_models
from lsa_utils.infra.schema import (
    Location, choice, dataclass_model, field_type, mapping_model, signature_model, validate_profile,
)
from lsa_utils.models.arch import PROJECTIONS
from lsa_utils.models.capture import SITES
from lsa_utils.models.hub import DTYPES, ModelSpec
from lsa_utils.models.loading import ROLES, model_source
from lsa_utils.semalign import BASIS_KINDS, PAIRINGS
from lsa_utils.semalign.losses import LAYER_LOSSES, OUTPUT_LOSSES
from lsa_utils.study.executors import EXECUTORS
from lsa_utils.study.grid import ABLATION_FACTORS
from lsa_utils.study.methods import BASES, CONTROLS, METHODS, TransferConfig
from lsa_utils.tasks.benchmarks import BENCHMARKS, load_benchmark
from lsa_utils.tasks.spec import TASKS, WORLD_TASKS
from lsa_utils.tasks.world.zoo import ZooConfig
from lsa_utils.training.trainer import SCHEDULES


def _layer_count(value: Any) -> Any:
    """A level of ``n_trained_layers``: how many layers v1 trains, or ``all`` (v2's frontier over every one)."""
    if value == "all" or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise PydanticCustomError("choice", "{value} is not a number of layers or 'all'", {"value": repr(value)})


Site = choice("site", SITES)
Task = choice("task", TASKS)
TRANSFER = dataclass_model(TransferConfig, {
    "train": {"schedule": choice("schedule", SCHEDULES)},
    "lora": {"modules": tuple[choice("projection", PROJECTIONS), ...]},
    "basis": choice("basis", BASES), "pairing": choice("pairing", PAIRINGS), "site": Site,
    "layer_loss": choice("layer loss", LAYER_LOSSES) | None, "output_loss": choice("output loss", OUTPUT_LOSSES) | None,
})
# A factor's levels are values of the TransferConfig field it varies, except where `ablation_variant` reads
# them otherwise.
_LEVELS = {"n_trained_layers": Annotated[Any, PlainValidator(_layer_count)], "n_train": int, "lora_rank": int}
ABLATIONS = mapping_model("ablations", {factor: list[_LEVELS.get(factor) or field_type(TRANSFER, factor)]
                                        for factor in ABLATION_FACTORS})
EVALUATION = signature_model("evaluation", evaluate_family, score_models)  # notebook 00 scores, the grid too
PARAMETER_TYPES: dict[str, Any] = {
    "profile": str, "device": str, "results_dir": str, "cache_dir": str,
    "zoo": dataclass_model(ZooConfig),
    "pair": dict[str, dataclass_model(ModelSpec, {"dtype": choice("dtype", ("auto", *DTYPES))})],
    "benchmarks": dict[choice("benchmark", BENCHMARKS), signature_model("benchmark", load_benchmark) | None],
    "evaluation": EVALUATION, "transfer": TRANSFER, "ablations": ABLATIONS,
    "methods": list[choice("method", METHODS)], "controls": list[choice("control", CONTROLS)],
    "families": list[Task], "code_families": list[Task], "seeds": list[int], "world_seeds": list[int],
    "n_test": int | None, "n_fit": int, "n_show": int, "n_items": int, "n_seed_examples": int, "n_critical": int,
    "basis_kinds": list[choice("basis", BASIS_KINDS)], "sites": list[Site], "cka_site": Site,
    "executor": choice("executor", EXECUTORS), "executor_options": dict[str, Any],
}


def check_profile(profile: Mapping[str, Mapping[str, Any]], notebooks_dir: Path, name: str) -> None:
    """Raise `ProfileError` naming every problem of ``profile`` (file ``name``) for the notebooks in
    ``notebooks_dir``: types, unknown keys at any depth, unknown choices, and `consistency`."""
    validate_profile(profile, notebooks_dir, PARAMETER_TYPES, name, consistency)


def consistency(parameters: Mapping[str, Any]) -> Iterator[tuple[Location, str]]:
    """What no single value shows: one model source, a pair with both roles, tasks that its models have,
    sampling settings that mean what they say."""
    pair = parameters.get("pair") or {}
    try:
        model_source(parameters.get("zoo"), pair, parameters.get("benchmarks"))
    except ValueError as error:
        yield ("pair",), str(error)
    if pair and (missing := [role for role in ROLES if role not in pair]):
        yield ("pair",), (f"names no {' or '.join(missing)}; a pair needs {' and '.join(ROLES)} (any further "
                          "model is a code teacher)")
    tasks = list(parameters.get("benchmarks") or {}) if pair else list(WORLD_TASKS)
    for key in ("families", "code_families"):
        for index, family in enumerate(parameters.get(key) or ()):
            if family not in tasks:
                yield (key, index), f"{family!r} is not a task of this profile's models; valid: {', '.join(tasks)}"
    if "evaluation" in parameters:
        defaults = {p.name: p.default for p in inspect.signature(evaluate_family).parameters.values()}
        settings = {**defaults, **parameters["evaluation"]}
        try:
            check_sampling(settings["n_samples"], settings["temperature"])
        except ValueError as error:
            yield ("evaluation",), str(error)
