"""Hub / local pairs through the real loading path: tiny Qwen2 and Llama models with a byte-level BPE
tokenizer, saved with save_pretrained to a temporary folder (no downloads)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast

from lsa_utils.evaluation.scoring import evaluate_family
from lsa_utils.models.hub import ModelSpec, ModelUnavailable, load_hub_models
from lsa_utils.models.pair_check import PairMismatch
from lsa_utils.study.methods import TransferConfig, transfer_model
from lsa_utils.tasks.benchmarks import load_benchmark
from lsa_utils.training.trainer import LoraSpec, TrainSpec

from benchmark_rows import FIXTURES, write_parts

TEXT = ["Answer the following question.", "Question: Ann has 12 apples and buys 1,000 more.",
        "Answer: She has 1012 apples. The answer is 1012.", "<|user|>\n<|assistant|>\n"] * 20


def _tokenizer(extra_words: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer padding on the right, as Qwen's does."""
    backend = ByteLevelBPETokenizer()
    backend.train_from_iterator([*TEXT, *extra_words], vocab_size=400, min_frequency=1,
                                special_tokens=["<|endoftext|>", "<|pad|>"])
    return PreTrainedTokenizerFast(tokenizer_object=backend._tokenizer, eos_token="<|endoftext|>",
                                   pad_token="<|pad|>", padding_side="right")


def _save(folder, tokenizer, make_tiny, n_layers: int, hidden: int, extra_rows: int, family: str, seed: int):
    model = make_tiny(len(tokenizer) + extra_rows, n_layers, hidden, family=family, seed=seed)
    model.config.eos_token_id, model.config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def saved_pair(request, tmp_path_factory, make_tiny):
    root = tmp_path_factory.mktemp(request.param)
    tokenizer = _tokenizer()
    student = _save(root / "student", tokenizer, make_tiny, 2, 16, 8, request.param, seed=0)
    teacher = _save(root / "teacher", tokenizer, make_tiny, 3, 24, 24, request.param, seed=1)
    return root, student, teacher


def test_a_local_pair_loads_with_its_dtype_placement_and_record(saved_pair):
    _, student, teacher = saved_pair
    specs = {"teacher": ModelSpec(teacher), "student": ModelSpec(student, dtype="bfloat16")}
    tokenizer, models, records = load_hub_models(specs, torch.device("cpu"))
    assert models["teacher"].dtype == torch.float32 and models["student"].dtype == torch.bfloat16
    assert records["student"]["dtype"] == "bfloat16" and records["teacher"]["placement"] == "cpu"
    assert records["teacher"]["key"].startswith(f"{teacher}@") and records["teacher"]["key"] != records["student"]["key"]
    assert tokenizer.padding_side == "right"


def test_a_pair_runs_a_method_and_scores_on_a_benchmark(saved_pair, tmp_path):
    _, student, teacher = saved_pair
    tokenizer, models, _ = load_hub_models({"teacher": ModelSpec(teacher), "student": ModelSpec(student)},
                                           torch.device("cpu"))
    splits = load_benchmark("gsm8k", data_files=write_parts(tmp_path, FIXTURES["gsm8k"]()))
    budget = TransferConfig(train=TrainSpec(epochs=1, lr=1e-2, batch_size=8), lora=LoraSpec(rank=4), n_train=16)
    for method in ("sft", "kd", "semalign_v2"):
        model = transfer_model(method, models["teacher"], models["student"], tokenizer, splits, "gsm8k", budget)
        result = evaluate_family(model, tokenizer, "gsm8k", splits["test"], max_new_tokens=4, batch_size=2)
        assert len(result.correct) == len(splits["test"]) and 0.0 <= result.score <= 100.0


