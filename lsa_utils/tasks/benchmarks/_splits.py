"""The paper's split sizes drawn from a benchmark's rows: seeded, disjoint, in order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from datasets import Dataset, DatasetDict

from lsa_utils.tasks.spec import TaskItem, get_task


def items(rows: Iterable[Mapping], to_item: Callable[[Mapping], TaskItem]) -> Dataset:
    return Dataset.from_list([to_item(row) for row in rows])


def as_splits(task: str, pool: Dataset, test: Dataset, seed: int, train_pool: Dataset | None = None) -> DatasetDict:
    """``align`` and ``extract`` (LaTen's sizes) from the shuffled ``pool``, then up to the spec's ``train``
    size from the rest of it (or from the shuffled ``train_pool`` when the benchmark has its own), and ``test``."""
    sizes = get_task(task).split_sizes
    needed = sizes["align"] + sizes["extract"]
    if len(pool) < needed + (train_pool is None):
        raise ValueError(f"{task}: {len(pool)} rows for align + extract ({needed})"
                         + (" and a train split" if train_pool is None else ""))
    pool = pool.shuffle(seed=seed)
    if train_pool is None:
        train_pool, start = pool, needed
    else:
        train_pool, start = train_pool.shuffle(seed=seed), 0
    return DatasetDict({
        "train": train_pool.select(range(start, min(len(train_pool), start + sizes["train"]))),
        "align": pool.select(range(sizes["align"])),
        "extract": pool.select(range(sizes["align"], needed)),
        "test": test,
    })
