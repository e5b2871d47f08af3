"""The built-in offline world: a seeded synthetic universe, its tokenizer, corpus, task items and model zoo.

Everything here is deterministic in `WorldConfig`: the same config always yields the same entities,
corpus, tokenizer and splits, so model checkpoints trained on it can be cached by the config's key.
The zoo (`lsa_utils.tasks.world.zoo`) trains the world's student, teacher and code teacher.
"""

from lsa_utils.tasks.world.corpus import CorpusMix, pretraining_documents
from lsa_utils.tasks.world.items import build_task_splits
from lsa_utils.tasks.world.knowledge import World, WorldConfig, build_world
from lsa_utils.tasks.world.tokenizer import build_tokenizer

__all__ = [
    "CorpusMix",
    "World",
    "WorldConfig",
    "build_task_splits",
    "build_tokenizer",
    "build_world",
    "pretraining_documents",
]
