"""The evaluator on hand-made right and wrong answers, and end to end on a tiny real model."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from datasets import Dataset, DatasetDict
from tokenizers import processors
from transformers import LlamaConfig, LlamaForCausalLM

from lsa_utils.evaluation.scoring import (
    evaluate_family, extract_program, judge, last_number, pass_at_k, run_programs, sampled_pass_at_1, score_models,
)
from lsa_utils.evaluation.generation import NonFiniteModel
from lsa_utils.infra.cache import CorruptCacheEntry
from lsa_utils.models.batches import collate, encode_context
from lsa_utils.tasks.prompts import evaluation_context
from lsa_utils.tasks.spec import WORLD_TASKS
from lsa_utils.tasks.world import CorpusMix, WorldConfig, build_tokenizer, build_world, pretraining_documents
from lsa_utils.tasks.world.items import split_items

WORLD = build_world(WorldConfig(seed=1, n_entities=40, n_items=40, n_functions=20, split_scale=0.02))


def _split(family: str) -> Dataset:
    return Dataset.from_list(split_items(WORLD, family, seed=0)["test"])


def _tiny_model(data: Dataset) -> tuple:
    """A word-level tokenizer covering ``data`` and a tiny random Llama over it."""
    docs = list(pretraining_documents(WORLD, CorpusMix(), 5_000, seed=0, split_seed=0))
    tokenizer = build_tokenizer(docs + [f"{r['prompt']} {r['response']}" for r in data])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)).eval()
    return tokenizer, model


def _gold_continuation(row: dict) -> str:
    return row["response"].removeprefix(row["answer_prefix"])


@pytest.mark.parametrize("family", ["arith", "code_complete", "code_write"])
def test_gold_answers_are_right(family):
    data = _split(family)
    assert all(judge(family, data, [_gold_continuation(row) for row in data]))


def test_facts_right_and_wrong_choices():
    data = _split("facts")
    labels = data["label"]
    assert all(judge("facts", data, labels))
    assert not any(judge("facts", data, [(label + 1) % 4 for label in labels]))


def test_arith_wrong_numbers_are_wrong():
    data = _split("arith")
    wrong = [f"{_gold_continuation(row)} so maybe {int(row['answer']) + 1}" for row in data]
    assert not any(judge("arith", data, wrong))
    assert not any(judge("arith", data, ["I do not know"] * len(data)))


@pytest.mark.parametrize("family", ["code_complete", "code_write"])
def test_code_wrong_constants_and_garbage_fail(family):
    data = _split(family)
    wrong = [_gold_continuation(row) + " + 1" for row in data]
    assert not any(judge(family, data, wrong))
    assert not any(judge(family, data, ["return ( ( (", "while True : pass", ""][: len(data)] * len(data)))


def test_last_number_and_program_extraction():
    assert last_number("2 * 7 = 14 . So the answer is 17 .") == "17"
    assert last_number("The answer is -3.0") == "-3"
    assert last_number("no digits") is None
    assert extract_program("\n\n def f ( x ) : return x", "f", "def f ( x ) :") == "def f ( x ) : return x"
    assert extract_program(" return x + 1", "f", "def f ( x ) :") == "def f ( x ) : return x + 1"


@pytest.mark.parametrize("family", WORLD_TASKS)
def test_evaluate_family_on_a_tiny_real_model(family):
    data = _split(family)
    tokenizer, model = _tiny_model(data)
    result = evaluate_family(model, tokenizer, family, data, max_new_tokens=8)
    assert len(result.correct) == len(result.outputs) == len(data)
    assert 0.0 <= result.score <= 100.0
    assert result.metric == {"facts": "accuracy", "arith": "exact_match"}.get(family, "pass@1")


def test_a_model_with_nan_weights_or_logits_is_refused_not_scored():
    data = _split("facts")
    tokenizer, model = _tiny_model(data)
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.model.layers[1].mlp.down_proj.weight[0, 0] = math.nan
    with pytest.raises(NonFiniteModel, match="weight model.layers.1.mlp.down_proj.weight holds NaN"):
        evaluate_family(broken, tokenizer, "facts", data)
    with torch.no_grad():
        broken.model.layers[1].mlp.down_proj.weight[0, 0] = 0.0
    broken.lm_head.register_forward_hook(lambda module, args, out: out * math.inf)  # finite weights, inf logits
    with pytest.raises(NonFiniteModel, match="logits hold NaN or inf"):
        evaluate_family(broken, tokenizer, "facts", data)


def test_scores_are_cached_per_model_and_family(tmp_path):
    data = _split("facts")
    tokenizer, model = _tiny_model(data)
    tasks = {"facts": DatasetDict({"test": data})}
    first, items = score_models({"m": model}, tokenizer, tasks, cache=tmp_path, model_keys={"m": "k1"})
    assert len(list((tmp_path / "scores").glob("m-facts-*.json"))) == 1
    torch.nn.init.zeros_(model.lm_head.weight)  # a changed model under the same key is not re-scored...
    again, items_again = score_models({"m": model}, tokenizer, tasks, cache=tmp_path, model_keys={"m": "k1"})
    assert first.equals(again) and items.equals(items_again)
    score_models({"m": model}, tokenizer, tasks, cache=tmp_path, model_keys={"m": "k2"})  # ...a new key is
    assert len(list((tmp_path / "scores").glob("m-facts-*.json"))) == 2


def test_a_tampered_score_is_reported_and_recomputed(tmp_path):
    data = _split("facts")
    tokenizer, model = _tiny_model(data)
    tasks = {"facts": DatasetDict({"test": data})}
    first, _ = score_models({"m": model}, tokenizer, tasks, cache=tmp_path, model_keys={"m": "k1"})
    (path,) = (tmp_path / "scores").glob("m-facts-*.json")
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "score": record["score"] + 1.0}))
    with pytest.warns(CorruptCacheEntry, match=f"cache entry {path} is corrupt"):
        again, _ = score_models({"m": model}, tokenizer, tasks, cache=tmp_path, model_keys={"m": "k1"})
    assert first.equals(again) and json.loads(path.read_text()) == record


def _variant(tokenizer, padding_side: str, adds_bos: bool):
    """The same vocabulary with another padding side and, optionally, a BOS prepended (as Llama's does)."""
    variant = copy.deepcopy(tokenizer)
    variant.padding_side = padding_side
    if adds_bos:
        bos = variant.bos_token
        variant.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, variant.bos_token_id)])
    return variant


