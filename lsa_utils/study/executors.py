"""Where the grid's runs execute: in this process, on local worker processes, or on a Slurm cluster.

Every executor takes the same picklable jobs and returns their results; a run writes its own cache
entry, so workers share the on-disk caches and the table is the same whichever executor ran it.

- ``inprocess``: one after another, here (for debugging: breakpoints and tracebacks as usual);
- ``local`` (the default): worker processes that each load the models once; on CPU one worker per
  core with one thread each (two single-thread processes do 1.5x the work of one two-thread process
  here), on GPU one worker per visible device;
- ``slurm``: one cluster job per run through submitit, for users who outgrow one machine.

Example:
    >>> with make_executor("local") as executor:                      # doctest: +SKIP
    ...     table = run_grid(models, "teacher", methods, tasks, seeds, config, cache, evaluation,
    ...                      executor=executor)
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from lsa_utils.infra.numerics import configure_torch

EXECUTORS = ("inprocess", "local", "slurm")


class Executor:
    """Runs ``fn`` on every item and yields the results as they finish; a context manager."""

    name = "inprocess"

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            yield fn(item)

    def close(self) -> None:
        pass

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LocalWorkers(Executor):
    """A pool of spawned worker processes, kept for the executor's lifetime (models load once per worker)."""

    name = "local"

    def __init__(self, n_workers: int | None = None, threads_per_worker: int = 1) -> None:
        n_gpus = torch.cuda.device_count()
        self.n_workers = n_workers or n_gpus or os.cpu_count() or 1
        context = multiprocessing.get_context("spawn")  # no fork of a process that runs torch's threads
        devices = context.Queue()
        for index in range(self.n_workers if n_gpus else 0):
            devices.put(f"cuda:{index % n_gpus}")
        self._pool = ProcessPoolExecutor(self.n_workers, mp_context=context, initializer=_start_worker,
                                         initargs=(threads_per_worker, devices, n_gpus > 0))

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        futures = [self._pool.submit(fn, item) for item in items]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def __repr__(self) -> str:
        return f"LocalWorkers(n_workers={self.n_workers})"


def _start_worker(threads: int, devices: Any, on_gpu: bool) -> None:
    """A worker's numerics: a fixed number of threads, and its own GPU when there are some."""
    os.environ["LSA_NUM_THREADS"] = str(threads)  # what `configure_torch` sets when the worker loads models
    configure_torch()
    if on_gpu:
        os.environ["LSA_DEVICE"] = devices.get()  # resolve_device("auto") honours it


class Cluster(Executor):
    """One submitit job per item: Slurm where it is available, else submitit's local executor.

    ``executor`` may be any submitit executor (the tests use `submitit.LocalExecutor`); ``parameters``
    go to its ``update_parameters`` (e.g. ``timeout_min``, ``slurm_partition``, ``gpus_per_node``).
    """

    name = "slurm"

    def __init__(self, folder: str | Path, executor: Any = None, **parameters: Any) -> None:
        import submitit  # only cluster users pay for the import

        self._executor = executor if executor is not None else submitit.AutoExecutor(folder=str(folder))
        if parameters:
            self._executor.update_parameters(**parameters)

    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        items = list(items)
        for job in self._executor.map_array(fn, items) if items else []:
            yield job.result()

    def __repr__(self) -> str:
        return f"Cluster({type(self._executor).__name__})"


def make_executor(kind: str = "local", **options: Any) -> Executor:
    """An executor by name (``inprocess``, ``local`` or ``slurm``), with its options (e.g. ``n_workers``)."""
    if kind == "inprocess":
        return Executor(**options)
    if kind == "local":
        return LocalWorkers(**options)
    if kind == "slurm":
        return Cluster(**options)
    raise ValueError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
