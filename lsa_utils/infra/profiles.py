"""Parameter profiles: one YAML file per setting (`params/<name>.yaml`), handed to the notebooks.

A profile has an `all` section that every notebook receives and optional sections keyed by notebook
stem that are merged over it for that notebook only:

    all:
      profile: cpu
      device: auto
      world: {n_entities: 500}
    00_world_and_models:
      n_show: 3

Section names are checked against the notebooks that exist, so a typo in a section name is an error
instead of a setting that silently never applies. What the sections hold is checked by the runner before
any notebook runs (`lsa_utils.infra.schema`, with the study's types in `lsa_utils.study.profile_schema`):
types, unknown keys at any depth, unknown choices, each problem named by its key path.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lsa_utils.infra.paths import NOTEBOOKS_DIR, PARAMS_DIR

COMMON_SECTION = "all"


def available_profiles(params_dir: Path = PARAMS_DIR) -> list[str]:
    """Names of the profiles in `params_dir`, sorted."""
    return sorted(p.stem for p in Path(params_dir).glob("*.yaml"))


def load_profile(
    name_or_path: str | Path, *, notebooks_dir: Path = NOTEBOOKS_DIR, params_dir: Path = PARAMS_DIR
) -> dict[str, dict[str, Any]]:
    """Read a profile by name (`params/<name>.yaml`) or by path, and check its sections.

    Raises FileNotFoundError listing the available profiles when there is no such file, and ValueError
    naming any section that is neither `all` nor the stem of a notebook in `notebooks_dir`.
    """
    path = profile_path(name_or_path, Path(params_dir))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError(f"profile {path} must be a mapping of sections, got {type(data).__name__}")
    _check_sections(data, path, Path(notebooks_dir))
    return {str(section): dict(values or {}) for section, values in data.items()}


def notebook_parameters(profile: Mapping[str, Mapping[str, Any]], notebook_stem: str) -> dict[str, Any]:
    """The parameters one notebook receives: `all`, with the notebook's own section merged over it."""
    return merge_parameters(profile.get(COMMON_SECTION, {}), profile.get(notebook_stem, {}))


def merge_parameters(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into a copy of `base`: nested mappings merge key by key, anything else replaces.

    Deep, so a notebook section can change one field of a nested setting (`world: {seed: 2}`) without
    restating the rest.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_parameters(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def profile_path(name_or_path: str | Path, params_dir: Path = PARAMS_DIR) -> Path:
    """A name means `params_dir/<name>.yaml`; a Path, or a string with a slash or a YAML suffix, is a path."""
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or "/" in text or text.endswith((".yaml", ".yml"))
    path = Path(text) if is_path else params_dir / f"{text}.yaml"
    if not path.is_file():
        available = ", ".join(available_profiles(params_dir)) or "none"
        raise FileNotFoundError(f"no profile {text!r} (looked for {path}); available profiles: {available}")
    return path


def _check_sections(data: Mapping[Any, Any], path: Path, notebooks_dir: Path) -> None:
    """Every section must be `all` or a notebook stem, and hold a mapping."""
    stems = sorted(p.stem for p in notebooks_dir.glob("*.ipynb") if not p.name.startswith("."))
    valid = [COMMON_SECTION, *stems]
    unknown = [str(section) for section in data if section not in valid]
    if unknown:
        raise ValueError(
            f"profile {path.name}: unknown section(s) {', '.join(map(repr, unknown))}; "
            f"valid sections: {', '.join(valid)} (notebooks in {notebooks_dir})"
        )
    for section, values in data.items():
        if values is not None and not isinstance(values, Mapping):
            raise ValueError(f"profile {path.name}: section {section!r} must be a mapping, got {values!r}")
