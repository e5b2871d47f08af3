"""Configuration keys and atomic writes for the on-disk caches.

Expensive stages (zoo training, teacher activations, transfer runs) are stored under a key derived from
their full configuration, so a re-run reuses them and a changed parameter recomputes only what depends
on it. Every write goes to a temporary sibling first and is renamed into place only on success, so an
interrupted run never leaves a half-written checkpoint, data set or table that a later run would trust.

Example:
    >>> key = config_key({"layers": 4, "width": 96})
    >>> with atomic_dir(cache / f"student-{key}") as tmp:   # doctest: +SKIP
    ...     model.save_pretrained(tmp)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def config_key(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of the sha256 of `config` as canonical JSON (sorted keys, no spaces).

    Only JSON types are accepted (tuples count as lists): anything else raises TypeError rather than
    being turned into a string whose form could change between runs or machines.
    """
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _temp_sibling(path: Path) -> Path:
    """A hidden, unique name next to `path` that keeps its suffixes, for tools that go by extension."""
    return path.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{path.name}")


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` when the body succeeds.

    On an exception the temporary file is removed and any existing `path` is left untouched. The body
    must create the temporary file (for example `df.to_csv(tmp)`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory next to `path`; move it into place when the body succeeds.

    An existing `path` is replaced only after the body has succeeded; on an exception the temporary
    directory is removed and `path` is left untouched. Replacing an existing directory takes two
    renames, so for an instant `path` is absent; it is never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        _replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(new: Path, path: Path) -> None:
    """Rename `new` onto `path`, moving an existing `path` aside first and deleting it afterwards."""
    if not path.exists():
        new.rename(path)
        return
    old = _temp_sibling(path)
    path.rename(old)
    try:
        new.rename(path)
    except BaseException:
        old.rename(path)
        raise
    shutil.rmtree(old, ignore_errors=True)