def test_a_teacher_with_another_tokenizer_is_rejected_before_any_method(saved_pair, make_tiny):
    root, student, _ = saved_pair
    other = _tokenizer(extra_words=("zebra quokka axolotl " * 30,))
    stranger = _save(root / "stranger", other, make_tiny, 3, 24, 24, "qwen2", seed=2)
    with pytest.raises(PairMismatch, match="the tokenizers disagree"):
        load_hub_models({"teacher": ModelSpec(stranger), "student": ModelSpec(student)}, torch.device("cpu"))


def test_model_specs_are_checked():
    assert ModelSpec.from_dict({"id": "a/b", "revision": "abc", "dtype": "bfloat16"}).revision == "abc"
    with pytest.raises(ValueError, match="dtype 'bf16' for a/b"):
        ModelSpec.from_dict({"id": "a/b", "dtype": "bf16"})
    with pytest.raises(ValueError, match="needs 'id'"):
        ModelSpec.from_dict({"path": "a/b"})
    assert ModelSpec("x").torch_dtype(torch.device("cpu")) == torch.float32


def test_offline_a_missing_model_stops_fast_with_one_message(tmp_path):
    code = ("import torch\nfrom lsa_utils.models.hub import ModelSpec, load_hub_models\n"
            "try:\n    load_hub_models({'teacher': ModelSpec('Qwen/Qwen2.5-1.5B-Instruct'), "
            "'student': ModelSpec('Qwen/Qwen2.5-0.5B-Instruct')}, torch.device('cpu'))\n"
            "except Exception as error:\n    print(type(error).__name__); print(error)\n")
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert time.monotonic() - start < 60
    name, message = done.stdout.split("\n", 1)
    assert name == "ModelUnavailable", done.stderr[-2000:]
    assert "Qwen/Qwen2.5-0.5B-Instruct" in message and "HF_HOME" in message and "local folder" in message


def test_a_profile_names_one_source_and_its_local_paths_become_absolute(tmp_path):
    from lsa_utils.models.loading import model_source

    (tmp_path / "models" / "student").mkdir(parents=True)
    pair = {"teacher": {"id": "Qwen/Qwen2.5-1.5B-Instruct", "revision": "abc"},
            "student": {"id": "models/student"}, "code": {"id": "../elsewhere/coder"}}
    source = model_source(None, pair, {"gsm8k": {"data_files": {"test": "data/test.jsonl"}}}, base=tmp_path)
    assert source["pair"]["teacher"] == {"id": "Qwen/Qwen2.5-1.5B-Instruct", "revision": "abc"}  # a hub id
    assert source["pair"]["student"]["id"] == str(tmp_path / "models" / "student")  # a folder that exists
    assert source["pair"]["code"]["id"] == str((tmp_path / ".." / "elsewhere" / "coder").resolve())
    assert source["benchmarks"]["gsm8k"]["data_files"]["test"] == str(tmp_path / "data" / "test.jsonl")
    assert model_source({"world": {"seed": 1}}) == {"zoo": {"world": {"seed": 1}}}
    with pytest.raises(ValueError, match="either zoo"):
        model_source({"world": {}}, pair, {"gsm8k": {}})
    with pytest.raises(ValueError, match="needs benchmarks"):
        model_source(None, pair)


def test_the_preflight_lists_everything_missing_and_each_remedy_once(tmp_path):
    from lsa_utils.infra.records import SourceUnavailable
    from lsa_utils.models.loading import check_sources

    (tmp_path / "empty").mkdir()
    parameters = {"pair": {"teacher": {"id": "./empty"}, "student": {"id": "./nowhere"}},
                  "benchmarks": {"gsm8k": {"data_files": {"train": "a.jsonl"}}}}
    with pytest.raises(SourceUnavailable) as info:
        check_sources(parameters, tmp_path)
    message = str(info.value)
    assert "no config.json" in message and "no such folder" in message
    assert "data_files lacks test" in message and "no such file" in message
    assert message.count("For a model:") == 1
    check_sources({"zoo": {}}, tmp_path)  # the built-in world is always there
