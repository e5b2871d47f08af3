"""What a model answers: its pick among the choices, or its greedy continuation of each context."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lsa_utils.models import arch
from lsa_utils.models.batches import encode_context, left_padded, pad_id
from lsa_utils.tasks.prompts import evaluation_context


def _first_continuation_token(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> int:
    """The id of the first token the continuation adds after the context (tokenizer-agnostic)."""
    base = tokenizer(context, add_special_tokens=False)["input_ids"]
    full = tokenizer(f"{context} {continuation}", add_special_tokens=False)["input_ids"]
    if full[: len(base)] != base or len(full) == len(base):
        raise ValueError(f"choice {continuation!r} does not start a new token after {context[-30:]!r}")
    return full[len(base)]


def _encoded(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, contexts: Sequence[str]) -> dict:
    """Left-padded model inputs of ``contexts``, encoded as training encodes them, on the model's input device."""
    rows = [encode_context(tokenizer, context) for context in contexts]
    device = arch.input_device(model)
    return {name: t.to(device) for name, t in left_padded(rows, pad_id(tokenizer)).items()}


@torch.no_grad()
def choose_options(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: Dataset,
                   batch_size: int = 64) -> list[int]:
    """Index of the highest-scoring choice per item (next-token logits after the answer prefix)."""
    contexts = [evaluation_context(row) for row in dataset]
    picks: list[int] = []
    for start in range(0, len(contexts), batch_size):
        batch = contexts[start:start + batch_size]
        logits = model(**_encoded(model, tokenizer, batch)).logits[:, -1]  # [batch, vocab]: every row's last token
        for row, context, item in zip(logits, batch, dataset.select(range(start, start + len(batch)))):
            ids = [_first_continuation_token(tokenizer, context, c) for c in item["choices"]]
            picks.append(int(row[ids].argmax()))
    return picks


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, contexts: Sequence[str],
             max_new_tokens: int, batch_size: int = 64) -> list[str]:
    """Greedy continuations of each context, decoded without special tokens (any tokenizer padding side)."""
    outputs: list[str] = []
    for start in range(0, len(contexts), batch_size):
        enc = _encoded(model, tokenizer, contexts[start:start + batch_size])
        enc.pop("position_ids")  # generation derives them from the mask, step by step
        new = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=pad_id(tokenizer), eos_token_id=tokenizer.eos_token_id)
        outputs += tokenizer.batch_decode(new[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return outputs
