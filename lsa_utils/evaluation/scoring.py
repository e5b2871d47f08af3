"""Scoring a model on a task split (docs/method.md section 4), as the task's `TaskSpec` says, with a cache.

Three kinds of scoring cover the four benchmarks and their world analogues:

- ``multiple_choice`` (MMLU, facts): argmax of the next-token logits after the answer prefix, over the
  first token of each choice;
- ``last_number`` (GSM8K, arith): greedy generation, exact match of the last number;
- ``program`` (HumanEval, MBPP, code_complete, code_write): greedy generation, hidden tests run in the
  sandbox, pass@1.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path

import pandas as pd
from datasets import Dataset, DatasetDict
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lsa_utils.evaluation.generation import check_finite, check_sampling, choose_options, generate
from lsa_utils.evaluation.sandbox import Isolation, SandboxSession
from lsa_utils.infra.cache import atomic_write, config_key, stage_digest, verified
from lsa_utils.infra.progress import progress_bar
from lsa_utils.tasks.prompts import evaluation_context
from lsa_utils.tasks.spec import get_task

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class FamilyScore:
    family: str
    metric: str
    score: float  # percent
    correct: list[float]  # per item: 1 / 0 (True / False), or the pass@1 estimate from n samples
    outputs: list[str]  # chosen option or generated text (the first sample), per item


def last_number(text: str) -> str | None:
    """The last number in a text (GSM8K's answer convention), without trailing ``.0``."""
    numbers = _NUMBER.findall(text)
    return numbers[-1].removesuffix(".0") if numbers else None


def _function_only(code: str) -> str:
    """``code`` up to where the function ends: the first later non-blank line at column 0 (prose after the
    code, a test, a code fence, the next definition), as the benchmarks' stop sequences do."""
    lines = code.split("\n")
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() and not line[0].isspace()), len(lines))
    return "\n".join(lines[:end])


def extract_program(completion: str, entry_point: str, code_prefix: str) -> str:
    """The generated function, from its ``def`` to its end, after what the prompt gave before the ``def``
    (HumanEval's imports); a completion that is only a body gets the prompt's signature prepended."""
    definition = re.compile(rf"def\s+{re.escape(entry_point)}\b")
    match = definition.search(completion)
    if match:
        given = definition.search(code_prefix)
        preamble = code_prefix[: given.start()] if given else ""
        return preamble + _function_only(completion[match.start():]).strip()
    body = _function_only(completion)
    if code_prefix.endswith("\n"):  # a body on lines of its own keeps its indentation
        return code_prefix + body.rstrip()
    return f"{code_prefix} {body.strip()}"


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from ``n`` samples of which ``c`` pass: 1 - C(n - c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def sampled_pass_at_1(judged: Sequence[bool], n: int) -> list[float]:
    """Per item, the unbiased pass@1 estimate from its ``n`` judged samples (``judged`` item after item)."""
    if len(judged) % n:
        raise ValueError(f"{len(judged)} judged samples are not {n} per item")
    return [pass_at_k(n, sum(judged[i:i + n]), 1) for i in range(0, len(judged), n)]


def run_programs(programs: Sequence[str], tests: Sequence[str], timeout_s: float = 5.0,
                 isolation: Isolation = "bubblewrap") -> list[str]:
    """Sandbox status of each program against its hidden tests, all in one sandbox session."""
    with SandboxSession(isolation) as sandbox:
        return [sandbox.run(program, test, timeout_s).status for program, test in zip(programs, tests)]


def judge(family: str, dataset: Dataset, outputs: Sequence[int | str], sandbox: Isolation = "bubblewrap") -> list[bool]:
    """Correctness per item of chosen option indices (multiple choice) or generated continuations (code
    runs under the ``sandbox`` isolation)."""
    scoring = get_task(family).scoring
    if scoring == "multiple_choice":
        return [pick == row["label"] for pick, row in zip(outputs, dataset)]
    if scoring == "last_number":
        return [last_number(text) == row["answer"] for text, row in zip(outputs, dataset)]
    programs = [extract_program(text, row["entry_point"], row["code_prefix"]) for text, row in zip(outputs, dataset)]
    return [status == "passed" for status in run_programs(programs, dataset["test_code"], isolation=sandbox)]


def answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, family: str, dataset: Dataset,
            max_new_tokens: int = 64, batch_size: int = 64) -> list[str]:
    """The model's greedy answers, unjudged: the chosen option's text, or the generated continuation."""
    check_finite(model)
    if get_task(family).scoring == "multiple_choice":
        picks = choose_options(model, tokenizer, dataset, batch_size)
        return [row["choices"][p] for p, row in zip(picks, dataset)]
    return generate(model, tokenizer, [evaluation_context(row) for row in dataset], max_new_tokens, batch_size)


