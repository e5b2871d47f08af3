"""The files the `real-smoke` profile points at: a tiny random Qwen2 teacher, student and code teacher with a
byte-level BPE tokenizer (saved with save_pretrained, as a hub checkpoint is), and a handful of made-up rows
of each benchmark in its own schema. Nothing is downloaded; the scores of these models mean nothing.

    python tests/real_smoke.py .cache/real-smoke     # what `make real-smoke` does before running the notebooks
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_rows import FIXTURES, write_parts  # noqa: E402

# (layers, width, extra embedding rows beyond the tokenizer, seed): rows padded as Qwen2.5's checkpoints are
SHAPES = {"student": (2, 16, 8, 0), "teacher": (3, 24, 24, 1), "code_teacher": (3, 24, 24, 2)}


def _tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer that pads on the right and adds no BOS, as Qwen's does."""
    backend = ByteLevelBPETokenizer()
    backend.train_from_iterator(texts, vocab_size=600, min_frequency=1,
                                special_tokens=["<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>"])
    return PreTrainedTokenizerFast(tokenizer_object=backend._tokenizer, eos_token="<|endoftext|>",
                                   pad_token="<|pad|>", padding_side="right")


def _model(tokenizer: PreTrainedTokenizerFast, n_layers: int, hidden: int, extra_rows: int,
           seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer) + extra_rows, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=n_layers, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=False,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Qwen2ForCausalLM(config).eval()


def build(root: Path) -> dict[str, Path]:
    """Write the models under ``root/models/<name>`` and the benchmarks under ``root/data/<benchmark>/``."""
    parts = {name: make() for name, make in FIXTURES.items()}
    for name, rows in parts.items():
        write_parts(_folder(root / "data" / name), rows)
    texts = [str(value) for rows in parts.values() for part in rows.values() for row in part for value in row.values()]
    tokenizer = _tokenizer(texts)
    folders = {}
    for name, shape in SHAPES.items():
        folders[name] = _folder(root / "models" / name)
        _model(tokenizer, *shape).save_pretrained(folders[name])
        tokenizer.save_pretrained(folders[name])
    return folders


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    build(Path(sys.argv[1]))
