"""MBPP (google-research-datasets/mbpp, ``full``): write a function from a description and its signature.

Transfer: train from ``train`` (the paper's 300), align and extract from ``validation`` + ``prompt``;
test = ``test`` (500 problems).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from datasets import Dataset, DatasetDict, concatenate_datasets

from lsa_utils.tasks.benchmarks._splits import as_splits, items
from lsa_utils.tasks.spec import TaskItem, get_task

_SIGNATURE = re.compile(r"^def\s+(\w+)\s*\(.*\)\s*(->[^:]*)?:", re.MULTILINE)


def reference_code(row: Mapping) -> str:
    """A row's reference solution with Unix line ends (MBPP's use Windows ones)."""
    return row["code"].replace("\r\n", "\n").strip()


def signature(code: str) -> tuple[str, str]:
    """(the reference solution's last top-level ``def`` line, its function name): the function the tests call
    is the last one defined (helpers come first)."""
    matches = list(_SIGNATURE.finditer(code))
    if not matches:
        raise ValueError(f"no function definition in MBPP code {code[:60]!r}")
    return matches[-1].group(0), matches[-1].group(1)


def to_item(row: Mapping) -> TaskItem:
    """A row ``{task_id, text, code, test_list, test_setup_code}``."""
    spec = get_task("mbpp")
    code = reference_code(row)
    line, name = signature(code)
    tests = "\n".join([row.get("test_setup_code") or "", *row["test_list"]]).strip()
    return {
        "prompt": f"{spec.instruction}{row['text']}\n{line}",
        "answer_prefix": spec.answer_prefix,
        "response": f"{spec.answer_prefix}{code}",
        "answer": code,
        "entry_point": name,
        "code_prefix": line,
        "test_code": tests,
        "subjects": [f"mbpp/{row['task_id']}"],
        "frequency": 1.0,
    }


def build_splits(raw: Mapping[str, Dataset], seed: int) -> DatasetDict:
    held = items(concatenate_datasets([raw["validation"], raw["prompt"]]), to_item)
    return as_splits("mbpp", held, items(raw["test"], to_item), seed, train_pool=items(raw["train"], to_item))
