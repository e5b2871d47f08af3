"""The built-in offline world: a seeded synthetic universe, its tokenizer, corpus and task families.

Everything here is deterministic in `WorldConfig`: the same config always yields the same entities,
corpus, tokenizer and splits, so model checkpoints trained on it can be cached by the config's key.
"""

from lsa_utils.world.knowledge import World, WorldConfig, build_world
from lsa_utils.world.corpus import CorpusMix, pretraining_documents
from lsa_utils.world.tasks import FAMILIES, SPLIT_SIZES, build_task_splits
from lsa_utils.world.tokenizer import build_tokenizer

__all__ = [
    "FAMILIES",
    "SPLIT_SIZES",
    "CorpusMix",
    "World",
    "WorldConfig",
    "build_task_splits",
    "build_tokenizer",
    "build_world",
    "pretraining_documents",
]
