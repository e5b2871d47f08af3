"""Task items as training batches: chat-formatted, right-padded, with a mask of response positions.

Every method (attribution, the transfer trainer, Seeking's sensitivities, LaTen's locating step) reads
batches from here, so all of them see the same tokens and the same loss positions.

Position ``t`` is a *response position* when the token at ``t + 1`` belongs to the response: the hidden
state at ``t`` is the one that predicts it. Losses on hidden states and on logits both use these
positions, and ``labels`` holds the next token there (``-100`` elsewhere), already shifted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from lsa_utils.tasks.prompts import chat_prompt
from lsa_utils.tasks.spec import TaskItem

IGNORE = -100


@dataclass
class Batch:
    input_ids: Tensor  # [batch, seq]
    attention_mask: Tensor  # [batch, seq], 1 on real tokens
    response_mask: Tensor  # [batch, seq] bool, True where the next token is a response token
    labels: Tensor  # [batch, seq], the next token at response positions, IGNORE elsewhere

    def map(self, fn: Callable[[Tensor], Tensor]) -> Batch:
        """The same batch with ``fn`` applied to every tensor (moving, slicing rows...)."""
        return Batch(fn(self.input_ids), fn(self.attention_mask), fn(self.response_mask), fn(self.labels))

    def to(self, device: torch.device | str) -> Batch:
        return self.map(lambda t: t.to(device))

    def model_inputs(self) -> dict[str, Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def fingerprint(self) -> str:
        """A short hash of the batch's tokens and labels, for cache keys of what is computed on it."""
        digest = hashlib.sha256()
        for tensor in (self.input_ids, self.attention_mask, self.labels):
            digest.update(tensor.cpu().numpy().tobytes())
        return digest.hexdigest()[:16]


def encode_context(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a context, the same in training and scoring: the tokenizer's BOS first when it adds one
    (Llama, Mistral), never an end-of-sequence token (some tokenizers append one)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    adds_bos = bos is not None and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [bos]
    return [bos, *ids] if adds_bos and ids[:1] != [bos] else ids


def left_padded(rows: Sequence[list[int]], pad_id: int) -> dict[str, Tensor]:
    """``input_ids``, ``attention_mask`` and ``position_ids`` [batch, seq] of left-padded rows.

    Column -1 holds every row's last token, and positions count real tokens only, so each row is scored
    as it would be alone, whatever padding side the tokenizer prefers.
    """
    width = max(len(ids) for ids in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention[row, width - len(ids):] = 1
    positions = (attention.cumsum(-1) - 1).clamp_min(0)
    return {"input_ids": input_ids, "attention_mask": attention, "position_ids": positions}


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The padding token, or end-of-sequence for tokenizers without one (Llama-2)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode_example(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str) -> tuple[list[int], int]:
    """Token ids of prompt + response and the number of prompt tokens."""
    prompt_ids = encode_context(tokenizer, chat_prompt(prompt))
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        response_ids = [*response_ids, tokenizer.eos_token_id]
    return prompt_ids + response_ids, len(prompt_ids)


def collate(tokenizer: PreTrainedTokenizerBase, items: Sequence[TaskItem], max_length: int | None = None) -> Batch:
    """A right-padded batch of task items (dicts with ``prompt`` and ``response``)."""
    encoded = [encode_example(tokenizer, item["prompt"], item["response"]) for item in items]
    if max_length is not None:
        encoded = [(ids[:max_length], n_prompt) for ids, n_prompt in encoded]
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id(tokenizer), dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        # position t predicts token t + 1; response tokens start at index n_prompt
        labels[row, n_prompt - 1 : len(ids) - 1] = torch.tensor(ids[n_prompt:])
    return Batch(input_ids, attention, labels != IGNORE, labels)


def iterate_batches(tokenizer: PreTrainedTokenizerBase, items: Sequence[TaskItem], batch_size: int,
                    shuffle_seed: int | None = None) -> Iterator[tuple[list[int], Batch]]:
    """(item indices, batch) over ``items`` in order, or in a seeded random order."""
    order = list(range(len(items)))
    if shuffle_seed is not None:
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(shuffle_seed)).tolist()
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        yield indices, collate(tokenizer, [items[i] for i in indices])
