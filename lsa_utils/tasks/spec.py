"""What a task is: one `TaskSpec` per task in one registry, and the item type every task's splits hold.

Everything the rest of the package needs to know about a task (how its prompts begin, how it is scored,
what the metric is called, what chance is, LaTen's budget for it, how reports label it, its split sizes)
lives in its `TaskSpec` and nowhere else, so adding a task is adding one entry to `TASKS`.

Example:
    >>> get_task("arith").scoring
    'last_number'
    >>> get_task("mmlu").answer_prefix
    'The answer is:'
    >>> get_task("mmlu_pro")
    Traceback (most recent call last):
    ...
    lsa_utils.tasks.spec.UnknownTask: unknown task 'mmlu_pro'; registered tasks: facts, arith, code_complete, code_write, mmlu, gsm8k, humaneval, mbpp

Kept free of torch and datasets, so that the report can read labels without loading either. (No
``from __future__ import annotations`` here: `TaskItem` needs its annotations evaluated so that
``NotRequired`` keys count as optional.)
"""

from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NotRequired, TypedDict

Scoring = Literal["multiple_choice", "last_number", "program"]
TRANSFER_SPLITS = ("train", "align", "extract")  # what a method may read; `test` is for scoring only


class TaskItem(TypedDict):
    """One row of a task split (an HF ``Dataset`` row is this dict).

    Every task:
        prompt: the user's turn, instruction included (it is wrapped by `chat_prompt`).
        answer_prefix: how the assistant's turn begins at evaluation; the model continues after it.
        response: the gold assistant turn (it starts with ``answer_prefix``), the training target.
        answer: the gold answer the metric compares with (an option, a number or a reference program).
        subjects: the recalled subjects (entity, item or function names) the item asks about.
        frequency: the corpus frequency weight of the item's rarest subject.
    ``multiple_choice`` tasks add:
        choices: the candidate answers; label: the index of the right one.
    ``program`` tasks add:
        entry_point: the function the tests call; code_prefix: its signature, prepended to a body
        that lacks it; test_code: the hidden tests, run in the sandbox.
    """

    prompt: str
    answer_prefix: str
    response: str
    answer: str
    subjects: list[str]
    frequency: float
    choices: NotRequired[list[str]]
    label: NotRequired[int]
    entry_point: NotRequired[str]
    code_prefix: NotRequired[str]
    test_code: NotRequired[str]


@dataclass(frozen=True)
class TaskSpec:
    """One task: its prompt format, its scoring and the per-task budgets of the methods.

    instruction: the opening of every prompt (the question or code follows it).
    answer_prefix: the answer prefix shared by every item, or None when each item states its own
        (the world's ``facts`` restate the question).
    scoring: ``multiple_choice`` (argmax over the choices' first tokens), ``last_number`` (exact match
        of the last number generated) or ``program`` (hidden tests in the sandbox, pass@1).
    benchmark: the benchmark the task is, or mirrors (a label for reports and the paper's numbers).
    laten_steps: LaTen's optimiser steps per extract example (docs/method.md section 3, LaTen's step 5).
    split_sizes: items per split; train as in the paper, align / extract as in LaTen's protocol.
    """

    name: str
    benchmark: str
    instruction: str
    answer_prefix: str | None
    scoring: Scoring
    laten_steps: int
    split_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def metric(self) -> str:
        return METRICS[self.scoring]

    @property
    def chance(self) -> float:
        """The score of guessing, in percent (four options for multiple choice)."""
        return 25.0 if self.scoring == "multiple_choice" else 0.0

    @property
    def label(self) -> str:
        """How tables and figures name the task, e.g. ``facts (MMLU)``."""
        return f"{self.name} ({self.benchmark})"


METRICS: dict[Scoring, str] = {"multiple_choice": "accuracy", "last_number": "exact_match", "program": "pass@1"}
CODE_INSTRUCTION = "Complete the following python function .\n\n\n"
CODE_ANSWER_PREFIX = "Here is the completed function :\n\n\n"

