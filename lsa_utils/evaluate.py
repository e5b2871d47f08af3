"""One evaluator for every model and every task family (METHOD.md section 4).

Three kinds of scoring cover the four benchmarks and their world analogues:

- ``multiple_choice`` (MMLU, facts): argmax of the next-token logits after the answer prefix, over the
  first token of each choice;
- ``last_number`` (GSM8K, arith): greedy generation, exact match of the last number;
- ``program`` (HumanEval, MBPP, code_complete, code_write): greedy generation, hidden tests run in the
  sandbox, pass@1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path

import pandas as pd
import torch
from datasets import Dataset, DatasetDict
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lsa_utils.cache import atomic_write, config_key
from lsa_utils.prompts import chat_prompt
from lsa_utils.sandbox import run_tests

SCORING = {
    "facts": "multiple_choice", "mmlu": "multiple_choice",
    "arith": "last_number", "gsm8k": "last_number",
    "code_complete": "program", "humaneval": "program",
    "code_write": "program", "mbpp": "program",
}
METRICS = {"multiple_choice": "accuracy", "last_number": "exact_match", "program": "pass@1"}
CHANCE = {"multiple_choice": 25.0, "last_number": 0.0, "program": 0.0}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
SCORE_FORMAT = 1  # bump when a change of the evaluator changes scores, so cached scores are not reused


@dataclass(frozen=True)
class FamilyScore:
    family: str
    metric: str
    score: float  # percent
    correct: list[bool]
    outputs: list[str]  # chosen option or generated text, per item


def _contexts(dataset: Dataset) -> list[str]:
    return [chat_prompt(row["prompt"]) + row["answer_prefix"] for row in dataset]


def _first_continuation_token(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> int:
    """The id of the first token the continuation adds after the context (tokenizer-agnostic)."""
    base = tokenizer(context, add_special_tokens=False)["input_ids"]
    full = tokenizer(f"{context} {continuation}", add_special_tokens=False)["input_ids"]
    if full[: len(base)] != base or len(full) == len(base):
        raise ValueError(f"choice {continuation!r} does not start a new token after {context[-30:]!r}")
    return full[len(base)]


@torch.no_grad()
def choose_options(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: Dataset,
                   batch_size: int = 64) -> list[int]:
    """Index of the highest-scoring choice per item (next-token logits after the answer prefix)."""
    contexts = _contexts(dataset)
    picks: list[int] = []
    for start in range(0, len(contexts), batch_size):
        batch = contexts[start:start + batch_size]
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        logits = model(**enc).logits[:, -1]  # [batch, vocab]; left padding puts the last token at -1
        for row, context, item in zip(logits, batch, dataset.select(range(start, start + len(batch)))):
            ids = [_first_continuation_token(tokenizer, context, c) for c in item["choices"]]
            picks.append(int(row[ids].argmax()))
    return picks


@torch.no_grad()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, contexts: Sequence[str],
             max_new_tokens: int, batch_size: int = 64) -> list[str]:
    """Greedy continuations of each context, decoded without special tokens."""
    if tokenizer.padding_side != "left":
        raise ValueError("generation needs tokenizer.padding_side == 'left'")
    outputs: list[str] = []
    for start in range(0, len(contexts), batch_size):
        enc = tokenizer(list(contexts[start:start + batch_size]), return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
        new = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        outputs += tokenizer.batch_decode(new[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return outputs


def last_number(text: str) -> str | None:
    """The last number in a text (GSM8K's answer convention), without trailing ``.0``."""
    numbers = _NUMBER.findall(text)
    return numbers[-1].removesuffix(".0") if numbers else None


def extract_program(completion: str, entry_point: str, code_prefix: str) -> str:
    """The generated function, from its ``def`` on; the signature is prepended if it is missing."""
    match = re.search(rf"def\s+{re.escape(entry_point)}\b", completion)
    if match:
        return completion[match.start():].strip()
    return f"{code_prefix} {completion.strip()}"


def run_programs(programs: Sequence[str], tests: Sequence[str], timeout_s: float = 5.0,
                 workers: int = 2) -> list[str]:
    """Sandbox status of each program against its hidden tests."""
    with ThreadPoolExecutor(workers) as pool:
        return [r.status for r in pool.map(lambda pt: run_tests(*pt, timeout_s=timeout_s), zip(programs, tests))]


def judge(family: str, dataset: Dataset, outputs: Sequence[int | str]) -> list[bool]:
    """Correctness per item of chosen option indices (multiple choice) or generated continuations."""
    scoring = _scoring(family)
    if scoring == "multiple_choice":
        return [pick == row["label"] for pick, row in zip(outputs, dataset)]
    if scoring == "last_number":
        return [last_number(text) == row["answer"] for text, row in zip(outputs, dataset)]
    programs = [extract_program(text, row["entry_point"], row["code_prefix"]) for text, row in zip(outputs, dataset)]
    return [status == "passed" for status in run_programs(programs, dataset["test_code"])]


def _scoring(family: str) -> str:
    if family not in SCORING:
        raise ValueError(f"unknown task family {family!r}; known: {sorted(SCORING)}")
    return SCORING[family]


def evaluate_family(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, family: str,
                    dataset: Dataset, max_new_tokens: int = 64, batch_size: int = 64) -> FamilyScore:
    """Score one model on one task family's split."""
    scoring = _scoring(family)
    if scoring == "multiple_choice":
        picks = choose_options(model, tokenizer, dataset, batch_size)
        correct = judge(family, dataset, picks)
        outputs = [row["choices"][p] for p, row in zip(picks, dataset)]
    else:
        outputs = generate(model, tokenizer, _contexts(dataset), max_new_tokens, batch_size)
        correct = judge(family, dataset, outputs)
    score = 100.0 * sum(correct) / max(1, len(correct))
    return FamilyScore(family, METRICS[scoring], score, correct, outputs)


def score_models(models: Mapping[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase,
                 tasks: Mapping[str, DatasetDict], split: str = "test", max_new_tokens: int = 64,
                 batch_size: int = 64, cache: Path | None = None,
                 model_keys: Mapping[str, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model on every family: a tidy score table and a per-item table (for failure analysis).

    With ``cache`` and ``model_keys`` (what identifies each model's weights), each (model, family) result
    is stored as JSON and read back on the next call instead of being recomputed.
    """
    scores, items = [], []
    for (name, model), (family, splits) in tqdm(list(product(models.items(), tasks.items())),
                                                desc="evaluate", unit="run"):
        dataset = splits[split]
        path = None
        if cache is not None and model_keys is not None:
            first = _contexts(dataset.select(range(min(3, len(dataset)))))
            key = config_key({"model": model_keys[name], "family": family, "split": split, "n": len(dataset),
                              "max_new_tokens": max_new_tokens, "contexts": first, "format": SCORE_FORMAT})
            path = Path(cache) / "scores" / f"{name}-{family}-{key}.json"
        if path is not None and path.exists():
            result = FamilyScore(**json.loads(path.read_text()))
        else:
            result = evaluate_family(model, tokenizer, family, dataset, max_new_tokens, batch_size)
            if path is not None:
                with atomic_write(path) as tmp:
                    tmp.write_text(json.dumps(asdict(result)))
        scores.append({"model": name, "task": family, "metric": result.metric, "score": result.score})
        items += [{"model": name, "task": family, "item": i, "correct": ok, "output": out}
                  for i, (ok, out) in enumerate(zip(result.correct, result.outputs))]
    return pd.DataFrame(scores), pd.DataFrame(items)
