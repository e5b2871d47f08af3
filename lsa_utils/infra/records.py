"""What a notebook's process tells its run record: the models and data sets it loaded.

The runner names a file in ``LSA_SOURCES_NOTE`` before it executes a notebook; the loaders note what they
loaded there (ids, resolved revisions, dtypes, placements, data set fingerprints), and the runner folds it
into ``results/runs/<notebook>.json``. Outside the runner nothing is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lsa_utils.infra.cache import atomic_write

SOURCES_NOTE = "LSA_SOURCES_NOTE"


def note_sources(sources: Mapping[str, Any]) -> None:
    """Note the models and data sets this process loaded (only under the runner)."""
    path = os.environ.get(SOURCES_NOTE)
    if path and Path(path).parent.is_dir():
        with atomic_write(Path(path)) as tmp:
            tmp.write_text(json.dumps(sources, default=str), encoding="utf-8")


def read_sources(path: Path) -> dict[str, Any] | None:
    """What the notebook noted, or None when it loaded no models."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


class SourceUnavailable(RuntimeError):
    """A model or data set a profile names is neither local, nor cached, nor reachable: ``what`` is missing
    and ``how`` to provide it. The runner lists every ``what`` and each ``how`` once, before any notebook runs."""

    def __init__(self, what: str, how: str = "") -> None:
        super().__init__(f"{what}. {how}" if how else what)
        self.what, self.how = what, how