_WORLD_TASKS = (
    TaskSpec("facts", "MMLU",
             "The following are multiple choice questions ( with answers ) about people .\n\n", None,
             "multiple_choice", laten_steps=2,
             split_sizes={"train": 1000, "align": 80, "extract": 20, "test": 250}),
    TaskSpec("arith", "GSM8K", "Answer the following question .\n\n", "Answer :", "last_number", laten_steps=4,
             split_sizes={"train": 1000, "align": 80, "extract": 20, "test": 250}),
    TaskSpec("code_complete", "HumanEval", CODE_INSTRUCTION, CODE_ANSWER_PREFIX, "program", laten_steps=3,
             split_sizes={"train": 1000, "align": 80, "extract": 20, "test": 250}),
    TaskSpec("code_write", "MBPP", CODE_INSTRUCTION, CODE_ANSWER_PREFIX, "program", laten_steps=8,
             split_sizes={"train": 300, "align": 40, "extract": 32, "test": 250}),
)
# The four benchmarks, with the prompts of docs/method.md section 4; their items come from `tasks.benchmarks`
# and their test splits are the benchmarks' own (no size here).
_TRANSFER_SIZES = {"train": 1000, "align": 80, "extract": 20}
_CODE_PROMPT, _CODE_PREFIX = "Complete the following python function.\n\n\n", "Here is the completed function:\n\n\n"
_BENCHMARK_TASKS = (
    TaskSpec("mmlu", "MMLU", "The following are multiple choice questions (with answers) about ", "The answer is:",
             "multiple_choice", laten_steps=2, split_sizes=_TRANSFER_SIZES),
    TaskSpec("gsm8k", "GSM8K", "Answer the following question.\n\nQuestion: ", "Answer:", "last_number",
             laten_steps=4, split_sizes=_TRANSFER_SIZES),
    TaskSpec("humaneval", "HumanEval", _CODE_PROMPT, _CODE_PREFIX, "program", laten_steps=3,
             split_sizes=_TRANSFER_SIZES),
    TaskSpec("mbpp", "MBPP", _CODE_PROMPT, _CODE_PREFIX, "program", laten_steps=8,
             split_sizes={"train": 300, "align": 40, "extract": 32}),
)
TASKS: MappingProxyType[str, TaskSpec] = MappingProxyType(
    {spec.name: spec for spec in (*_WORLD_TASKS, *_BENCHMARK_TASKS)})
WORLD_TASKS: tuple[str, ...] = tuple(spec.name for spec in _WORLD_TASKS)  # the built-in world's four families
BENCHMARK_TASKS: tuple[str, ...] = tuple(spec.name for spec in _BENCHMARK_TASKS)  # the paper's four benchmarks


class UnknownTask(ValueError):
    """A task name that is not in the registry."""


def get_task(name: str) -> TaskSpec:
    """The registered `TaskSpec` called ``name``; an unknown name raises `UnknownTask` listing the others."""
    if name not in TASKS:
        raise UnknownTask(f"unknown task {name!r}; registered tasks: {', '.join(TASKS)}")
    return TASKS[name]


def check_split_counts(tasks: Mapping[str, Mapping[str, Sized]], families: Iterable[str], n_test: int | None,
                       n_fit: int = 0) -> None:
    """Before any run: each family is one of ``tasks`` (name -> splits) and has ``n_test`` test items (None:
    all) and ``n_fit`` train items. One ValueError names every shortfall (parameter, value, family, split
    size): the split sizes are known only once the tasks are built, and scoring fewer items than a profile
    asks for would make its tables say what they are not."""
    problems = []
    for family in families:
        if family not in tasks:
            problems.append(f"families: {family!r} is not a task of these models; valid: {', '.join(tasks)}")
            continue
        for parameter, n, split in (("n_test", n_test, "test"), ("n_fit", n_fit, "train")):
            size = len(tasks[family][split])
            if n is not None and n > size:
                problems.append(f"{parameter}: {n} is more than the {size} items of the {split} split of {family}; "
                                f"lower {parameter}" + (" (null: the whole split)" if parameter == "n_test" else ""))
    if problems:
        raise ValueError("\n".join(problems))
