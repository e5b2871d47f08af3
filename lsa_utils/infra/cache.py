"""Configuration keys, atomic writes and checksummed entries for the on-disk caches.

Expensive stages (zoo training, teacher activations, transfer runs, scores) are stored under a key derived
from their full configuration and from a digest of the source code they run (`stage_digest`), so a re-run
reuses them and a changed parameter or a changed module recomputes only what depends on it. Every write
goes to a temporary sibling first and is renamed into place only on success, so an interrupted run never
leaves a half-written checkpoint, data set or table that a later run would trust.

A cache entry (``checksum=True``) carries the sha256 of every file it holds: a directory a ``.sha256``
manifest inside it, a file a hidden ``.<name>.sha256`` sidecar written before the file is renamed into place.
Readers call `verified`, which recomputes them: an entry that is corrupt, truncated, missing a file or
written before checksums existed is reported (`CorruptCacheEntry`), removed, and recomputed by the caller.

Which source each stage's entries depend on (`STAGE_SOURCES`; paths under ``lsa_utils/``, a folder meaning
every module below it, and each module's package ``__init__.py`` files counted with it):

============  ==========================================  =================================================
stage         entries                                     source
============  ==========================================  =================================================
zoo           world/<key>, models/<name>-<key>            tasks/world, tasks/spec, tasks/prompts
targets       targets/targets-<key>.safetensors           semalign, models/{arch,batches,capture},
                                                          tasks/spec, tasks/prompts, study/methods (the
                                                          fitted map)
statistics    targets/{attribution,sensitivity}-<key>     as targets, + baselines, training
scores        scores/<model>-<task>-<key>.json            evaluation, models/{arch,batches}, tasks/spec,
                                                          tasks/prompts
transfer      transfer/<method>-<task>-<key>.json         study/{grid,methods,stats,executors}, training,
                                                          semalign, baselines, evaluation, models, tasks,
                                                          infra/device
============  ==========================================  =================================================

Every stage also depends on ``infra/numerics.py`` (the pinned numerical environment); the rest of
``infra`` is bookkeeping that changes no computed value. A stage's entries also depend on their inputs'
keys (a transfer run on its models' keys, which hold the zoo's digest), so the table lists only the code
each stage runs itself. ``tests/test_cache.py`` checks that every set covers what its modules import.

Example:
    >>> key = config_key({"layers": 4, "width": 96, "code": stage_digest("zoo")})
    >>> path = cache / f"student-{key}"                                  # doctest: +SKIP
    >>> if not verified(path):                                           # doctest: +SKIP
    ...     with atomic_dir(path, checksum=True) as tmp:
    ...         model.save_pretrained(tmp)
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lsa_utils.infra.paths import PACKAGE_DIR

MANIFEST = ".sha256"  # a directory entry's manifest; a file entry's sidecar is .<name>.sha256
_NUMERICS = "infra/numerics.py"
_TARGETS = ("semalign", "models/arch.py", "models/batches.py", "models/capture.py", "tasks/spec.py",
            "tasks/prompts.py", "study/methods.py", _NUMERICS)
STAGE_SOURCES: dict[str, tuple[str, ...]] = {
    "zoo": ("tasks/world", "tasks/spec.py", "tasks/prompts.py", _NUMERICS),
    "targets": _TARGETS,
    "statistics": (*_TARGETS, "baselines", "training"),
    "scores": ("evaluation", "models/arch.py", "models/batches.py", "tasks/spec.py", "tasks/prompts.py", _NUMERICS),
    "transfer": ("study/grid.py", "study/methods.py", "study/stats.py", "study/executors.py", "training",
                 "semalign", "baselines", "evaluation", "models", "tasks", _NUMERICS, "infra/device.py"),
}


class CorruptCacheEntry(UserWarning):
    """A cache entry failed its checksums; it was removed and is being recomputed."""


def config_key(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of the sha256 of `config` as canonical JSON (sorted keys, no spaces).

    Only JSON types are accepted (tuples count as lists): anything else raises TypeError rather than
    being turned into a string whose form could change between runs or machines.
    """
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@functools.cache
def source_digest(*parts: str, root: Path = PACKAGE_DIR) -> str:
    """A key of the source of ``parts`` (paths under ``root``; a folder: every module below it), with the
    ``__init__.py`` of each package on the way, since importing a module runs them. Once per process."""
    files: set[Path] = set()
    for part in parts:
        target = root / part
        if not target.exists():
            raise FileNotFoundError(f"no module or package {part} under {root}")
        files |= set(target.rglob("*.py")) if target.is_dir() else {target}
    packages = {package for path in files for package in path.parents if package.is_relative_to(root)}
    files |= {init for package in packages if (init := package / "__init__.py").exists()}
    return config_key({path.relative_to(root).as_posix(): _sha256(path) for path in sorted(files)})


