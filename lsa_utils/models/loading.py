"""The models every notebook studies, loaded one way: the tokenizer, the task splits and the named models.

Today the source is the built-in world's zoo (trained on first use, then cached); whatever the source,
the notebooks see a `ModelSet` and pairs made from it, so nothing after this module knows where the
models came from.

Example:
    >>> models = load_models(zoo={}, cache_dir="../.cache", device="auto")    # doctest: +SKIP
    >>> pair = models.pair("teacher")                                         # teacher -> student
    >>> models["student"], models.tokenizer, models.tasks["facts"]["train"], models.items("align", 40)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lsa_utils.infra.device import resolve_device
from lsa_utils.models import arch
from lsa_utils.tasks.spec import TaskItem
from lsa_utils.tasks.world.zoo import ZooConfig, load_zoo, model_key


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

    zoo: str  # the profile's zoo settings as canonical JSON
    cache_dir: str  # absolute
    device: str  # as requested ("auto" honours LSA_DEVICE, which a GPU worker sets)

    def load(self) -> ModelSet:
        """The models, loaded once per process and recipe."""
        if self not in _LOADED:
            config = ZooConfig.from_dict(json.loads(self.zoo))
            torch_device = resolve_device(self.device)
            world, models = load_zoo(config, Path(self.cache_dir), torch_device)
            keys = {name: model_key(config, name) for name in models}
            _LOADED[self] = ModelSet(world.tokenizer, world.tasks, models, keys, torch_device, self)
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

    def __getitem__(self, name: str) -> PreTrainedModel:
        return self.models[name]

    def items(self, split: str, n_per_task: int) -> list[TaskItem]:
        """The first ``n_per_task`` items of ``split`` of every task, task after task."""
        return [row for splits in self.tasks.values()
                for row in splits[split].select(range(min(n_per_task, len(splits[split]))))]

    def pair(self, teacher: str = "teacher", student: str = "student") -> Pair:
        """The pair that transfers from model ``teacher`` to model ``student``."""
        return Pair(teacher, student, self.models[teacher], self.models[student], self.keys[teacher],
                    self.keys[student])

    def describe(self, names: tuple[str, ...] = ("teacher", "student")) -> str:
        """One line naming the device and each model's depth and width, e.g. for a notebook's first cell."""
        shapes = ", ".join(f"{name} {arch.n_layers(self.models[name])} x "
                           f"{arch.unwrap(self.models[name]).config.hidden_size}" for name in names)
        return f"on {self.device}: {shapes}"


_LOADED: dict[ModelRecipe, ModelSet] = {}


def load_models(zoo: Mapping[str, Any], cache_dir: str | Path, device: str = "auto") -> ModelSet:
    """The built-in world's student, teacher and code teacher (``zoo``: a profile's zoo settings).

    Training whatever the cache lacks; a second call with the same settings in the same process returns
    the models already loaded.
    """
    return ModelRecipe(json.dumps(dict(zoo), sort_keys=True), str(Path(cache_dir).resolve()), device).load()
