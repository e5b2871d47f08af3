"""GSM8K (openai/gsm8k, ``main``): word problems; transfer rows from train, test = test."""

from __future__ import annotations

import re
from collections.abc import Mapping

from datasets import Dataset, DatasetDict

from lsa_utils.tasks.benchmarks._splits import as_splits, items
from lsa_utils.tasks.spec import TaskItem, get_task

_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations, e.g. <<48/2=24>>


def final_answer(solution: str) -> str:
    """The number after ``####``, without thousands separators."""
    return solution.rsplit("####", 1)[-1].strip().replace(",", "")


def to_item(row: Mapping) -> TaskItem:
    """A row ``{question, answer}`` whose answer is a rationale ending in ``#### <number>``."""
    spec = get_task("gsm8k")
    rationale = _CALCULATOR.sub("", row["answer"].rsplit("####", 1)[0]).strip()
    answer = final_answer(row["answer"])
    return {
        "prompt": f"{spec.instruction}{row['question']}",
        "answer_prefix": spec.answer_prefix,
        "response": f"{spec.answer_prefix} {rationale}\nThe answer is {answer}.",
        "answer": answer,
        "subjects": [row["question"][:80]],  # each problem is its own cluster
        "frequency": 1.0,
    }


def build_splits(raw: Mapping[str, Dataset], seed: int) -> DatasetDict:
    return as_splits("gsm8k", items(raw["train"], to_item), items(raw["test"], to_item), seed)
