"""The package's layout is the pipeline: each stage imports only from itself and the stages before it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lsa_utils.infra.paths import PACKAGE_DIR

STAGES = ("infra", "tasks", "models", "semalign", "training", "baselines", "evaluation", "study")
ENTRY_POINTS = ("__init__.py", "__main__.py")  # the public API and the command line may reach any stage


def _stage(module: str) -> str | None:
    """The stage a dotted module name belongs to (None outside the package's stages)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "lsa_utils" and len(parts) > 1 and parts[1] in STAGES else None


def _imported_modules(path: Path) -> set[str]:
    """Every lsa_utils module ``path`` imports, at any depth of the file (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("lsa_utils")}


def _stage_modules() -> list[tuple[str, Path]]:
    return [(path.relative_to(PACKAGE_DIR).parts[0], path) for path in sorted(PACKAGE_DIR.rglob("*.py"))
            if path.relative_to(PACKAGE_DIR).parts[0] in STAGES]


def test_every_module_sits_in_a_stage():
    loose = [p.name for p in PACKAGE_DIR.glob("*.py") if p.name not in ENTRY_POINTS]
    assert not loose, f"modules outside the stage folders {STAGES}: {loose}"
    assert {p.name for p in PACKAGE_DIR.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(STAGES)


@pytest.mark.parametrize(("stage", "path"), _stage_modules(), ids=lambda v: str(v.relative_to(PACKAGE_DIR))
                         if isinstance(v, Path) else v)
def test_no_module_imports_from_a_later_stage(stage, path):
    later = {name for name in _imported_modules(path)
             if (target := _stage(name)) is not None and STAGES.index(target) > STAGES.index(stage)}
    assert not later, f"{path.relative_to(PACKAGE_DIR)} (stage {stage}) imports from later stages: {sorted(later)}"


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from lsa_utils.study.grid import run_grid\n", encoding="utf-8")
    assert _imported_modules(module) == {"lsa_utils.study.grid", "lsa_utils.study.grid.run_grid"}
    assert _stage("lsa_utils.study.grid") == "study" and _stage("lsa_utils") is None
