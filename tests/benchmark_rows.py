"""Made-up rows in each benchmark's own schema (the hub's column names and formats), written as JSON lines."""

from __future__ import annotations

import json


def _mmlu_rows(n: int, offset: int = 0) -> list[dict]:
    return [{"question": f"What is {i} plus one?", "subject": "elementary_mathematics",
             "choices": [str(i + 1), str(i + 2), str(i), str(i - 1)], "answer": 0}
            for i in range(offset, offset + n)]


def _gsm8k_rows(n: int, offset: int = 0) -> list[dict]:
    return [{"question": f"Ann has {i} apples and buys 1,000 more. How many does she have?",
             "answer": f"She has {i} + 1000 = <<{i}+1000={i + 1000}>>{i + 1000} apples.\n#### {i + 1000:,}"}
            for i in range(offset, offset + n)]


def _mbpp_rows(n: int, offset: int = 0) -> list[dict]:
    return [{"task_id": i, "text": f"Write a function to add {i} to a number.",
             "code": f"def add_{i}(x):\r\n    return x + {i}", "test_list": [f"assert add_{i}(1) == {i + 1}"],
             "test_setup_code": "", "challenge_test_list": []}
            for i in range(offset, offset + n)]


def _humaneval_rows(n: int) -> list[dict]:
    return [{"task_id": f"HumanEval/{i}", "entry_point": f"scale_{i}",
             "prompt": f'from typing import List\n\n\ndef scale_{i}(xs: List[int]) -> List[int]:\n'
                       f'    """ Multiply every number by {i}. """\n',
             "canonical_solution": f"    return [x * {i} for x in xs]\n",
             "test": f"def check(candidate):\n    assert candidate([1, 2]) == [{i}, {2 * i}]\n"}
            for i in range(1, n + 1)]


def write_parts(folder, parts: dict[str, list[dict]]) -> dict[str, str]:
    files = {}
    for part, rows in parts.items():
        path = folder / f"{part}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        files[part] = str(path)
    return files


FIXTURES = {
    "mmlu": lambda: {"dev": _mmlu_rows(20), "validation": _mmlu_rows(100, 20), "test": _mmlu_rows(6, 500)},
    "gsm8k": lambda: {"train": _gsm8k_rows(130), "test": _gsm8k_rows(5, 900)},
    "humaneval": lambda: {"test": _humaneval_rows(4), "train": _mbpp_rows(80), "validation": _mbpp_rows(20, 80),
                          "prompt": _mbpp_rows(10, 100)},
    "mbpp": lambda: {"train": _mbpp_rows(40), "validation": _mbpp_rows(70, 40), "prompt": _mbpp_rows(10, 110),
                     "test": _mbpp_rows(5, 200)},
}
