"""Configuration keys are stable and sensitive; atomic writes never leave partial results; a damaged
cache entry is reported, removed and recomputed; code keys change with the code a stage runs, only."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_layout import _imported_modules

from lsa_utils.infra.cache import (
    MANIFEST, STAGE_SOURCES, CorruptCacheEntry, atomic_dir, atomic_write, config_key, entry_problem,
    source_digest, verified,
)
from lsa_utils.infra.paths import PACKAGE_DIR


def test_key_is_stable_across_key_order() -> None:
    a = {"model": {"layers": 4, "width": 96}, "seed": 0, "tasks": ["facts", "arith"]}
    b = {"tasks": ["facts", "arith"], "seed": 0, "model": {"width": 96, "layers": 4}}
    assert config_key(a) == config_key(b)
    assert len(config_key(a)) == 16 and int(config_key(a), 16) >= 0


@pytest.mark.parametrize(
    "changed",
    [
        {"model": {"layers": 5, "width": 96}, "seed": 0},
        {"model": {"layers": 4, "width": 96}, "seed": 1},
        {"model": {"layers": 4, "width": 96}, "seed": "0"},
        {"model": {"layers": 4, "width": 96}, "seed": 0, "extra": None},
    ],
)
def test_key_changes_with_any_value(changed: dict) -> None:
    assert config_key(changed) != config_key({"model": {"layers": 4, "width": 96}, "seed": 0})


def test_key_rejects_non_json_values() -> None:
    with pytest.raises(TypeError):
        config_key({"fn": object()})


def test_atomic_write_replaces_on_success(tmp_path) -> None:
    target = tmp_path / "sub" / "table.csv"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith("table.csv") and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_atomic_write_keeps_old_file_when_body_raises(tmp_path) -> None:
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_replaces_only_after_success(tmp_path) -> None:
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "model.safetensors").write_text("new")
        assert (target / "old.bin").exists()
    assert [p.name for p in target.iterdir()] == ["model.safetensors"]
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_creates_new_directory(tmp_path) -> None:
    with atomic_dir(tmp_path / "a" / "ckpt") as tmp:
        (tmp / "config.json").write_text("{}")
    assert (tmp_path / "a" / "ckpt" / "config.json").read_text() == "{}"


def test_atomic_dir_keeps_old_directory_when_body_raises(tmp_path) -> None:
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.bin").write_text("half")
        raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["old.bin"]
    assert list(tmp_path.iterdir()) == [target]


def _cached_dir(path: Path, build: Callable[[Path], None]) -> bool:
    """A cache reader as the stages write one: reuse an intact entry, else build it; True if it was built."""
    if verified(path):
        return False
    with atomic_dir(path, checksum=True) as tmp:
        build(tmp)
    return True


def _checkpoint(tmp: Path) -> None:
    (tmp / "model.safetensors").write_bytes(bytes(range(256)) * 16)
    (tmp / "tokenizer").mkdir()
    (tmp / "tokenizer" / "tokenizer.json").write_text('{"vocab": {}}')


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_an_intact_entry_verifies_and_is_reused(tmp_path) -> None:
    entry = tmp_path / "student-abc"
    assert _cached_dir(entry, _checkpoint)
    assert json.loads((entry / MANIFEST).read_text()).keys() == {"model.safetensors", "tokenizer/tokenizer.json"}
    assert entry_problem(entry) is None and verified(entry)
    assert not _cached_dir(entry, _checkpoint)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda e: _flip_a_byte(e / "model.safetensors"), "model.safetensors: checksum mismatch"),
        (lambda e: (e / "model.safetensors").write_bytes(b"\0" * 8), "model.safetensors: checksum mismatch"),
        (lambda e: (e / "tokenizer" / "tokenizer.json").unlink(), "tokenizer/tokenizer.json: missing"),
        (lambda e: (e / "model-00002.safetensors").write_bytes(b"\0" * 3), "model-00002.safetensors: not in the"),
        (lambda e: (e / MANIFEST).unlink(), "no checksum manifest"),
        (lambda e: (e / MANIFEST).write_text('{"model.safe'), ".sha256: unreadable checksum manifest"),
    ],
    ids=["byte flipped", "truncated", "file missing", "extra partial file", "no manifest", "torn manifest"],
)
def test_a_damaged_directory_entry_is_reported_removed_and_recomputed(tmp_path, damage, problem) -> None:
    entry = tmp_path / "models" / "student-abc"
    _cached_dir(entry, _checkpoint)
    intact = {p.relative_to(entry): p.read_bytes() for p in entry.rglob("*") if p.is_file()}
    damage(entry)
    with pytest.warns(CorruptCacheEntry) as caught:
        assert _cached_dir(entry, _checkpoint)
    (warning,) = caught
    assert str(warning.message).startswith(f"cache entry {entry} is corrupt ({problem}")
    assert str(warning.message).endswith("); removed, recomputing")
    assert {p.relative_to(entry): p.read_bytes() for p in entry.rglob("*") if p.is_file()} == intact
    assert verified(entry) and list(entry.parent.iterdir()) == [entry]


def test_a_file_entry_carries_a_sidecar_checksum(tmp_path) -> None:
    entry = tmp_path / "scores" / "m-facts-abc.json"
    with atomic_write(entry, checksum=True) as tmp:
        tmp.write_text('{"score": 50.0}')
    assert sorted(p.name for p in entry.parent.iterdir()) == [".m-facts-abc.json.sha256", "m-facts-abc.json"]
    assert verified(entry)
    entry.write_text('{"score": 90.0}')  # same size, another value
    with pytest.warns(CorruptCacheEntry, match=rf"cache entry {entry} is corrupt \(m-facts-abc.json: checksum"):
        assert not verified(entry)
    assert not list(entry.parent.iterdir())  # the entry and its checksum are gone
    assert not verified(entry)  # absent: recompute, nothing to report


def test_a_file_entry_without_its_checksum_is_not_trusted(tmp_path) -> None:
    """Entries written before checksums existed (or by a plain atomic write) are recomputed."""
    entry = tmp_path / "transfer" / "sft-facts-abc.json"
    with atomic_write(entry) as tmp:
        tmp.write_text("{}")
    with pytest.warns(CorruptCacheEntry, match="no checksum manifest"):
        assert not verified(entry)
    assert not entry.exists()


def test_an_interrupted_checksummed_write_leaves_nothing(tmp_path) -> None:
    entry = tmp_path / "targets-abc.safetensors"
    with pytest.raises(RuntimeError), atomic_write(entry, checksum=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert not list(tmp_path.iterdir())


def _package_copies(tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of the package in other folders (the second made from the first: others may be editing)."""
    before, after = tmp_path / "before" / "lsa_utils", tmp_path / "after" / "lsa_utils"
    shutil.copytree(PACKAGE_DIR, before, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(before, after)
    return before, after


def _digests(root: Path) -> dict[str, str]:
    return {stage: source_digest(*parts, root=root) for stage, parts in STAGE_SOURCES.items()}


@pytest.mark.parametrize(
    ("module", "changed"),
    [
        ("study/report.py", set()),
        ("study/plots.py", set()),
        ("infra/runner.py", set()),
        ("training/trainer.py", {"statistics", "transfer"}),
        ("evaluation/generation.py", {"scores", "transfer"}),
        ("study/methods.py", {"targets", "statistics", "transfer"}),
        ("tasks/world/knowledge.py", {"zoo", "transfer"}),
        ("tasks/prompts.py", set(STAGE_SOURCES)),
        ("infra/numerics.py", set(STAGE_SOURCES)),
        ("__init__.py", set(STAGE_SOURCES)),
    ],
)
def test_a_code_change_changes_the_keys_of_what_it_affects_only(tmp_path, module, changed) -> None:
    before, after = _package_copies(tmp_path)
    with open(after / module, "a", encoding="utf-8") as f:
        f.write("\n# an edit\n")
    old, new = _digests(before), _digests(after)  # equal where unchanged: only paths relative to the root count
    assert {stage for stage in STAGE_SOURCES if old[stage] != new[stage]} == changed


def test_a_new_module_in_a_stage_package_changes_its_key(tmp_path) -> None:
    before, after = _package_copies(tmp_path)
    (after / "training" / "schedules.py").write_text("WARMUP = 10\n")
    assert source_digest("training", root=before) != source_digest("training", root=after)
    with pytest.raises(FileNotFoundError, match="trainer2"):
        source_digest("training/trainer2.py", root=before)


# What each stage's code is (the modules that compute its entries), and the infra modules that change no
# computed value; every module they import, at any depth, must be in the stage's source.
STAGE_ENTRY_MODULES = {
    "zoo": ("lsa_utils.tasks.world.zoo",),
    "targets": ("lsa_utils.semalign.targets",),
    "statistics": ("lsa_utils.semalign.attribution", "lsa_utils.baselines.seeking"),
    "scores": ("lsa_utils.evaluation.scoring", "lsa_utils.evaluation.sandbox.server"),
    "transfer": ("lsa_utils.study.grid", "lsa_utils.evaluation.sandbox.server"),
}
BOOKKEEPING = {"infra/__init__.py", "infra/cache.py", "infra/paths.py", "infra/records.py", "infra/outputs.py",
               "infra/profiles.py", "infra/schema.py", "infra/runner.py", "infra/progress.py", "infra/html.py"}


def _module_file(name: str) -> Path | None:
    relative = Path(*name.split(".")[1:])
    candidates = [PACKAGE_DIR / relative.with_suffix(".py")] if relative.parts else []
    return next((p for p in [*candidates, PACKAGE_DIR / relative / "__init__.py"] if p.exists()), None)


def _imports(path: Path) -> set[str]:
    """The lsa_utils modules ``path`` imports that are files of the package (see `test_layout`)."""
    return {name for name in _imported_modules(path) if _module_file(name)}


def _import_closure(modules: tuple[str, ...]) -> set[str]:
    """Source files (relative to the package) that importing ``modules`` runs, packages' __init__ included."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        parts = todo.pop().split(".")
        for name in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if name not in seen and (path := _module_file(name)):
                seen.add(name)
                todo += _imports(path)
    return {_module_file(name).relative_to(PACKAGE_DIR).as_posix() for name in seen}


def _source_files(parts: tuple[str, ...]) -> set[str]:
    files = set()
    for part in parts:
        target = PACKAGE_DIR / part
        files |= {p.relative_to(PACKAGE_DIR).as_posix() for p in target.rglob("*.py")} if target.is_dir() else {part}
    return files


@pytest.mark.parametrize("stage", STAGE_SOURCES)
def test_each_stage_source_covers_what_its_code_imports(stage) -> None:
    needed = _import_closure(STAGE_ENTRY_MODULES[stage]) - BOOKKEEPING
    uncovered = {f for f in needed if not f.endswith("__init__.py")} - _source_files(STAGE_SOURCES[stage])
    assert not uncovered, f"stage {stage} runs modules its cache key does not hash: {sorted(uncovered)}"
