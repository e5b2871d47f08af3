"""The four real benchmarks as task splits in the item schema of `lsa_utils.tasks.spec.TaskItem`.

Each benchmark is one `TaskSpec` (``mmlu``, ``gsm8k``, ``humaneval``, ``mbpp``, registered in
`lsa_utils.tasks.spec`) and one module here that turns a row of the benchmark's own schema into an item
and builds the paper's splits (docs/method.md section 4, the protocol). The world's families and
these go through the same batches, trainer and evaluator.

Example:
    >>> splits = load_benchmark("gsm8k")                                    # doctest: +SKIP
    >>> splits["train"][0]["prompt"], splits["test"][0]["answer"]
    >>> load_benchmark("mbpp", data_files={"train": "mbpp/train.jsonl", ...})  # a local copy, same schema
"""

from __future__ import annotations

from lsa_utils.tasks.benchmarks.sources import (
    BENCHMARKS, BenchmarkSource, BenchmarkUnavailable, check_available, load_benchmark, source_record,
)

__all__ = ["BENCHMARKS", "BenchmarkSource", "BenchmarkUnavailable", "check_available", "load_benchmark",
           "source_record"]
