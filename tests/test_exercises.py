"""The teaching pack: every exercise, built from the study's tagged cells, runs on the teach profile in both
versions; the solutions pass their checks and the students' stubs fail them with the intended message."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

from lsa_utils.infra.progress import KERNEL_ARGUMENTS
from lsa_utils.infra.runner import KERNEL_NAME, default_notebooks
from lsa_utils.study.exercises import build_exercises, exercise_role, find_exercises

EXERCISES = sorted(find_exercises(default_notebooks()))


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pack on the teach profile, on the CPU, with its own cache: the zoo trains once, in the first run."""
    root = tmp_path_factory.mktemp("teach")
    build_exercises("teach", root / "exercises", device="cpu", overrides={"cache_dir": str(root / "cache")})
    return root / "exercises"


def _execute(notebook: Path) -> nbformat.NotebookNode:
    output = notebook.with_name(f"{notebook.stem}.executed.ipynb")
    papermill.execute_notebook(str(notebook), str(output), kernel_name=KERNEL_NAME, cwd=str(notebook.parent),
                               progress_bar=False, extra_arguments=KERNEL_ARGUMENTS)
    return nbformat.read(output, as_version=4)


def test_there_are_at_least_four_exercises():
    assert len(EXERCISES) >= 4, EXERCISES


@pytest.mark.parametrize("name", EXERCISES)
def test_solution_passes_its_check(pack: Path, name: str):
    executed = _execute(pack / f"{name}_solutions.ipynb")
    check = executed.cells[-1]
    assert exercise_role(check) == (name, "check")
    printed = "".join(out.get("text", "") for out in check.outputs if out.output_type == "stream")
    assert f"exercise {name}: correct" in printed


@pytest.mark.parametrize("name", EXERCISES)
def test_student_stub_fails_its_check_with_the_intended_message(pack: Path, name: str):
    student = nbformat.read(pack / f"{name}_student.ipynb", as_version=4)
    solution = next(c for c in student.cells if exercise_role(c) == (name, "solution"))
    assert "= None  # your answer" in solution.source and "def " not in solution.source
    with pytest.raises(papermill.PapermillExecutionError) as failure:
        _execute(pack / f"{name}_student.ipynb")
    assert failure.value.ename == "ExerciseNotAnswered"
    assert f"exercise {name}: no answer yet" in failure.value.evalue
    assert failure.value.cell_index == len(student.cells) - 1  # the check: everything before it ran


def test_each_version_holds_only_its_own_exercise(pack: Path):
    for name in EXERCISES:
        for version in ("student", "solutions"):
            nb = nbformat.read(pack / f"{name}_{version}.ipynb", as_version=4)
            names = {role[0] for cell in nb.cells if (role := exercise_role(cell)) is not None}
            assert names == {name}, (name, version, names)
            injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
            assert len(injected) == 1 and "profile = \"teach\"" in injected[0].source
