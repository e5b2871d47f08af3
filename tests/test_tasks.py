"""The task registry: one `TaskSpec` per task, read by the world, the evaluator, LaTen and the report."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

from lsa_utils.tasks import BENCHMARK_TASKS, TASKS, WORLD_TASKS, TaskItem, UnknownTask, get_task
from lsa_utils.tasks.world import WorldConfig, build_world
from lsa_utils.tasks.world.items import split_items

WORLD = build_world(WorldConfig(seed=1, n_entities=40, n_items=40, n_functions=20, split_scale=0.02))
SCORING_KEYS = {"multiple_choice": {"choices", "label"}, "last_number": set(),
                "program": {"entry_point", "code_prefix", "test_code"}}


def test_an_unknown_task_is_one_error_listing_the_registered_ones():
    with pytest.raises(UnknownTask, match="unknown task 'mmlu_pro'; registered tasks: facts, arith, code_complete"):
        get_task("mmlu_pro")
    assert isinstance(UnknownTask("x"), ValueError)
    assert WORLD_TASKS == ("facts", "arith", "code_complete", "code_write")
    assert tuple(TASKS) == WORLD_TASKS + BENCHMARK_TASKS == WORLD_TASKS + ("mmlu", "gsm8k", "humaneval", "mbpp")


@pytest.mark.parametrize(("name", "metric", "chance", "benchmark"), [
    ("facts", "accuracy", 25.0, "MMLU"), ("arith", "exact_match", 0.0, "GSM8K"),
    ("code_complete", "pass@1", 0.0, "HumanEval"), ("code_write", "pass@1", 0.0, "MBPP"),
])
def test_a_spec_derives_its_metric_chance_and_label(name, metric, chance, benchmark):
    spec = get_task(name)
    assert (spec.metric, spec.chance, spec.benchmark) == (metric, chance, benchmark)
    assert spec.label == f"{name} ({benchmark})"


@pytest.mark.parametrize("name", WORLD_TASKS)
def test_world_items_follow_their_spec_and_the_item_type(name):
    spec = get_task(name)
    splits = split_items(WORLD, name, seed=0)
    assert list(splits) == ["test", "train", "align", "extract"]
    assert {split: len(items) for split, items in splits.items()} == {
        split: max(1, round(n * WORLD.config.split_scale)) for split, n in spec.split_sizes.items()}
    required = set(TaskItem.__required_keys__)
    allowed = required | SCORING_KEYS[spec.scoring]
    assert SCORING_KEYS[spec.scoring] <= set(TaskItem.__optional_keys__)
    for item in (row for items in splits.values() for row in items):
        assert required | SCORING_KEYS[spec.scoring] == set(item) == allowed
        assert item["prompt"].startswith(spec.instruction)
        assert item["response"].startswith(item["answer_prefix"])
        if spec.answer_prefix is not None:
            assert item["answer_prefix"].startswith(spec.answer_prefix)
    hints = typing.get_type_hints(TaskItem)
    assert hints["subjects"] == list[str] and hints["frequency"] is float


def test_every_per_task_reader_rejects_an_unknown_task():
    from datasets import Dataset

    from lsa_utils.evaluation.scoring import judge

    with pytest.raises(UnknownTask, match="registered tasks"):
        split_items(WORLD, "mmlu_pro", seed=0)
    with pytest.raises(UnknownTask, match="registered tasks"):
        judge("mmlu_pro", Dataset.from_list([{"label": 0}]), [0])
    with pytest.raises(ValueError, match="'mmlu' is not a task of the built-in world"):
        split_items(WORLD, "mmlu", seed=0)  # a benchmark is registered, but the world does not generate it


def test_the_registry_and_the_report_load_without_torch():
    code = "import sys, lsa_utils.tasks, lsa_utils.study.report; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
