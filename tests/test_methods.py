"""Every method and control runs through the one pipeline on tiny Llama models, and SemAlign's plan follows docs/method.md."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict

from lsa_utils.evaluation.scoring import evaluate_family
from lsa_utils.models.batches import collate
from lsa_utils.semalign.targets import teacher_targets
from lsa_utils.study.methods import (
    CONTROLS, METHODS, TRANSDUCTIVE, TransferConfig, budgeted_train, semalign_plan, teacher_answered,
    transfer_model,
)
from lsa_utils.semalign import LayerSource, critical_layers, layer_attribution, pair_layers
from lsa_utils.training.trainer import LoraSpec, TrainSpec, response_logits

TINY = TransferConfig(train=TrainSpec(epochs=1, lr=1e-2, batch_size=4), lora=LoraSpec(rank=4), n_seed_examples=4)


@pytest.fixture(scope="module")
def pair(tiny_task, make_tiny):
    tokenizer, items = tiny_task
    splits = DatasetDict({"train": Dataset.from_list(items[:8]), "align": Dataset.from_list(items[:6]),
                          "extract": Dataset.from_list(items[6:8])})
    return tokenizer, items, splits, make_tiny(len(tokenizer), 2, 16, seed=0), make_tiny(len(tokenizer), 3, 24, seed=1)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_a_model_of_the_right_kind(pair, method):
    tokenizer, items, splits, student, teacher = pair
    before = {k: v.clone() for k, v in student.state_dict().items()}
    model = transfer_model(method, teacher, student, tokenizer, splits, "facts", TINY)
    logits = response_logits(model, tokenizer, items[:2])
    assert torch.isfinite(logits).all()
    if method not in ("student", "teacher"):  # changed, if only slightly (LaTen's deltas start at 1e-5 scale)
        assert not torch.equal(logits, response_logits(student, tokenizer, items[:2]))
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # the student itself untouched


@pytest.mark.parametrize("method", METHODS + CONTROLS)
def test_every_method_and_control_runs_in_bf16(pair, make_tiny, method):
    """Real pairs load in bf16 on a GPU: bases, maps, hypernetworks and losses meet bf16 states without a
    dtype error, and the trained model stays in bf16."""
    tokenizer, items, splits, _, _ = pair
    student = make_tiny(len(tokenizer), 2, 16, seed=0).to(torch.bfloat16)
    teacher = make_tiny(len(tokenizer), 3, 24, seed=1).to(torch.bfloat16)
    model = transfer_model(method, teacher, student, tokenizer, splits, "facts", TINY, test=_facts(items))
    logits = response_logits(model, tokenizer, items[:2])
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


def test_semalign_plans(pair):
    tokenizer, items, splits, student, teacher = pair
    batch = collate(tokenizer, items[:4])
    critical = critical_layers(layer_attribution(teacher, batch), 1)
    layers_v1, pairing_v1 = semalign_plan(teacher, student, batch, TransferConfig(), 1)
    assert len(layers_v1) == 1 and list(pairing_v1.values()) == [LayerSource.single(k) for k in critical]
    layers_v2, pairing_v2 = semalign_plan(teacher, student, batch, TransferConfig(), 2)
    assert layers_v2 == [1, 2] and set(critical) <= {s.a for s in pairing_v2.values()}  # every layer, critical kept
    assert pairing_v2 == dict(enumerate(pair_layers(3, 2, critical=critical), start=1))
    assert semalign_plan(teacher, student, batch, TransferConfig(pairing="last"), 1)[0] == [2]
    for pairing in ("floor", "interpolate"):  # a skipped critical layer still has a student layer that trains
        assert len(semalign_plan(teacher, student, batch, TransferConfig(pairing=pairing), 1)[0]) == 1
    _, interpolated = semalign_plan(teacher, student, batch, TransferConfig(pairing="interpolate"), 2)
    assert interpolated[1] == LayerSource(1, 2, 0.5)
    with pytest.raises(ValueError, match="unknown method 'semalign'"):
        transfer_model("semalign", teacher, student, tokenizer, splits, "facts")


@pytest.mark.parametrize(("factor", "level"), [("basis", "least_squares"), ("basis", "random"),
                                                ("n_trained_layers", "all"), ("lora_rank", 8), ("site", "mlp_output")])
def test_ablation_variants_run(pair, factor, level):
    from lsa_utils.study.grid import ablation_variant

    tokenizer, items, splits, student, teacher = pair
    method, config = ablation_variant(TINY, factor, level)
    model = transfer_model(method, teacher, student, tokenizer, splits, "facts", config)
    assert torch.isfinite(response_logits(model, tokenizer, items[:2])).all()


def test_a_critical_layer_the_floor_map_skips_still_trains_a_student_layer(pair, monkeypatch):
    tokenizer, items, splits, student, teacher = pair
    monkeypatch.setattr("lsa_utils.study.methods.critical_layers", lambda scores, n: [2])  # floor map (3 -> 2): [1, 3]
    batch = collate(tokenizer, items[:4])
    assert semalign_plan(teacher, student, batch, TransferConfig(pairing="floor"), 1) == ([2], {2: LayerSource.single(3)})
    assert semalign_plan(teacher, student, batch, TransferConfig(pairing="attribution"), 1) == ([2], {2: LayerSource.single(2)})


def test_teacher_statistics_are_computed_once_per_pair_and_batch(pair, tmp_path, monkeypatch):
    """Attribution and Seeking's sensitivities do not depend on the seed: the cache computes them once."""
    from lsa_utils.study.methods import TargetCache

    tokenizer, items, splits, student, teacher = pair
    cache = TargetCache(tmp_path, "tiny")

    def logits(method, cache=None):
        model = transfer_model(method, teacher, student, tokenizer, splits, "facts", TINY, cache)
        return response_logits(model, tokenizer, items[:2])

    uncached = {method: logits(method) for method in ("seeking", "semalign_v1")}
    for method in uncached:
        logits(method, cache)
    assert len(list(tmp_path.glob("attribution-*"))) == 1 and len(list(tmp_path.glob("sensitivity-*"))) == 1

    def recomputed(*args, **kwargs):
        raise AssertionError("a cached teacher statistic was computed again")

    monkeypatch.setattr("lsa_utils.study.methods.layer_attribution", recomputed)
    monkeypatch.setattr("lsa_utils.baselines.seeking.sensitivities", recomputed)
    for method, expected in uncached.items():
        assert torch.equal(logits(method, cache), expected)


