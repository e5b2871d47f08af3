"""The teaching pack: student and solutions notebooks built from tagged cells of the study's notebooks.

An exercise lives in a study notebook as cells tagged ``exercise:<name>:<role>``: an optional ``prompt``
(markdown, the task), an optional ``setup`` (code both versions keep, e.g. the effect to detect), the
``solution`` and, right after it, the ``check``, which starts with `require_answers` and then asserts the
answer from the notebook's own results. In `make reproduce` they run as ordinary cells, so the solutions are
checked on every profile; `build_exercises` writes, per exercise, the notebook's cells up to its check
(other exercises' cells left out) twice: ``<name>_solutions.ipynb`` as is and ``<name>_student.ipynb`` with
the solution replaced by a stub that sets the answers to None, so the check fails saying what is missing.
Both get the profile's parameters injected as the runner injects them, with paths seen from their folder.

    python -m lsa_utils.study.exercises --profile teach       # into results/exercises/
"""

from __future__ import annotations

import argparse
import ast
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from lsa_utils.infra.cache import atomic_write
from lsa_utils.infra.paths import RESULTS_DIR
from lsa_utils.infra.runner import KERNEL_NAME, default_notebooks, resolved_parameters
from lsa_utils.study.profile_schema import check_profile

TAG = "exercise"
ROLES = ("prompt", "setup", "solution", "check")
PATH_PARAMETERS = ("cache_dir", "results_dir")  # relative to the notebook's folder


class ExerciseNotAnswered(AssertionError):
    """A check ran before its exercise was answered (the student version's stub)."""


def require_answers(name: str, **answers: Any) -> None:
    """The first line of a check: fail with one clear message while any answer is still None."""
    missing = [key for key, value in answers.items() if value is None]
    if missing:
        raise ExerciseNotAnswered(f"exercise {name}: no answer yet for {', '.join(missing)}: write your solution "
                                  "in the cell above, run it, then run this check again")


def exercise_role(cell: nbformat.NotebookNode) -> tuple[str, str] | None:
    """(exercise, role) of a cell tagged ``exercise:<name>:<role>``, else None."""
    for tag in cell.get("metadata", {}).get("tags", []):
        parts = tag.split(":")
        if len(parts) == 3 and parts[0] == TAG and parts[2] in ROLES:
            return parts[1], parts[2]
    return None


def find_exercises(notebooks: Sequence[Path]) -> dict[str, Path]:
    """Every exercise name, with the notebook that holds it (a name used twice is an error)."""
    found: dict[str, Path] = {}
    for notebook in notebooks:
        for cell in nbformat.read(notebook, as_version=4).cells:
            if (role := exercise_role(cell)) is not None and role[1] == "solution":
                if role[0] in found:
                    raise ValueError(f"exercise {role[0]!r} is in both {found[role[0]].name} and {notebook.name}")
                found[role[0]] = notebook
    return found


def exercise_cells(nb: nbformat.NotebookNode, name: str, student: bool) -> list[nbformat.NotebookNode]:
    """The notebook's cells up to the exercise's check, without other exercises' cells; a stub for the
    student's solution."""
    cells = []
    for cell in nb.cells:
        role = exercise_role(cell)
        if role is not None and role[0] != name:
            continue
        if role == (name, "solution") and student:
            cell = nbformat.from_dict({**cell, "source": stub_source(name, answer_names(nb, name)), "outputs": []})
        cells.append(cell)
        if role == (name, "check"):
            return cells
    raise ValueError(f"exercise {name!r} has no cell tagged '{TAG}:{name}:check'")


def answer_names(nb: nbformat.NotebookNode, name: str) -> list[str]:
    """The answers the exercise's check asks for: the keywords of its `require_answers` call."""
    check = next(c for c in nb.cells if exercise_role(c) == (name, "check"))
    for node in ast.walk(ast.parse(check.source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == require_answers.__name__:
            return [keyword.arg for keyword in node.keywords]
    raise ValueError(f"the check of exercise {name!r} does not call {require_answers.__name__}(...)")


def stub_source(name: str, answers: Sequence[str]) -> str:
    """What the student starts from: the answers to write, unset."""
    lines = [f"# Exercise {name}: your solution (the task is above; the next cell checks it).",
             *(f"{answer} = None  # your answer" for answer in answers)]
    return "\n".join(lines) + "\n"


def build_exercises(profile: str | Path = "teach", out_dir: Path = RESULTS_DIR / "exercises", *,
                    device: str | None = None, overrides: Mapping[str, Any] | None = None,
                    notebooks: Sequence[Path] | None = None) -> list[Path]:
    """Write both versions of every exercise into ``out_dir``; return their paths.

    They run in ``out_dir`` and write their tables and figures under ``out_dir/outputs``, never into the
    study's results.
    """
    out_dir = Path(out_dir).resolve()
    written = []
    for name, source in find_exercises(notebooks or default_notebooks()).items():
        parameters = exercise_parameters(source, profile, out_dir, device, overrides)
        nb = load_notebook_node(str(source))  # as Papermill reads a notebook it parameterises
        for version, student in (("student", True), ("solutions", False)):
            copy = nbformat.from_dict({**nb, "cells": exercise_cells(nb, name, student)})
            copy = parameterize_notebook(copy, parameters, kernel_name=KERNEL_NAME)
            with atomic_write(out_dir / f"{name}_{version}.ipynb") as tmp:
                nbformat.write(copy, tmp)
            written.append(out_dir / f"{name}_{version}.ipynb")
    return written


def exercise_parameters(source: Path, profile: str | Path, out_dir: Path, device: str | None,
                        overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters the runner would give ``source`` (checked), its paths rebased onto ``out_dir``."""
    parameters = resolved_parameters(source, profile, results_dir=out_dir / "outputs", device=device,
                                     overrides=overrides, check_profile=check_profile)
    for key in PATH_PARAMETERS:
        if key in parameters and not Path(parameters[key]).is_absolute():
            folder = (Path(source).resolve().parent / parameters[key]).resolve()
            parameters[key] = os.path.relpath(folder, out_dir)
    return parameters


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsa_utils.study.exercises", description=build_exercises.__doc__)
    parser.add_argument("--profile", default="teach", help="profile name or path [teach]")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N [the profile's]")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR / "exercises", help="[results/exercises/]")
    args = parser.parse_args(argv)
    for path in build_exercises(args.profile, args.out_dir, device=args.device):
        print(f"wrote  {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    print(f"open them with `make lab` (folder {args.out_dir}); docs/teaching.md says what each one teaches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
