"""The pair check: a teacher and a student exchange knowledge over one vocabulary, or not at all.

Every method reads the teacher through token ids (logits, LM-head bases, the batches both models see),
so before any work the pair must agree on what each id means. The rule:

- The shared vocabulary is the tokenizer's ids ``0 .. len(tokenizer) - 1``. A model may have more
  embedding rows than that (hubs pad the matrix to a multiple: Qwen2.5-7B has 152064 rows, 0.5B 151936,
  one tokenizer of 151665 ids); the tokenizer never produces those ids, so they are ignored. A model
  with fewer rows than the tokenizer has ids is rejected.
- With a teacher tokenizer of its own, every id of the shorter tokenizer must map to the same token
  string in both; the longer one may add only trailing *added* tokens (WizardCoder's pad), which the
  shorter one never produces.
- Both models have an architecture that `arch` knows.
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedTokenizerBase

from lsa_utils.models import arch


class PairMismatch(ValueError):
    """The teacher and the student do not share a vocabulary."""


def _rows(model: nn.Module) -> int:
    return arch.input_embedding(model).weight.shape[0]


def _check_tokenizers(tokenizer: PreTrainedTokenizerBase, teacher_tokenizer: PreTrainedTokenizerBase) -> None:
    shorter, longer = sorted((tokenizer, teacher_tokenizer), key=len)
    n = len(shorter)
    ours, theirs = shorter.convert_ids_to_tokens(list(range(n))), longer.convert_ids_to_tokens(list(range(n)))
    differing = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    if differing:
        i = differing[0]
        raise PairMismatch(f"the tokenizers disagree on {len(differing)} of {n} ids, first id {i}: {ours[i]!r} vs "
                           f"{theirs[i]!r}; the methods need a teacher and a student that share a tokenizer")
    extra = set(range(n, len(longer))) - set(longer.added_tokens_decoder)
    if extra:
        raise PairMismatch(f"one tokenizer has {len(longer) - n} more ids and {len(extra)} of them (first id "
                           f"{min(extra)}) are ordinary vocabulary, not trailing added tokens")


def shared_vocabulary(teacher: nn.Module, student: nn.Module, tokenizer: PreTrainedTokenizerBase,
                      teacher_tokenizer: PreTrainedTokenizerBase | None = None) -> int:
    """The number of token ids the pair shares (``len(tokenizer)``), or `PairMismatch` naming what differs."""
    for model in (teacher, student):
        arch.layout(model)  # UnsupportedArchitecture names the supported ones
    if teacher_tokenizer is not None:
        _check_tokenizers(tokenizer, teacher_tokenizer)
    n = len(tokenizer)
    rows = {"teacher": _rows(teacher), "student": _rows(student)}
    short = {role: count for role, count in rows.items() if count < n}
    if short:
        sizes = ", ".join(f"the {role} has {count}" for role, count in short.items())
        raise PairMismatch(f"the tokenizer has {n} ids but {sizes} embedding rows: the models were not trained "
                           "with this tokenizer (load the tokenizer that belongs to the pair)")
    return n