def _facts(items):
    return Dataset.from_list([item for item in items if "choices" in item and item["choices"]])


@pytest.mark.parametrize("control", CONTROLS)
def test_every_control_trains_through_the_same_pipeline(pair, control):
    tokenizer, items, splits, student, teacher = pair
    model = transfer_model(control, teacher, student, tokenizer, splits, "facts", TINY, test=_facts(items))
    assert not torch.equal(response_logits(model, tokenizer, items[:2]), response_logits(student, tokenizer, items[:2]))


@pytest.mark.parametrize("control", TRANSDUCTIVE)
def test_the_transductive_controls_refuse_to_run_without_the_scored_items(pair, control):
    tokenizer, _, splits, student, teacher = pair
    with pytest.raises(ValueError, match="pass test="):
        transfer_model(control, teacher, student, tokenizer, splits, "facts", TINY)


def test_the_oracle_could_move_the_score(pair, make_tiny):
    """Trained on the gold answers of the scored items, the oracle must fit them: lower loss, higher score."""
    tokenizer, items, splits, _, teacher = pair
    test = _facts(items)
    student = make_tiny(len(tokenizer), 2, 16, seed=0)
    with torch.no_grad():  # a random head of std 0.02 keeps every logit near 0, whatever the layers learn
        student.lm_head.weight.mul_(25.0)
    budget = replace(TINY, train=TrainSpec(epochs=20, lr=3e-2, batch_size=4))
    oracle = transfer_model("oracle", teacher, student, tokenizer, splits, "facts", budget, test=test)
    labels = collate(tokenizer, list(test)).labels
    labels = labels[labels != -100]

    def loss(model):
        return torch.nn.functional.cross_entropy(response_logits(model, tokenizer, list(test)), labels).item()

    assert loss(oracle) < loss(student) - 1.0
    score = evaluate_family(student, tokenizer, "facts", test).score
    assert evaluate_family(oracle, tokenizer, "facts", test).score > score


def test_the_budget_is_the_same_number_of_items_for_every_split_size():
    """A split shorter than ``n_train`` is cycled (the same steps on every family), a longer one cut."""
    split = Dataset.from_list([{"prompt": str(i)} for i in range(3)])
    assert budgeted_train(split, 7)["prompt"] == ["0", "1", "2", "0", "1", "2", "0"]
    assert budgeted_train(split, 2)["prompt"] == ["0", "1"]
    assert budgeted_train(split, None) is split


def test_teacher_answers_are_gold_responses_with_the_teachers_answer(pair):
    tokenizer, items, _, _, teacher = pair
    facts = _facts(items)
    answered = teacher_answered(teacher, tokenizer, "facts", facts)
    picks = evaluate_family(teacher, tokenizer, "facts", facts).outputs
    for item, new, pick in zip(facts, answered, picks):
        assert new["response"] == item["response"].replace(item["answer"], pick, 1)
        assert new["prompt"] == item["prompt"]
    arith = Dataset.from_list([item for item in items if item["answer_prefix"] == "Answer :"][:2])
    for item, new in zip(arith, teacher_answered(teacher, tokenizer, "arith", arith, max_new_tokens=4)):
        assert new["response"].startswith(item["answer_prefix"] + " ")


