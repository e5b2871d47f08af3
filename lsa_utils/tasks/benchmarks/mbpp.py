"""MBPP (google-research-datasets/mbpp, ``full``): write a function from a description and its signature.

Transfer: train from ``train`` (the paper's 300), align and extract from ``validation`` + ``prompt``;
test = ``test`` (500 problems).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from datasets import Dataset, DatasetDict

from lsa_utils.tasks.benchmarks._splits import concatenated, items
from lsa_utils.tasks.spec import TaskItem, get_task

_SIGNATURE = re.compile(r"^def\s+(\w+)\s*\(.*\)\s*(->[^:]*)?:", re.MULTILINE)


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
    code = row["code"].replace("\r\n", "\n").strip()
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
    sizes = get_task("mbpp").split_sizes
    held = items(concatenated([raw["validation"], raw["prompt"]]), to_item).shuffle(seed=seed)
    n_align = sizes["align"]
    if len(held) < n_align + sizes["extract"]:
        raise ValueError(f"mbpp: {len(held)} validation + prompt rows, fewer than align + extract")
    train = items(raw["train"], to_item).shuffle(seed=seed)
    return DatasetDict({
        "train": train.select(range(min(len(train), sizes["train"]))),
        "align": held.select(range(n_align)),
        "extract": held.select(range(n_align, n_align + sizes["extract"])),
        "test": items(raw["test"], to_item),
    })
