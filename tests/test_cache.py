"""Configuration keys are stable and sensitive; atomic writes never leave partial results."""

import pytest

from lsa_utils.infra.cache import atomic_dir, atomic_write, config_key


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
