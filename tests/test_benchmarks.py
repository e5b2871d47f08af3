"""Each benchmark adapter on fixture files in the benchmark's own schema, through the real `datasets` calls."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lsa_utils.evaluation.scoring import judge
from lsa_utils.tasks import BENCHMARK_TASKS, get_task
from lsa_utils.tasks.benchmarks import BENCHMARKS, BenchmarkUnavailable, load_benchmark, source_record
from lsa_utils.tasks.prompts import evaluation_context

from benchmark_rows import FIXTURES, write_parts


@pytest.fixture(scope="module", params=BENCHMARK_TASKS)
def benchmark(request, tmp_path_factory):
    name = request.param
    files = write_parts(tmp_path_factory.mktemp(name), FIXTURES[name]())
    return name, load_benchmark(name, data_files=files, seed=0)


def test_splits_have_the_papers_sizes_and_never_share_an_item(benchmark):
    name, splits = benchmark
    sizes = get_task(name).split_sizes
    assert len(splits["align"]) == sizes["align"] and len(splits["extract"]) == sizes["extract"]
    assert 0 < len(splits["train"]) <= sizes["train"]
    prompts = {split: set(splits[split]["prompt"]) for split in splits}
    for a in prompts:
        for b in prompts:
            assert a == b or not prompts[a] & prompts[b], (a, b)
    assert len(splits["test"]) == len(FIXTURES[name]()["test"])  # the benchmark's own test split, whole


def test_prompts_and_answer_prefixes_follow_the_protocol(benchmark):
    name, splits = benchmark
    item = splits["test"][0]
    expected_start = {"mmlu": "The following are multiple choice questions (with answers) about elementary "
                              "mathematics.\n\nWhat is 500 plus one?\nA. 501\nB. 502\nC. 500\nD. 499\nAnswer:",
                      "gsm8k": "Answer the following question.\n\nQuestion: Ann has 900 apples",
                      "humaneval": "Complete the following python function.\n\n\nfrom typing import List",
                      "mbpp": "Complete the following python function.\n\n\nWrite a function to add 200 to a "
                              "number.\ndef add_200(x):"}[name]
    assert item["prompt"].startswith(expected_start)
    assert item["answer_prefix"] == get_task(name).answer_prefix
    assert item["response"].startswith(item["answer_prefix"])
    assert evaluation_context(item).endswith(item["answer_prefix"])


def _gold_output(name: str, item: dict):
    if name == "mmlu":
        return item["label"]
    return item["response"][len(item["answer_prefix"]):]


def _wrong_output(name: str, item: dict):
    if name == "mmlu":
        return (item["label"] + 1) % 4
    if name == "gsm8k":
        return f"She has {int(item['answer']) + 1} apples."
    return item["response"][len(item["answer_prefix"]):].replace("return", "return 1 +", 1)


def test_gold_answers_score_and_wrong_ones_do_not(benchmark):
    name, splits = benchmark
    test = splits["test"]
    assert all(judge(name, test, [_gold_output(name, item) for item in test]))
    assert not any(judge(name, test, [_wrong_output(name, item) for item in test]))


def test_gsm8k_answers_drop_separators_and_calculator_notes(benchmark):
    name, splits = benchmark
    if name != "gsm8k":
        pytest.skip("GSM8K only")
    item = splits["test"][0]
    assert item["answer"] == "1900" and "<<" not in item["response"]
    assert judge(name, splits["test"].select([0]), ["so 1,900 in all, that is 1900"]) == [True]


def test_code_answers_still_pass_with_prose_after_the_function(benchmark):
    name, splits = benchmark
    if get_task(name).scoring != "program":
        pytest.skip("code benchmarks only")
    test = splits["test"]
    chatty = [f"{_gold_output(name, item)}\n\nThis function works because it is simple.\n```" for item in test]
    assert all(judge(name, test, chatty))


def test_a_run_record_names_the_parts_and_fingerprints(benchmark):
    name, splits = benchmark
    record = source_record(name, splits)
    assert record["revision"] == "main" and set(record["parts"]) == set(BENCHMARKS[name].parts)
    assert record["splits"]["test"]["rows"] == len(splits["test"])
    json.dumps(record)


def test_missing_local_files_and_parts_are_named(tmp_path):
    with pytest.raises(BenchmarkUnavailable, match="lacks test"):
        load_benchmark("gsm8k", data_files={"train": str(tmp_path / "train.jsonl")})
    with pytest.raises(BenchmarkUnavailable, match="no such file"):
        load_benchmark("gsm8k", data_files={"train": str(tmp_path / "a.jsonl"), "test": str(tmp_path / "b.jsonl")})
    with pytest.raises(ValueError, match="unknown benchmark 'mmlu_pro'"):
        load_benchmark("mmlu_pro")


def test_offline_a_missing_benchmark_stops_fast_with_one_message(tmp_path):
    code = ("from lsa_utils.tasks.benchmarks import load_benchmark\n"
            "try:\n    load_benchmark('gsm8k')\nexcept Exception as error:\n"
            "    print(type(error).__name__); print(error)\n")
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert time.monotonic() - start < 60
    name, message = done.stdout.split("\n", 1)
    assert name == "BenchmarkUnavailable"
    assert "openai/gsm8k" in message and "HF_HOME" in message and "data_files" in message
