"""What a model answers: its pick among the choices, or its greedy continuation of each context."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lsa_utils.tasks.prompts import evaluation_context


def _first_continuation_token(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> int:
    """The id of the first token the continuation adds after the context (tokenizer-agnostic)."""
    base = tokenizer(context, add_special_tokens=False)["input_ids"]
    full = tokenizer(f"{context} {continuation}", add_special_tokens=False)["input_ids"]
    if full[: len(base)] != base or len(full) == len(base):
        raise ValueError(f"choice {continuation!r} does not start a new token after {context[-30:]!r}")
    return full[len(base)]


@torch.no_grad()
def choose_options(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: Dataset,
                   batch_size: int = 64) -> list[int]:
    """Index of the highest-scoring choice per item (next-token logits after the answer prefix)."""
    contexts = [evaluation_context(row) for row in dataset]
    picks: list[int] = []
    for start in range(0, len(contexts), batch_size):
        batch = contexts[start:start + batch_size]
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        logits = model(**enc).logits[:, -1]  # [batch, vocab]; left padding puts the last token at -1
        for row, context, item in zip(logits, batch, dataset.select(range(start, start + len(batch)))):
            ids = [_first_continuation_token(tokenizer, context, c) for c in item["choices"]]
            picks.append(int(row[ids].argmax()))
    return picks


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, contexts: Sequence[str],
             max_new_tokens: int, batch_size: int = 64) -> list[str]:
    """Greedy continuations of each context, decoded without special tokens."""
    if tokenizer.padding_side != "left":
        raise ValueError("generation needs tokenizer.padding_side == 'left'")
    outputs: list[str] = []
    for start in range(0, len(contexts), batch_size):
        enc = tokenizer(list(contexts[start:start + batch_size]), return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        new = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        outputs += tokenizer.batch_decode(new[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return outputs
