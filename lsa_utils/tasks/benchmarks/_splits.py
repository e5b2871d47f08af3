"""The paper's split sizes drawn from a benchmark's pool of transfer rows: seeded, disjoint, in order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from datasets import Dataset, DatasetDict, concatenate_datasets

from lsa_utils.tasks.spec import TaskItem, get_task


def items(rows: Iterable[Mapping], to_item: Callable[[Mapping], TaskItem]) -> Dataset:
    return Dataset.from_list([to_item(row) for row in rows])


def transfer_splits(task: str, pool: Dataset, seed: int) -> dict[str, Dataset]:
    """``align`` and ``extract`` (LaTen's sizes) first, then up to the spec's ``train`` size, from a shuffled pool."""
    sizes = get_task(task).split_sizes
    needed = sizes["align"] + sizes["extract"]
    if len(pool) <= needed:
        raise ValueError(f"{task}: {len(pool)} transfer rows, fewer than align + extract ({needed}) and a train split")
    pool = pool.shuffle(seed=seed)
    align = pool.select(range(sizes["align"]))
    extract = pool.select(range(sizes["align"], needed))
    train = pool.select(range(needed, min(len(pool), needed + sizes["train"])))
    return {"train": train, "align": align, "extract": extract}


def concatenated(parts: Iterable[Dataset]) -> Dataset:
    return concatenate_datasets(list(parts))


def as_splits(task: str, pool: Dataset, test: Dataset, seed: int) -> DatasetDict:
    return DatasetDict({**transfer_splits(task, pool, seed), "test": test})
