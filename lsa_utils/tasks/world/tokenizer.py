"""The world's word-level tokenizer, saved and loaded like any HF tokenizer.

World text is space-tokenised, so every space-separated word (and every newline) is one token and
the vocabulary is exactly the set of words the corpus and the task splits use.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from lsa_utils.tasks.prompts import ASSISTANT, END_OF_TEXT, USER
from lsa_utils.tasks.world.corpus import TOKEN_PATTERN

PAD, UNK = "<pad>", "<unk>"
SPECIAL_TOKENS = (PAD, UNK, END_OF_TEXT, USER, ASSISTANT)
NUMBERS = tuple(str(n) for n in range(200))


def build_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary covers ``texts`` and the numbers 0-199."""
    words: set[str] = set(NUMBERS)
    for text in texts:
        words.update(TOKEN_PATTERN.findall(text))
    words -= set(SPECIAL_TOKENS)
    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *sorted(words)))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
        pre_tokenizers.Split(" ", behavior="removed"),
    ])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, unk_token=UNK, eos_token=END_OF_TEXT,
        bos_token=END_OF_TEXT, additional_special_tokens=[USER, ASSISTANT],
        padding_side="left",  # what generation wants; the evaluator pads itself, whatever the side
    )
    return tokenizer