def evaluate_family(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, family: str,
                    dataset: Dataset, max_new_tokens: int = 64, batch_size: int = 64, n_samples: int = 1,
                    temperature: float = 0.0, sandbox: Isolation = "bubblewrap") -> FamilyScore:
    """Score one model on one task family's split (`NonFiniteModel` for a model with NaN or inf weights).

    Generated answers are greedy by default; with ``n_samples`` at a ``temperature`` each item scores the
    unbiased pass@1 estimate c / n of its samples (multiple choice reads logits and ignores both).
    Generated code runs in bubblewrap, or under the in-process guard with ``sandbox="guard"``, which is
    not a security boundary.
    """
    check_finite(model)
    check_sampling(n_samples, temperature)
    spec = get_task(family)
    if spec.scoring == "multiple_choice":
        picks = choose_options(model, tokenizer, dataset, batch_size)
        correct = judge(family, dataset, picks, sandbox)
        outputs = [row["choices"][p] for p, row in zip(picks, dataset)]
    else:
        n = n_samples if temperature > 0 else 1
        samples = generate(model, tokenizer, [evaluation_context(row) for row in dataset], max_new_tokens,
                           batch_size, n, temperature)
        repeated = dataset if n == 1 else dataset.select([i for i in range(len(dataset)) for _ in range(n)])
        judged = judge(family, repeated, samples, sandbox)
        correct = judged if n == 1 else sampled_pass_at_1(judged, n)
        outputs = samples[::n]
    score = 100.0 * sum(correct) / max(1, len(correct))
    return FamilyScore(family, spec.metric, score, correct, outputs)


def score_models(models: Mapping[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase,
                 tasks: Mapping[str, DatasetDict], split: str = "test", max_new_tokens: int = 64,
                 batch_size: int = 64, cache: Path | None = None, model_keys: Mapping[str, str] | None = None,
                 n_samples: int = 1, temperature: float = 0.0,
                 sandbox: Isolation = "bubblewrap") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model on every family: a tidy score table and a per-item table (for failure analysis); greedy,
    or ``n_samples`` at a ``temperature`` (see `evaluate_family`).

    With ``cache`` and ``model_keys`` (what identifies each model's weights), each (model, family) result
    is stored as JSON, keyed also by the evaluator's code, and read back on the next call instead of being
    recomputed (unless it fails its checksum).
    """
    scores, items = [], []
    for (name, model), (family, splits) in progress_bar(list(product(models.items(), tasks.items())),
                                                desc="evaluate", unit="run"):
        dataset = splits[split]
        path = None
        if cache is not None and model_keys is not None:
            first = [evaluation_context(row) for row in dataset.select(range(min(3, len(dataset))))]
            key = config_key({"model": model_keys[name], "family": family, "split": split, "n": len(dataset),
                              "max_new_tokens": max_new_tokens, "contexts": first, "code": stage_digest("scores"),
                              **({"sampling": [n_samples, temperature]} if temperature > 0 else {})})
            path = Path(cache) / "scores" / f"{name}-{family}-{key}.json"
        if path is not None and verified(path):
            result = FamilyScore(**json.loads(path.read_text()))
        else:
            result = evaluate_family(model, tokenizer, family, dataset, max_new_tokens, batch_size, n_samples,
                                     temperature, sandbox)
            if path is not None:
                with atomic_write(path, checksum=True) as tmp:
                    tmp.write_text(json.dumps(asdict(result)))
        scores.append({"model": name, "task": family, "metric": result.metric, "score": result.score})
        items += [{"model": name, "task": family, "item": i, "correct": ok, "output": out}
                  for i, (ok, out) in enumerate(zip(result.correct, result.outputs))]
    return pd.DataFrame(scores), pd.DataFrame(items)
