"""Progress bars that never land in an executed notebook.

Under the runner (``python -m lsa_utils``, so ``make reproduce`` and the tests) a notebook's kernel is told
``LSA_PROGRESS=terminal``: its bars go to the runner's terminal, transient (they vanish when done), and the
bars of worker processes are off, so the terminal shows one bar per stage (the grid's runs, the zoo's
trainings) and the executed copy shows none. In JupyterLab the bars are widgets; in a plain Python
session they are text on stderr.

Example:
    >>> for item in progress_bar(range(3), desc="items", unit="item"):  # doctest: +SKIP
    ...     pass
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterable
from typing import Any

import tqdm
import tqdm.auto

PROGRESS = "LSA_PROGRESS"  # "terminal": set by the runner for the kernels it starts
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]  # so fd 2 stays the runner's terminal


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm.tqdm:
    """A tqdm bar drawn where the reader of this run looks (see the module docstring)."""
    if os.environ.get(PROGRESS) == "terminal":
        in_worker = multiprocessing.parent_process() is not None
        return tqdm.tqdm(iterable, file=sys.__stderr__, leave=False, disable=in_worker, **kwargs)
    return tqdm.auto.tqdm(iterable, **kwargs)
