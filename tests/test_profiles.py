"""Profiles load by name or path, merge per notebook, and reject unknown sections and names."""

from pathlib import Path

import pytest

from lsa_utils.infra.paths import NOTEBOOKS_DIR
from lsa_utils.infra.profiles import available_profiles, load_profile, merge_parameters, notebook_parameters
from lsa_utils.infra.runner import _check_declared
from lsa_utils.models.hub import ModelSpec
from lsa_utils.models.loading import model_source
from lsa_utils.study.methods import TransferConfig
from lsa_utils.tasks.benchmarks import BENCHMARKS

WORLD_FAMILIES = ("facts", "arith", "code_complete", "code_write")

PROFILE = """\
all:
  profile: tiny
  device: auto
  world: {n_entities: 50, seed: 1}
00_world:
  n_show: 3
  world: {seed: 2}
"""


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """A params folder with one profile and a notebooks folder with two notebooks."""
    params, notebooks = tmp_path / "params", tmp_path / "notebooks"
    params.mkdir()
    notebooks.mkdir()
    (params / "tiny.yaml").write_text(PROFILE)
    for stem in ("00_world", "01_bases"):
        (notebooks / f"{stem}.ipynb").write_text("{}")
    return params, notebooks


def test_load_by_name_and_by_path_agree(dirs) -> None:
    params, notebooks = dirs
    by_name = load_profile("tiny", params_dir=params, notebooks_dir=notebooks)
    by_path = load_profile(params / "tiny.yaml", notebooks_dir=notebooks)
    assert by_name == by_path
    assert by_name["all"]["world"] == {"n_entities": 50, "seed": 1}


def test_notebook_section_merges_over_all(dirs) -> None:
    params, notebooks = dirs
    profile = load_profile("tiny", params_dir=params, notebooks_dir=notebooks)
    merged = notebook_parameters(profile, "00_world")
    assert merged == {"profile": "tiny", "device": "auto", "n_show": 3, "world": {"n_entities": 50, "seed": 2}}
    assert notebook_parameters(profile, "01_bases") == profile["all"]
    assert profile["all"]["world"]["seed"] == 1  # merging copies


def test_merge_replaces_non_mappings() -> None:
    assert merge_parameters({"a": {"b": 1}, "c": [1, 2]}, {"a": 5, "c": [3]}) == {"a": 5, "c": [3]}


def test_unknown_section_is_named_with_the_valid_ones(dirs) -> None:
    params, notebooks = dirs
    (params / "typo.yaml").write_text("all: {}\n00_wrold: {n_show: 1}\n")
    with pytest.raises(ValueError, match="00_wrold") as info:
        load_profile("typo", params_dir=params, notebooks_dir=notebooks)
    assert "all, 00_world, 01_bases" in str(info.value)


def test_section_must_be_a_mapping(dirs) -> None:
    params, notebooks = dirs
    (params / "flat.yaml").write_text("all: 3\n")
    with pytest.raises(ValueError, match="'all' must be a mapping"):
        load_profile("flat", params_dir=params, notebooks_dir=notebooks)


def test_missing_profile_lists_the_available_ones(dirs) -> None:
    params, notebooks = dirs
    with pytest.raises(FileNotFoundError, match="available profiles: tiny"):
        load_profile("huge", params_dir=params, notebooks_dir=notebooks)


@pytest.mark.skipif(not NOTEBOOKS_DIR.is_dir(), reason="no notebooks/ folder yet")
@pytest.mark.parametrize("name", available_profiles())
def test_shipped_profiles_match_the_notebooks(name: str) -> None:
    """Every shipped profile declares only known parameters and builds its settings: a typo in one that no
    test runs (the GPU and hub profiles) fails here, not hours into a run."""
    profile = load_profile(name, notebooks_dir=NOTEBOOKS_DIR)
    assert "all" in profile
    for notebook in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        parameters = notebook_parameters(profile, notebook.stem)
        _check_declared(notebook, parameters)
        source = model_source(parameters.get("zoo"), parameters.get("pair"), parameters.get("benchmarks"))
        tasks = set(source.get("benchmarks", {})) or set(WORLD_FAMILIES)
        for spec in source.get("pair", {}).values():
            ModelSpec.from_dict(spec)
        assert set(source.get("benchmarks", {})) <= set(BENCHMARKS)
        assert set(parameters.get("families", [])) | set(parameters.get("code_families", [])) <= tasks
        TransferConfig.from_dict(parameters.get("transfer", {}))