def test_shuffled_targets_keep_every_row_in_another_order(pair):
    tokenizer, items, _, _, teacher = pair
    targets = teacher_targets(teacher, tokenizer, items[:6], {1: LayerSource(2, 2, 0.0)}, "block_delta", None, True)
    shuffled = targets.permuted(seed=0)
    assert torch.equal(shuffled.offsets, targets.offsets)
    assert not torch.equal(shuffled.layers[1], targets.layers[1])
    order = [torch.nonzero((targets.layers[1] == row).all(dim=1))[0, 0].item() for row in shuffled.layers[1]]
    assert sorted(order) == list(range(len(order)))  # a permutation of the rows, logits moved with them
    assert torch.equal(shuffled.logits, targets.logits[order])


def test_top_k_teacher_logits_keep_k_ids_per_position_and_permute_with_them(pair):
    tokenizer, items, _, _, teacher = pair
    full = teacher_targets(teacher, tokenizer, items[:4], {1: LayerSource(2, 2, 0.0)}, "block_delta", None, True)
    top = teacher_targets(teacher, tokenizer, items[:4], {1: LayerSource(2, 2, 0.0)}, "block_delta", None, True,
                          top_k=5)
    assert top.logits.shape == top.logit_ids.shape == (full.logits.shape[0], 5)
    expected, ids = torch.log_softmax(full.logits, dim=-1).topk(5, dim=-1)
    assert torch.equal(top.logit_ids, ids) and torch.allclose(top.logits, expected, atol=1e-6)
    shuffled = top.permuted(seed=0)
    order = [torch.nonzero((top.layers[1] == row).all(dim=1))[0, 0].item() for row in shuffled.layers[1]]
    assert torch.equal(shuffled.logit_ids, top.logit_ids[order])


@pytest.mark.parametrize("method", ["kd", "semalign_v2"])
def test_the_hub_profiles_budget_runs_in_bf16_with_top_k_logits_and_micro_batches(pair, make_tiny, method):
    """What the real profiles set on top of the world's: teacher_top_k and micro_batch_size."""
    tokenizer, items, splits, _, _ = pair
    student = make_tiny(len(tokenizer), 2, 16, seed=0).to(torch.bfloat16)
    teacher = make_tiny(len(tokenizer), 3, 24, seed=1).to(torch.bfloat16)
    config = replace(TINY, teacher_top_k=8, train=replace(TINY.train, micro_batch_size=2))
    model = transfer_model(method, teacher, student, tokenizer, splits, "facts", config)
    logits = response_logits(model, tokenizer, items[:2])
    assert torch.isfinite(logits.float()).all() and not torch.equal(logits, response_logits(student, tokenizer, items[:2]))


def test_a_corrupt_run_record_is_run_again_and_an_intact_one_is_not(tmp_path):
    """`run_jobs` trusts a transfer run's record only when its checksum holds."""
    from lsa_utils.infra.cache import CorruptCacheEntry, atomic_write
    from lsa_utils.models.loading import ModelRecipe
    from lsa_utils.study.executors import Executor
    from lsa_utils.study.grid import Job, run_jobs

    def job(method: str) -> Job:
        return Job(ModelRecipe("{}", str(tmp_path), "cpu"), "teacher", "student", method, "facts", 0, TINY, {},
                   None, 0, str(tmp_path), str(tmp_path / "transfer" / f"{method}.json"))

    def write(run: Job) -> Job:
        with atomic_write(Path(run.path), checksum=True) as tmp:
            tmp.write_text(json.dumps({"metric": "accuracy", "score": 50.0, "train_score": None, "correct": "10"}))
        return run

    class Recording(Executor):
        """Runs ``write`` instead of a transfer (no models here) and notes which runs it was given."""

        def __init__(self) -> None:
            self.ran: list[str] = []

        def map_unordered(self, fn, items):
            for run in items:
                self.ran.append(run.method)
                yield write(run)

    jobs = [write(job("sft")), write(job("kd"))]
    Path(jobs[1].path).write_text(Path(jobs[1].path).read_text().replace("50.0", "90.0"))
    executor = Recording()
    with pytest.warns(CorruptCacheEntry, match=f"cache entry {jobs[1].path} is corrupt"):
        table = run_jobs(jobs, executor)
    assert executor.ran == ["kd"] and table["score"].tolist() == [50.0, 50.0]
