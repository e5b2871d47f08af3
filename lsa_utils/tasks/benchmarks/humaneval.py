"""HumanEval (openai/openai_humaneval): complete a function from its signature and docstring; pass@1.

HumanEval has only its 164 test problems. Transfer reads code-instruction items in HumanEval's own
format made from MBPP's non-test rows (the description becomes the docstring), so no transfer item is a
test problem; the paper's own instruction set is not pinned here.
"""

from __future__ import annotations

from collections.abc import Mapping

from datasets import Dataset, DatasetDict, concatenate_datasets

from lsa_utils.tasks.benchmarks import mbpp
from lsa_utils.tasks.benchmarks._splits import as_splits, items
from lsa_utils.tasks.spec import TaskItem, get_task


def to_item(row: Mapping) -> TaskItem:
    """A row ``{task_id, prompt, canonical_solution, test, entry_point}``; its tests define ``check``."""
    spec = get_task("humaneval")
    solution = row["prompt"] + row["canonical_solution"]
    return {
        "prompt": f"{spec.instruction}{row['prompt']}",
        "answer_prefix": spec.answer_prefix,
        "response": f"{spec.answer_prefix}{solution}",
        "answer": solution,
        "entry_point": row["entry_point"],
        "code_prefix": row["prompt"],
        "test_code": f"{row['test']}\ncheck({row['entry_point']})",
        "subjects": [row["task_id"]],
        "frequency": 1.0,
    }


def from_mbpp(row: Mapping) -> TaskItem:
    """An MBPP row as a HumanEval-style completion item: signature, then the description as a docstring."""
    code = mbpp.reference_code(row)
    line, name = mbpp.signature(code)
    helpers = code[: code.index(line)]  # imports and helper functions the reference defines first
    prompt = f'{helpers}{line}\n    """ {row["text"]} """\n'
    body = code[code.index(line) + len(line):].lstrip("\n")
    return to_item({"task_id": f"mbpp/{row['task_id']}", "prompt": prompt, "canonical_solution": body,
                    "entry_point": name,
                    "test": "def check(candidate):\n" + "".join(f"    {t}\n" for t in row["test_list"])})


def build_splits(raw: Mapping[str, Dataset], seed: int) -> DatasetDict:
    pool = items(concatenate_datasets([raw["train"], raw["validation"], raw["prompt"]]), from_mbpp)
    return as_splits("humaneval", pool, items(raw["test"], to_item), seed)
