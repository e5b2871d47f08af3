"""What a model answers: its pick among the choices, or its continuation of each context (greedy, or
samples at a temperature)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lsa_utils.models import arch
from lsa_utils.models.batches import encode_context, left_padded, pad_id
from lsa_utils.tasks.prompts import evaluation_context


class NonFiniteModel(FloatingPointError):
    """A model to be scored holds NaN or infinite weights, or gives such logits: any score would be noise."""


def check_finite(model: PreTrainedModel) -> None:
    """Raise `NonFiniteModel` naming the first weight of ``model`` that holds NaN or inf values."""
    bad = next((name for name, p in model.named_parameters() if not torch.isfinite(p).all()), None)
    if bad is not None:
        raise NonFiniteModel(f"refusing to score a model whose weight {bad} holds NaN or inf values (a run "
                             "that diverged?)")


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
        if not torch.isfinite(logits).all():
            raise NonFiniteModel("refusing to score a model whose logits hold NaN or inf values")
        for row, context, item in zip(logits, batch, dataset.select(range(start, start + len(batch)))):
            ids = [_first_continuation_token(tokenizer, context, c) for c in item["choices"]]
            picks.append(int(row[ids].argmax()))
    return picks


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, contexts: Sequence[str],
             max_new_tokens: int, batch_size: int = 64, n_samples: int = 1, temperature: float = 0.0,
             seed: int = 0) -> list[str]:
    """Continuations of each context, decoded without special tokens (any tokenizer padding side): greedy
    at ``temperature`` 0, else ``n_samples`` samples per context (context after context), drawn from a
    generator seeded with ``seed`` so that a rerun draws the same ones."""
    check_sampling(n_samples, temperature)
    sampling = {"do_sample": True, "temperature": temperature, "num_return_sequences": n_samples} \
        if temperature > 0 else {"do_sample": False}
    outputs: list[str] = []
    devices = [arch.input_device(model)] if arch.input_device(model).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # sampling leaves the caller's random state alone
        torch.manual_seed(seed)
        for start in range(0, len(contexts), batch_size):
            enc = _encoded(model, tokenizer, contexts[start:start + batch_size])
            enc.pop("position_ids")  # generation derives them from the mask, step by step
            new = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=pad_id(tokenizer),
                                 eos_token_id=tokenizer.eos_token_id, **sampling)
            outputs += tokenizer.batch_decode(new[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return outputs


def check_sampling(n_samples: int, temperature: float) -> None:
    """Refuse settings that would not mean what they say (n greedy samples are one sample n times)."""
    if n_samples < 1 or temperature < 0:
        raise ValueError(f"n_samples must be >= 1 and temperature >= 0, got {n_samples} and {temperature}")
    if n_samples > 1 and temperature == 0:
        raise ValueError(f"n_samples={n_samples} at temperature 0 repeats one greedy answer: set a temperature "
                         "(docs/method.md section 4: 0.1 for pass@1 from samples) or n_samples: 1")