def stage_digest(stage: str) -> str:
    """`source_digest` of the code a cached stage runs (`STAGE_SOURCES`), for the stage's cache keys."""
    return source_digest(*STAGE_SOURCES[stage])


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _temp_sibling(path: Path) -> Path:
    """A hidden, unique name next to `path` that keeps its suffixes, for tools that go by extension."""
    return path.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{path.name}")


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}{MANIFEST}")


def _files(directory: Path) -> dict[str, Path]:
    """Every file below `directory` but its manifest, by its path relative to `directory`."""
    return {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*"))
            if p.is_file() and p != directory / MANIFEST}


def _write_manifest(manifest: Path, files: Mapping[str, Path]) -> None:
    manifest.write_text(json.dumps({name: _sha256(path) for name, path in files.items()}, indent=0))


@contextmanager
def atomic_write(path: Path, *, checksum: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` when the body succeeds.

    On an exception the temporary file is removed and any existing `path` is left untouched. The body
    must create the temporary file (for example `df.to_csv(tmp)`). With `checksum` (a cache entry) its
    sidecar checksum is written first, so the file never appears without one (see `verified`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        if checksum:
            with atomic_write(_sidecar(path)) as manifest:
                _write_manifest(manifest, {path.name: tmp})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: Path, *, checksum: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory next to `path`; move it into place when the body succeeds.

    An existing `path` is replaced only after the body has succeeded; on an exception the temporary
    directory is removed and `path` is left untouched. Replacing an existing directory takes two
    renames, so for an instant `path` is absent; it is never half-written. With `checksum` (a cache
    entry) the manifest of every file's sha256 is written last, inside the directory (see `verified`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if checksum:
            _write_manifest(tmp / MANIFEST, _files(tmp))
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


def entry_problem(path: Path) -> str | None:
    """What is wrong with the cache entry at an existing `path` (e.g. ``model.safetensors: checksum
    mismatch``), or None when every file is there, nothing else is, and every checksum matches."""
    path = Path(path)
    manifest, files = (path / MANIFEST, _files(path)) if path.is_dir() else (_sidecar(path), {path.name: path})
    try:
        listed = json.loads(manifest.read_text())
    except FileNotFoundError:
        return "no checksum manifest, e.g. written before checksums were kept"
    except (ValueError, UnicodeDecodeError):
        listed = None
    if not isinstance(listed, dict):
        return f"{manifest.name}: unreadable checksum manifest"
    if missing := sorted(set(listed) - set(files)):
        return f"{missing[0]}: missing"
    if extra := sorted(set(files) - set(listed)):
        return f"{extra[0]}: not in the checksum manifest"
    return next((f"{name}: checksum mismatch" for name, p in files.items() if not _matches(p, listed[name])), None)


def _matches(path: Path, digest: str) -> bool:
    try:
        return _sha256(path) == digest
    except OSError:  # removed meanwhile, e.g. by another worker that found the entry corrupt
        return False


def verified(path: Path) -> bool:
    """Whether an intact cache entry is at `path`; a damaged one is reported, removed, and False returned,
    so that the caller recomputes it as if it had never been written."""
    path = Path(path)
    if not path.exists():
        return False
    problem = entry_problem(path)
    if problem is None:
        return True
    warnings.warn(f"cache entry {path} is corrupt ({problem}); removed, recomputing", CorruptCacheEntry,
                  stacklevel=2)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)  # another worker may be removing it too
    else:
        path.unlink(missing_ok=True)
        _sidecar(path).unlink(missing_ok=True)
    return False
