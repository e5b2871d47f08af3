"""The built-in world: determinism, disjoint splits, knowledge hidden from the transfer splits, tokenizer."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from lsa_utils.tasks.spec import TRANSFER_SPLITS, WORLD_TASKS
from lsa_utils.tasks.world import CorpusMix, WorldConfig, build_tokenizer, build_world, pretraining_documents
from lsa_utils.tasks.world.items import split_items

SMALL = WorldConfig(seed=3, n_entities=60, n_items=60, n_functions=20, split_scale=0.05)


@pytest.fixture(scope="module")
def world():
    return build_world(SMALL)


@pytest.fixture(scope="module")
def documents(world):
    return list(pretraining_documents(world, CorpusMix(), 20_000, seed=0, split_seed=0))


def test_world_is_deterministic_in_its_config(world):
    assert build_world(SMALL) == world
    assert build_world(WorldConfig(**{**SMALL.to_dict(), "seed": 4})) != world


def test_splits_and_corpus_are_deterministic(world, documents):
    for family in WORLD_TASKS:
        assert split_items(world, family, seed=0) == split_items(world, family, seed=0)
    assert list(pretraining_documents(world, CorpusMix(), 20_000, seed=0, split_seed=0)) == documents


@pytest.mark.parametrize("family", WORLD_TASKS)
def test_splits_are_disjoint(world, family):
    splits = split_items(world, family, seed=0)
    prompts = [row["prompt"] for rows in splits.values() for row in rows]
    assert len(prompts) == len(set(prompts))


def test_facts_test_asks_other_attributes_of_the_same_entities(world):
    splits = split_items(world, "facts", seed=0)
    test_pairs = {tuple(row["subjects"]) for row in splits["test"]}
    transfer_pairs = {tuple(row["subjects"]) for name in TRANSFER_SPLITS for row in splits[name]}
    assert not test_pairs & transfer_pairs
    transfer_entities = {entity for entity, _ in transfer_pairs}
    assert {entity for entity, _ in test_pairs} & transfer_entities


@pytest.mark.parametrize("family", ["arith", "code_complete", "code_write"])
def test_test_subjects_never_appear_in_transfer_labels(world, family):
    splits = split_items(world, family, seed=0)
    test_subjects = {s for row in splits["test"] for s in row["subjects"]}
    transfer_subjects = {s for name in TRANSFER_SPLITS for row in splits[name] for s in row["subjects"]}
    assert test_subjects and not test_subjects & transfer_subjects


def test_corpus_never_contains_a_split_item(world, documents):
    corpus = "\n".join(documents)
    for family in WORLD_TASKS:
        for rows in split_items(world, family, seed=0).values():
            assert not any(row["prompt"] in corpus for row in rows)


def test_corpus_states_every_test_fact(world):
    """The test asks for knowledge the corpus does give: every test item's price is stated."""
    big = list(pretraining_documents(world, CorpusMix(), 200_000, seed=0, split_seed=0))
    corpus = " ".join(big)
    for row in split_items(world, "arith", seed=0)["test"]:
        for name in row["subjects"]:
            assert f" {name} " in f" {corpus} "


@pytest.mark.parametrize(("family", "shape"), [
    ("code_complete", r"def \w+ \( (\w) \) : return \1 [-+*] \d"),
    ("code_write", r"def \w+ \( (\w) , (\w) \) : return \( \1 \+ \2 \) [-+*] \d"),
])
def test_code_items_of_a_family_share_one_shape(world, family, shape):
    """Recall alone decides the score: with a mix of shapes the student wrote one shape for all."""
    for rows in split_items(world, family, seed=0).values():
        assert all(re.fullmatch(shape, row["answer"]) for row in rows)


@pytest.mark.parametrize("family", ["code_complete", "code_write"])
def test_code_tests_cover_rare_functions_as_often_as_common_ones(family):
    """Drawn by frequency weight, about one test item in six named the rarer half of the test functions."""
    world = build_world(WorldConfig())
    _, pool = world.split_pools(world.functions)
    median = sorted(fn.weight for fn in pool)[len(pool) // 2]
    rare = {fn.name for fn in pool if fn.weight < median}
    test = split_items(world, family, seed=0)["test"]
    assert sum(row["subjects"][0] in rare for row in test) / len(test) > 0.35


def _library_mentions(world, mix: CorpusMix) -> Counter:
    documents = pretraining_documents(world, mix, 60_000, seed=0, split_seed=0)
    words = Counter(word for doc in documents for word in doc.split())
    return Counter({fn.name: words[fn.name] for fn in world.functions})


LIBRARY_DOCUMENTS_ONLY = {"facts": 0.0, "arith": 0.0, "drills": 0.0, "code": 1.0, "worked_share": 0.0}


def test_a_library_manual_documents_every_function_evenly(world):
    """The code teacher's continuation reads a manual: rare functions are no rarer than frequent ones."""
    weighted = _library_mentions(world, CorpusMix(**LIBRARY_DOCUMENTS_ONLY))
    manual = _library_mentions(world, CorpusMix(**LIBRARY_DOCUMENTS_ONLY, library_manual=True))
    spread = lambda counts: max(counts.values()) / max(1, min(counts.values()))  # noqa: E731
    assert min(manual.values()) > 0
    assert spread(manual) < 2 < 5 < spread(weighted)


def test_tokenizer_round_trip(world, documents):
    tokenizer = build_tokenizer(documents)
    assert len(tokenizer) > 4 * 24
    for text in documents[:50]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids).split() == text.split()


def test_tokenizer_saves_and_loads(tmp_path, documents):
    from transformers import AutoTokenizer

    tokenizer = build_tokenizer(documents)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = documents[0]
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.padding_side == "left"


def test_reference_solutions_pass_their_hidden_tests(world):
    from lsa_utils.evaluation.sandbox import run_tests

    for family in ("code_complete", "code_write"):
        for row in split_items(world, family, seed=0)["test"][:5]:
            assert run_tests(row["answer"], row["test_code"]).status == "passed", row["answer"]


def test_a_world_too_small_for_its_splits_says_what_to_change():
    tiny = build_world(WorldConfig(n_entities=30, n_items=30, n_functions=20, split_scale=1.0))
    with pytest.raises(ValueError, match="n_entities=30.*raise n_entities or lower split_scale"):
        split_items(tiny, "facts", seed=0)