@pytest.mark.parametrize("padding_side,adds_bos", [("right", False), ("left", True), ("right", True)])
@pytest.mark.parametrize("family", ["facts", "arith"])
def test_batched_scores_match_single_item_scores_whatever_the_tokenizer(family, padding_side, adds_bos):
    data = _split(family)
    tokenizer, model = _tiny_model(data)
    variant = _variant(tokenizer, padding_side, adds_bos)
    if adds_bos:  # training and scoring see the same context: BOS first, in both
        context = encode_context(variant, evaluation_context(data[0]))
        assert context[0] == variant.bos_token_id and context[1:] == encode_context(tokenizer, evaluation_context(data[0]))
        assert collate(variant, [data[0]]).input_ids[0, 0] == variant.bos_token_id
    batched = evaluate_family(model, variant, family, data, max_new_tokens=6, batch_size=16)
    single = evaluate_family(model, variant, family, data, max_new_tokens=6, batch_size=1)
    assert batched.outputs == single.outputs and batched.correct == single.correct


def test_a_program_ends_where_its_function_ends():
    prose = "def f ( x ) : return x + 1\nThis function adds one .\nassert f ( 1 ) == 3"
    assert extract_program(prose, "f", "def f ( x ) :") == "def f ( x ) : return x + 1"
    fenced = "```python\ndef add(a, b):\n    s = a + b\n\n    return s\n```\nIt adds."
    assert extract_program(fenced, "add", "def add(a, b):") == "def add(a, b):\n    s = a + b\n\n    return s"


def test_a_humaneval_program_keeps_the_prompts_imports():
    prompt = 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """ Sum. """\n'
    whole = "def total(xs: List[int]) -> int:\n    return sum(xs)\n\nprint(total([1]))"
    program = extract_program(whole, "total", prompt)
    assert program == "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    return sum(xs)"
    assert extract_program("    return sum(xs)\n\nNote: done", "total", prompt) == prompt + "    return sum(xs)"
    assert run_programs([program], ["assert total([1, 2]) == 3"]) == ["passed"]  # in the sandbox, as scored


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 5), (5, 0, 2), (5, 5, 3), (20, 7, 10), (3, 1, 3)])
def test_pass_at_k_is_the_closed_form(n, c, k):
    expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_1_is_the_fraction_that_passes_and_bad_counts_are_refused():
    assert pass_at_k(8, 2, 1) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="n=4, c=5, k=1"):
        pass_at_k(4, 5, 1)


def test_sampled_pass_at_1_is_each_items_fraction_of_passing_samples():
    judged = [True, False, True, True, False, False, False, False, True, True, True, True]
    assert sampled_pass_at_1(judged, 4) == [0.75, 0.0, 1.0]
    with pytest.raises(ValueError, match="not 4 per item"):
        sampled_pass_at_1(judged[:-1], 4)


def test_sampled_evaluation_is_seeded_and_judges_every_sample():
    """n samples at a temperature: the same draws on a rerun, each item scored from its own n samples."""
    from lsa_utils.evaluation.generation import generate

    data = _split("arith").select(range(4))
    tokenizer, model = _tiny_model(data)
    result = evaluate_family(model, tokenizer, "arith", data, max_new_tokens=6, n_samples=3, temperature=1.0)
    again = evaluate_family(model, tokenizer, "arith", data, max_new_tokens=6, n_samples=3, temperature=1.0)
    assert result == again
    samples = generate(model, tokenizer, [evaluation_context(row) for row in data], 6, 64, 3, 1.0)
    assert len(samples) == 12 and len(set(samples)) > 4  # sampled, not three copies of one greedy answer
    rows = data.select([i for i in range(4) for _ in range(3)])
    assert result.correct == sampled_pass_at_1(judge("arith", rows, samples), 3)
    assert result.outputs == samples[::3]
    greedy = evaluate_family(model, tokenizer, "arith", data, max_new_tokens=6)
    assert greedy.outputs == generate(model, tokenizer, [evaluation_context(row) for row in data], 6)
    with pytest.raises(ValueError, match="repeats one greedy answer"):
        evaluate_family(model, tokenizer, "arith", data, n_samples=3)
