"""MMLU (cais/mmlu, ``all``): four-option questions; transfer rows from dev + validation, test = test."""

from __future__ import annotations

from collections.abc import Mapping

from datasets import Dataset, DatasetDict, concatenate_datasets

from lsa_utils.tasks.benchmarks._splits import as_splits, items
from lsa_utils.tasks.spec import TaskItem, get_task

LETTERS = ("A", "B", "C", "D")


def to_item(row: Mapping) -> TaskItem:
    """A row ``{question, subject, choices[4], answer: int}``; the model picks a letter after the prefix."""
    spec = get_task("mmlu")
    subject = row["subject"].replace("_", " ")
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, row["choices"], strict=True))
    letter = LETTERS[row["answer"]]
    return {
        "prompt": f"{spec.instruction}{subject}.\n\n{row['question']}\n{options}\nAnswer:",
        "answer_prefix": spec.answer_prefix,
        "response": f"{spec.answer_prefix} {letter}",
        "answer": letter,
        "choices": list(LETTERS),
        "label": int(row["answer"]),
        "subjects": [row["subject"]],  # the cluster of the item-level statistics
        "frequency": 1.0,
    }


def build_splits(raw: Mapping[str, Dataset], seed: int) -> DatasetDict:
    pool = items(concatenate_datasets([raw["dev"], raw["validation"]]), to_item)
    return as_splits("mmlu", pool, items(raw["test"], to_item), seed)
