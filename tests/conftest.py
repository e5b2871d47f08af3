"""Shared test setup: the suite never touches the network, so the HF libraries are told so up front."""

import os

# Set at import, before any test module imports transformers or datasets (they read these once).
os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})

import lsa_utils  # noqa: E402,F401  (pins the numerical environment before torch computes anything)
from lsa_utils.infra.numerics import configure_torch  # noqa: E402

configure_torch()  # deterministic algorithms and the pinned thread count, as in every process of the study
import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM,
)

TINY_FAMILIES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
                 "mistral": (MistralConfig, MistralForCausalLM)}


@pytest.fixture(scope="session")
def tiny_task():
    """A small world's tokenizer and a dozen `facts` and `arith` items (prompt + response)."""
    from lsa_utils.tasks.world import CorpusMix, WorldConfig, build_tokenizer, build_world, pretraining_documents
    from lsa_utils.tasks.world.items import split_items

    world = build_world(WorldConfig(seed=1, n_entities=40, n_items=40, n_functions=20, split_scale=0.02))
    items = [row for family in ("facts", "arith") for row in split_items(world, family, seed=0)["test"]][:12]
    docs = list(pretraining_documents(world, CorpusMix(), 3_000, seed=0, split_seed=0))
    tokenizer = build_tokenizer(docs + [f"{r['prompt']} {r['response']}" for r in items])
    return tokenizer, items


@pytest.fixture(scope="session")
def make_tiny():
    """Factory of tiny random causal LMs built from a config (no downloads)."""
    def make(vocab_size: int, n_layers: int = 3, hidden: int = 16, family: str = "llama", seed: int = 0):
        config_class, model_class = TINY_FAMILIES[family]
        torch.manual_seed(seed)
        config = config_class(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                              num_hidden_layers=n_layers, num_attention_heads=2, num_key_value_heads=2,
                              max_position_embeddings=256, tie_word_embeddings=False)
        return model_class(config).eval()
    return make


@pytest.fixture(scope="session")
def make_pair(make_tiny):
    """Factory of a tiny (student 2 x 16, teacher 3 x 24) pair and its output-basis alignment map M."""
    from lsa_utils.semalign import pair_alignment_map

    def make(vocab_size: int, family: str = "llama"):
        student = make_tiny(vocab_size, n_layers=2, hidden=16, family=family, seed=0)
        teacher = make_tiny(vocab_size, n_layers=3, hidden=24, family=family, seed=1)
        return student, teacher, pair_alignment_map(teacher, student)
    return make


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory):
    """Every notebook run once, in order, on the smoke profile into a throw-away results folder with its own
    cache, through the same runner as `make reproduce`; shared by the tests that read executed notebooks."""
    from lsa_utils.infra.paths import NOTEBOOKS_DIR
    from lsa_utils.infra.runner import run_notebook

    root = tmp_path_factory.mktemp("smoke")
    for notebook in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        run_notebook(notebook, "smoke", results_dir=root / "results", device="cpu",
                     overrides={"cache_dir": str(root / "cache")})
    return root / "results"
