"""The pair check: one shared vocabulary or one clear error, before any method does work."""

from __future__ import annotations

import copy

import pytest
from datasets import Dataset, DatasetDict

from lsa_utils.models.arch import UnsupportedArchitecture
from lsa_utils.models.pair_check import PairMismatch, shared_vocabulary
from lsa_utils.study.methods import CONTROLS, METHODS, TransferConfig, transfer_model
from lsa_utils.training.trainer import LoraSpec, TrainSpec, response_logits

TINY = TransferConfig(train=TrainSpec(epochs=1, lr=1e-2, batch_size=4), lora=LoraSpec(rank=4), n_seed_examples=4)
TRAINED = [m for m in METHODS + CONTROLS if m not in ("student", "teacher")]


@pytest.fixture(scope="module")
def padded_pair(tiny_task, make_tiny):
    """Models with more embedding rows than the tokenizer has ids (and not the same number), like Qwen2.5."""
    tokenizer, items = tiny_task
    splits = DatasetDict({"train": Dataset.from_list(items[:8]), "align": Dataset.from_list(items[:6]),
                          "extract": Dataset.from_list(items[6:8])})
    student = make_tiny(len(tokenizer) + 16, 2, 16, family="qwen2", seed=0)
    teacher = make_tiny(len(tokenizer) + 48, 3, 24, family="qwen2", seed=1)
    return tokenizer, items, splits, student, teacher


def test_extra_embedding_rows_are_accepted_and_ignored(padded_pair):
    tokenizer, _, _, student, teacher = padded_pair
    assert shared_vocabulary(teacher, student, tokenizer) == len(tokenizer)


@pytest.mark.parametrize("method", TRAINED)
def test_every_method_runs_on_a_pair_with_padding_rows(padded_pair, method):
    tokenizer, items, splits, student, teacher = padded_pair
    test = Dataset.from_list([item for item in items if item.get("choices")])
    model = transfer_model(method, teacher, student, tokenizer, splits, "facts", TINY, test=test)
    assert response_logits(model, tokenizer, items[:2]).shape[-1] == len(tokenizer) + 16


@pytest.mark.parametrize("method", TRAINED)
def test_every_method_rejects_a_model_with_fewer_rows_than_the_tokenizer(tiny_task, make_tiny, method):
    tokenizer, items = tiny_task
    splits = DatasetDict({"train": Dataset.from_list(items[:8]), "align": Dataset.from_list(items[:6]),
                          "extract": Dataset.from_list(items[6:8])})
    student = make_tiny(len(tokenizer), 2, 16, seed=0)
    teacher = make_tiny(len(tokenizer) - 5, 3, 24, seed=1)
    with pytest.raises(PairMismatch, match=rf"tokenizer has {len(tokenizer)} ids but the teacher has "
                                           rf"{len(tokenizer) - 5} embedding rows"):
        transfer_model(method, teacher, student, tokenizer, splits, "facts", TINY, test=Dataset.from_list(items[:2]))


def test_two_tokenizers_must_agree_on_every_shared_id(tiny_task, make_tiny):
    tokenizer, _ = tiny_task
    student, teacher = make_tiny(len(tokenizer) + 4, 2, 16), make_tiny(len(tokenizer) + 4, 3, 24)
    padded = copy.deepcopy(tokenizer)
    padded.add_special_tokens({"additional_special_tokens": ["<|wizard_pad|>"]})  # a trailing added token
    assert shared_vocabulary(teacher, student, tokenizer, padded) == len(tokenizer)
    grown = copy.deepcopy(tokenizer)
    grown.add_tokens(["zzzunseenword"])  # added, so still accepted; ordinary vocabulary would not be
    assert shared_vocabulary(teacher, student, tokenizer, grown) == len(tokenizer)
    other = copy.deepcopy(tokenizer)
    vocab = other.backend_tokenizer.model
    first, second = other.convert_ids_to_tokens([20, 21])
    swapped = type(vocab)({**other.get_vocab(), first: 21, second: 20}, unk_token=other.unk_token)
    other.backend_tokenizer.model = swapped
    with pytest.raises(PairMismatch, match=rf"first id 20: '{first}' vs '{second}'"):
        shared_vocabulary(teacher, student, tokenizer, other)


def test_an_unknown_architecture_is_named(tiny_task, make_tiny):
    tokenizer, _ = tiny_task
    student = make_tiny(len(tokenizer), 2, 16)
    with pytest.raises(UnsupportedArchitecture, match="supported: LlamaForCausalLM"):
        shared_vocabulary(student.model, student, tokenizer)
