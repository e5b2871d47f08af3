"""The models every notebook studies, loaded one way: the tokenizer, the task splits and the named models.

Two sources, one result. The built-in world (a profile's ``zoo`` settings) trains its zoo on first use and
caches it; a hub / local pair (a profile's ``pair``: one `ModelSpec` per model, and ``benchmarks``: the task
splits) loads pinned checkpoints and checks the pair before anything runs. Either way the notebooks see a
`ModelSet` and pairs made from it, so nothing after this module knows where the models came from.

Example:
    >>> models = load_models(zoo={}, cache_dir="../.cache", device="auto")    # doctest: +SKIP
    >>> models = load_models({}, "../.cache", pair={"teacher": {"id": "Qwen/Qwen2.5-1.5B-Instruct"},
    ...                      "student": {"id": "Qwen/Qwen2.5-0.5B-Instruct"}}, benchmarks={"gsm8k": {}})
    >>> pair = models.pair("teacher")                                         # teacher -> student
    >>> models["student"], models.tokenizer, models.tasks["gsm8k"]["train"], models.items("align", 40)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from datasets import DatasetDict
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lsa_utils.infra.device import resolve_device
from lsa_utils.infra.records import SourceUnavailable, note_sources
from lsa_utils.models import arch
from lsa_utils.models.hub import ModelSpec, load_hub_models, looks_local
from lsa_utils.models.hub import check_available as check_model
from lsa_utils.tasks.benchmarks import load_benchmark, source_record
from lsa_utils.tasks.benchmarks import check_available as check_benchmark
from lsa_utils.tasks.spec import TaskItem
from lsa_utils.tasks.world.zoo import ZooConfig, describe_zoo, load_zoo, model_key, training_log, world_key

ROLES = ("teacher", "student")  # every source names these two; any other model is a further (code) teacher


@dataclass(frozen=True)
class Pair:
    """A teacher / student pair and what identifies each model in cache keys and tables."""

    teacher_name: str
    student_name: str
    teacher: nn.Module
    student: nn.Module
    teacher_key: str  # any change of the teacher's weights must change it
    student_key: str

    @property
    def key(self) -> str:
        return f"{self.teacher_key}/{self.student_key}"

    def model_key(self, role: str) -> str:
        """The key of the ``teacher`` or the ``student`` alone."""
        return {"teacher": self.teacher_key, "student": self.student_key}[role]


@dataclass(frozen=True)
class ModelRecipe:
    """How to load a `ModelSet` again, in another process (a grid worker): small, hashable, picklable."""

    source: str  # JSON: {"zoo": {...}} or {"pair": {...}, "benchmarks": {...}}
    cache_dir: str  # absolute
    device: str  # as requested ("auto" honours LSA_DEVICE, which a GPU worker sets)

    def load(self) -> ModelSet:
        """The models, loaded once per process and recipe."""
        if self not in _LOADED:
            source = json.loads(self.source)
            load = _load_world if "zoo" in source else _load_pair
            _LOADED[self] = load(source, Path(self.cache_dir), resolve_device(self.device), self)
            note_sources(_LOADED[self].sources)
        return _LOADED[self]


@dataclass(frozen=True)
class ModelSet:
    """The tokenizer shared by every model, the task splits, and the models by name with their cache keys."""

    tokenizer: PreTrainedTokenizerBase
    tasks: dict[str, DatasetDict]
    models: dict[str, PreTrainedModel]
    keys: dict[str, str]  # model name -> what identifies its weights
    device: torch.device
    recipe: ModelRecipe
    sources: dict[str, Any]  # what run records state: model ids, revisions, dtypes, placements, data sets
    zoo: ZooConfig | None = None  # the built-in world's settings; None for hub / local models

    def __getitem__(self, name: str) -> PreTrainedModel:
        return self.models[name]

    @property
    def code_teachers(self) -> list[str]:
        """The further teachers (Table 2's code teachers): every model but the teacher and the student."""
        return [name for name in self.models if name not in ROLES]

    def items(self, split: str, n_per_task: int) -> list[TaskItem]:
        """The first ``n_per_task`` items of ``split`` of every task, task after task."""
        return [row for splits in self.tasks.values()
                for row in splits[split].select(range(min(n_per_task, len(splits[split]))))]

    def pair(self, teacher: str = "teacher", student: str = "student") -> Pair:
        """The pair that transfers from model ``teacher`` to model ``student``."""
        return Pair(teacher, student, self.models[teacher], self.models[student], self.keys[teacher],
                    self.keys[student])

    def describe(self, names: tuple[str, ...] = ROLES) -> str:
        """One line naming the device and each model's depth and width, e.g. for a notebook's first cell."""
        shapes = ", ".join(f"{name} {arch.n_layers(self.models[name])} x "
                           f"{arch.unwrap(self.models[name]).config.hidden_size}" for name in names)
        return f"on {self.device}: {shapes}"

    def table(self) -> pd.DataFrame:
        """One row per model: parameters, shape and vocabulary (and, for the world's zoo, its training)."""
        if self.zoo is not None:
            return describe_zoo(self.zoo, Path(self.recipe.cache_dir), self.models)
        return pd.DataFrame([{
            "model": name, "n_params": model.num_parameters(),
            "n_params_non_embedding": model.num_parameters() - model.get_input_embeddings().weight.numel(),
            "n_layers": arch.n_layers(model), "hidden_size": arch.unwrap(model).config.hidden_size,
            "vocab_size": model.get_input_embeddings().weight.shape[0],
            "dtype": str(model.dtype).removeprefix("torch."), "id": self.sources["models"][name]["id"]}
            for name, model in self.models.items()])

    def training_losses(self) -> dict[str, list[float]]:
        """The zoo's pretraining loss curves by model; empty for hub models, which were trained elsewhere."""
        if self.zoo is None:
            return {}
        return {name: training_log(self.zoo, Path(self.recipe.cache_dir), name)["losses"] for name in self.models}


_LOADED: dict[ModelRecipe, ModelSet] = {}


def _load_world(source: dict, cache_dir: Path, device: torch.device, recipe: ModelRecipe) -> ModelSet:
    config = ZooConfig.from_dict(source["zoo"])
    world, models = load_zoo(config, cache_dir, device)
    keys = {name: model_key(config, name) for name in models}
    sources = {"kind": "world", "world": world_key(config), "models": keys}
    return ModelSet(world.tokenizer, world.tasks, models, keys, device, recipe, sources, config)


def _load_pair(source: dict, cache_dir: Path, device: torch.device, recipe: ModelRecipe) -> ModelSet:
    specs = {name: ModelSpec.from_dict(params) for name, params in source["pair"].items()}
    tasks, data = {}, {}
    for name, options in source["benchmarks"].items():  # the data first: cheaper to find missing than a model
        tasks[name] = load_benchmark(name, **options)
        data[name] = source_record(name, tasks[name], options.get("revision"), options.get("data_files"))
    tokenizer, models, records = load_hub_models(specs, device)
    keys = {name: record["key"] for name, record in records.items()}
    sources = {"kind": "pair", "models": records, "benchmarks": data}
    return ModelSet(tokenizer, tasks, models, keys, device, recipe, sources)


def model_source(zoo: Mapping[str, Any] | None = None, pair: Mapping[str, Any] | None = None,
                 benchmarks: Mapping[str, Any] | None = None, base: Path | None = None) -> dict[str, Any]:
    """The one model source a profile names: the world's ``zoo``, or a hub / local ``pair`` with its
    ``benchmarks``. Local paths, relative to ``base`` (the notebooks' folder, where they run), are made
    absolute, so that workers in other folders find them too."""
    if not pair:
        return {"zoo": dict(zoo or {})}
    if zoo:
        raise ValueError("a profile names one model source: set either zoo (the built-in world) or pair "
                         "(hub / local models), not both")
    if not benchmarks:
        raise ValueError("a hub / local pair needs benchmarks, e.g. benchmarks: {gsm8k: {}, mmlu: {}}")
    base = base or Path.cwd()
    return {"pair": {name: _absolute_id(dict(params), base) for name, params in pair.items()},
            "benchmarks": {name: _absolute_files(dict(options or {}), base) for name, options in benchmarks.items()}}


def _absolute_id(params: dict, base: Path) -> dict:
    """A model's ``id``: a folder relative to ``base`` made absolute; a hub id (``org/name``) as it is."""
    id_or_path = params.get("id")
    if id_or_path:  # a missing id is ModelSpec's error to name
        path = base / Path(id_or_path).expanduser()
        if looks_local(id_or_path) or path.is_dir():
            params["id"] = str(path.resolve())
    return params


def _absolute_files(options: dict, base: Path) -> dict:
    if "data_files" in options:
        options["data_files"] = {part: str((base / path).resolve()) for part, path in options["data_files"].items()}
    return options


def check_sources(parameters: Mapping[str, Any], base: Path) -> None:
    """Before any notebook runs: raise one `SourceUnavailable` listing every model and benchmark of the
    profile that is neither local, cached nor reachable, then each way to provide them (the built-in world
    is always available)."""
    source = model_source(parameters.get("zoo"), parameters.get("pair"), parameters.get("benchmarks"), base)
    if "zoo" in source:
        return
    problems = [_problem(lambda: check_benchmark(name, **options)) for name, options in source["benchmarks"].items()]
    problems += [_problem(lambda: check_model(ModelSpec.from_dict(spec))) for spec in source["pair"].values()]
    problems = [problem for problem in problems if problem is not None]
    if problems:
        missing = "\n".join(f"  - {problem.what}" for problem in problems)
        hows = "\n".join(dict.fromkeys(problem.how for problem in problems if problem.how))
        raise SourceUnavailable(f"missing:\n{missing}\n{hows}")


def load_models(zoo: Mapping[str, Any] | None, cache_dir: str | Path, device: str = "auto", *,
                pair: Mapping[str, Any] | None = None, benchmarks: Mapping[str, Any] | None = None) -> ModelSet:
    """The models a profile names (see `model_source`): the world's student, teacher and code teacher,
    trained on first use, or the hub / local ``pair`` on the ``benchmarks``' splits.

    A second call with the same settings in the same process returns the models already loaded.
    """
    source = json.dumps(model_source(zoo, pair, benchmarks))  # in the profile's order: tasks, then models
    return ModelRecipe(source, str(Path(cache_dir).resolve()), device).load()


def _problem(check: Callable[[], None]) -> SourceUnavailable | None:
    """What ``check`` found unavailable, or None."""
    try:
        check()
    except SourceUnavailable as error:
        return error
    return None
