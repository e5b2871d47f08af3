"""The one notebook runner, used by `make reproduce` and by the tests.

`run_notebook` executes a notebook with Papermill under a profile, writes the executed notebook to
`results/executed/` and a run record (parameters, seeds, git commit, package versions, device, wall
time, and the models and data sets the notebook loaded) to `results/runs/<stem>.json`. The tables,
figures and report a notebook writes are staged (`infra.outputs.staged`) and land with its executed copy
and record only when every cell succeeded: a failed run leaves `results/` as it was, except for its own
executed notebook, kept as `results/executed/<stem>.failed.ipynb` for debugging.

`main` skips a notebook that already ran here with the same inputs, as long as nothing before it ran and
everything it wrote is still there. The note of that run (a stamp) lives in the notebook's `cache_dir`,
not in `results/`, so a fresh clone, or one after `make clean`, executes everything.

    python -m lsa_utils --profile cpu                  # every notebooks/NN_*.ipynb, in order
    python -m lsa_utils --profile smoke notebooks/03_latent_alignment.ipynb
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
import papermill

from lsa_utils.infra.cache import atomic_write, config_key
from lsa_utils.infra.device import describe_device, resolve_device
from lsa_utils.infra.html import export_html
from lsa_utils.infra.numerics import configure_torch, numerics_in_force
from lsa_utils.infra.paths import NOTEBOOKS_DIR, PACKAGE_DIR, REPO_ROOT, RESULTS_DIR, STAGING
from lsa_utils.infra.profiles import load_profile, merge_parameters, notebook_parameters, profile_path
from lsa_utils.infra.progress import KERNEL_ARGUMENTS, PROGRESS
from lsa_utils.infra.records import SOURCES_NOTE, SourceUnavailable, read_sources
from lsa_utils.infra.schema import declared_parameters

KERNEL_NAME = "lsa-study"
VERSIONED_PACKAGES = ("torch", "transformers", "datasets", "peft", "papermill", "numpy")
# check_profile(profile, notebooks_dir, file name) raises ValueError naming what in the profile does not fit the
# notebooks (`lsa_utils.study.profile_schema.check_profile`; a later stage than this one, so it is handed in)
ProfileCheck = Callable[[Mapping[str, Mapping[str, Any]], Path, str], None]


class NotebookFailed(RuntimeError):
    """A notebook raised while executing; the message says where its executed copy was kept."""


def run_notebook(
    notebook: Path,
    profile: str | Path,
    *,
    results_dir: Path = RESULTS_DIR,
    device: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    check_profile: ProfileCheck | None = None,
) -> Path:
    """Execute `notebook` under `profile`; return the path of the executed notebook.

    The notebook runs in its own folder, and profile sections are checked against the notebooks there,
    their contents by `check_profile` when given. Parameters are the profile's (see
    `profiles.notebook_parameters`), plus `results_dir`, plus `device` when given, with `overrides` merged
    last. A key the notebook's `parameters` cell does not declare raises ValueError before anything runs.
    """
    notebook, results_dir = Path(notebook).resolve(), Path(results_dir).resolve()
    parameters, resolved_device = _resolve(notebook, profile, results_dir, device, overrides, check_profile)
    git = _git_state()  # before executing, so the run's own outputs cannot make the tree dirty

    started_at, start, wall_start = datetime.now(timezone.utc), time.perf_counter(), time.time()
    results_dir.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(results_dir, *([notebook.parent / parameters["cache_dir"]] if "cache_dir" in parameters else []))
    with tempfile.TemporaryDirectory(prefix=".tmp-sources-", dir=results_dir) as folder, \
            tempfile.TemporaryDirectory(prefix=".tmp-staging-", dir=results_dir) as staging:
        note = Path(folder) / "sources.json"
        environment = {SOURCES_NOTE: str(note), PROGRESS: "terminal",
                       STAGING: json.dumps({"results": str(results_dir), "staging": staging})}
        os.environ.update(environment)  # the kernel (and its workers) inherit them
        try:
            executed = _execute(notebook, results_dir / "executed" / notebook.name, parameters)
        finally:
            for name in environment:
                del os.environ[name]
        _land(Path(staging), results_dir)  # only now: every cell succeeded
        sources = read_sources(note)
    configure_torch()  # as every process that computes does, so the record states what they ran under
    record = {
        "notebook": notebook.name,
        "profile": Path(profile).stem,
        "parameters": parameters,
        "seeds": find_seeds(parameters),
        **git,
        "versions": package_versions(),
        "device": resolved_device,
        "numerics": numerics_in_force(),
        "sources": sources,
        "sandbox": sandbox_of(parameters),
        "started_at": started_at.isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - start, 2),
    }
    with atomic_write(results_dir / "runs" / f"{notebook.stem}.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    if (stamp := _stamp_path(notebook, parameters)) is not None:
        note = {"inputs": inputs_key(notebook, parameters, resolved_device),
                "outputs": _written_since(results_dir, wall_start)}
        with atomic_write(stamp) as tmp:
            tmp.write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
    return executed


def up_to_date(notebook: Path, profile: str | Path, *, results_dir: Path = RESULTS_DIR,
               device: str | None = None) -> bool:
    """Whether `notebook` already ran here with the same inputs, and all it wrote is still in place."""
    notebook, results_dir = Path(notebook).resolve(), Path(results_dir).resolve()
    parameters, resolved_device = _resolve(notebook, profile, results_dir, device, None)
    stamp = _stamp_path(notebook, parameters)
    if stamp is None or not stamp.exists():
        return False
    note = json.loads(stamp.read_text(encoding="utf-8"))
    written = [results_dir / "executed" / notebook.name, results_dir / "runs" / f"{notebook.stem}.json",
               *(results_dir / path for path in note["outputs"])]
    return note["inputs"] == inputs_key(notebook, parameters, resolved_device) and all(p.exists() for p in written)


def inputs_key(notebook: Path, parameters: Mapping[str, Any], device: str) -> str:
    """Key of everything an executed notebook depends on besides the notebooks before it.

    The notebook file, its parameters, the source of `lsa_utils`, the package versions and the device;
    `make reproduce` re-executes every notebook after one that ran, since those read its outputs.
    """
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    package = {str(path.relative_to(PACKAGE_DIR)): digest(path) for path in sorted(PACKAGE_DIR.rglob("*.py"))}
    return config_key({"notebook": digest(notebook), "parameters": parameters, "device": device,
                       "package": package, "versions": package_versions()})


def resolved_parameters(notebook: Path, profile: str | Path, *, results_dir: Path = RESULTS_DIR,
                        device: str | None = None, overrides: Mapping[str, Any] | None = None,
                        check_profile: ProfileCheck | None = None) -> dict[str, Any]:
    """The checked parameters `run_notebook` would inject into ``notebook``, for a tool that executes a
    notebook built from it (the teaching pack's exercises)."""
    notebook, results_dir = Path(notebook).resolve(), Path(results_dir).resolve()
    return _resolve(notebook, profile, results_dir, device, overrides, check_profile)[0]


def _resolve(notebook: Path, profile: str | Path, results_dir: Path, device: str | None,
             overrides: Mapping[str, Any] | None,
             check_profile: ProfileCheck | None = None) -> tuple[dict[str, Any], str]:
    """The notebook's checked parameters under `profile`, and the device they resolve to."""
    loaded = load_profile(profile, notebooks_dir=notebook.parent)
    if check_profile is not None:
        check_profile(loaded, notebook.parent, profile_path(profile).name)
    parameters = notebook_parameters(loaded, notebook.stem)
    parameters["results_dir"] = _results_dir_parameter(results_dir, notebook.parent)
    if device is not None:
        parameters["device"] = device
    parameters = merge_parameters(parameters, overrides or {})
    _check_declared(notebook, parameters)
    return parameters, describe_device(resolve_device(str(parameters.get("device", "auto"))))


def _stamp_path(notebook: Path, parameters: Mapping[str, Any]) -> Path | None:
    """Where a finished run is noted: the notebook's cache (None for a notebook without one)."""
    cache_dir = parameters.get("cache_dir")
    return None if cache_dir is None else notebook.parent / cache_dir / "runs" / f"{notebook.stem}.json"


def _written_since(results_dir: Path, since: float) -> list[str]:
    """Files under `results_dir` (executed notebooks and run records aside) modified after `since`."""
    return sorted(str(path.relative_to(results_dir)) for path in results_dir.rglob("*")
                  if path.is_file() and path.relative_to(results_dir).parts[0] not in ("executed", "runs")
                  and path.stat().st_mtime >= since)


def find_seeds(parameters: Mapping[str, Any], prefix: str = "", inside_seed: bool = False) -> dict[str, Any]:
    """Every parameter whose key contains "seed", at any depth, as {dotted.key: value}.

    Under a key that names seeds (`seeds: {world: 1, zoo: 2}`) every leaf counts as a seed.
    """
    found: dict[str, Any] = {}
    for key, value in parameters.items():
        dotted, is_seed = f"{prefix}{key}", inside_seed or "seed" in str(key).lower()
        if isinstance(value, Mapping):
            found |= find_seeds(value, f"{dotted}.", is_seed)
        elif is_seed:
            found[dotted] = value
    return found


def package_versions() -> dict[str, str | None]:
    """Python's version and those of the packages that decide the numbers (None if not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _results_dir_parameter(results_dir: Path, notebook_dir: Path) -> str:
    """`results_dir` as the notebook (running in its own folder) should see it.

    Relative when both lie inside the repository ("../results" for the default), so executed notebooks
    and run records carry no absolute machine paths; absolute otherwise.
    """
    if results_dir.is_relative_to(REPO_ROOT) and notebook_dir.is_relative_to(REPO_ROOT):
        return os.path.relpath(results_dir, notebook_dir)
    return str(results_dir)


def _check_declared(notebook: Path, parameters: Mapping[str, Any]) -> None:
    """Raise ValueError for keys the `parameters` cell does not declare (Papermill would only warn)."""
    declared = declared_parameters(notebook)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        valid = ", ".join(declared) if declared else "none: it has no cell tagged 'parameters'"
        raise ValueError(
            f"{notebook.name} does not declare parameter(s) {', '.join(unknown)}; valid parameters: {valid}"
        )


def _execute(notebook: Path, output: Path, parameters: Mapping[str, Any]) -> Path:
    """Run Papermill into a temporary file and rename it onto `output` only if every cell succeeded."""
    failed = output.with_name(f"{output.stem}.failed{output.suffix}")
    with atomic_write(output) as tmp:
        try:
            papermill.execute_notebook(
                str(notebook), str(tmp), parameters=dict(parameters), kernel_name=KERNEL_NAME,
                cwd=str(notebook.parent), progress_bar=True, log_output=False,
                extra_arguments=KERNEL_ARGUMENTS,
            )
        except Exception as exc:
            if tmp.exists():
                os.replace(tmp, failed)
            message = f"{notebook.name} failed: {_summary(exc)}; executed notebook kept at {failed}"
            raise NotebookFailed(message) from exc
        _record_paths(tmp, input_path=notebook, output_path=output)
    failed.unlink(missing_ok=True)
    return output


def sweep_leftovers(*folders: Path) -> list[Path]:
    """Remove what a killed run left under `folders`: the temporary siblings (``.tmp-*``) of every atomic
    write, a staging folder, a half-executed notebook. Runs before each notebook, so an interrupted run
    cleans up when it is resumed; one run at a time per results and cache folder."""
    swept = [path for folder in folders if Path(folder).is_dir() for path in Path(folder).rglob(".tmp-*")]
    for path in sorted(swept, key=lambda p: len(p.parts)):  # parents first; their children go with them
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return swept


def _land(staging: Path, results_dir: Path) -> None:
    """Move every file a notebook staged to its place under ``results_dir`` (each move atomic)."""
    for staged_file in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = results_dir / staged_file.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_file, target)


def _record_paths(executed: Path, *, input_path: Path, output_path: Path) -> None:
    """Replace the absolute input and (temporary) output paths Papermill stored in the notebook's metadata."""
    nb = nbformat.read(executed, as_version=nbformat.NO_CONVERT)
    nb.metadata.papermill.input_path = _portable(input_path)
    nb.metadata.papermill.output_path = _portable(output_path)
    nbformat.write(nb, executed)


def _portable(path: Path) -> str:
    """`path` relative to the repository when inside it, so records are the same on every machine."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _summary(exc: Exception) -> str:
    """The cell's own error for Papermill failures (their str() is a whole coloured traceback)."""
    if isinstance(exc, papermill.PapermillExecutionError):
        return f"cell {exc.exec_count} raised {exc.ename}: {exc.evalue}"
    return f"{type(exc).__name__}: {exc}"


def _git_state() -> dict[str, Any]:
    """Commit of the repository and whether its sources differ from it (results/ excluded)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = _git("status", "--porcelain", "--", ".", ":(exclude)results")
    return {"git_commit": commit, "git_dirty": bool(status)}


def _git(*args: str) -> str | None:
    """Output of a git command in the repository, or None outside git (or without git)."""
    try:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def default_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The study's notebooks, `NN_*.ipynb`, in the order they must run."""
    return sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))


def main(argv: Sequence[str] | None = None,
         check_sources: Callable[[Mapping[str, Any], Path], None] | None = None,
         check_profile: ProfileCheck | None = None,
         check_sandbox: Callable[[str], None] | None = None) -> int:
    """Run the named notebooks (default: all, in order), stopping at the first failure.

    First ``check_profile`` (see `ProfileCheck`) may raise ValueError naming what in the profile does not fit,
    then ``check_sources(parameters, notebooks_dir)`` may raise `SourceUnavailable` (a model or data set that
    cannot be had), then ``check_sandbox(isolation)`` may raise `SourceUnavailable` for the sandbox each
    notebook that scores generated code will use: each stops the run in one message, in seconds, before
    anything is written.
    """
    args = _parser().parse_args(argv)
    notebooks = [Path(n) for n in args.notebooks] or default_notebooks()
    if not notebooks:
        print(f"no notebooks matching NN_*.ipynb in {NOTEBOOKS_DIR}", file=sys.stderr)
        return 2
    first = notebooks[0].resolve()
    try:
        profile = load_profile(args.profile, notebooks_dir=first.parent)
        if check_profile is not None:
            check_profile(profile, first.parent, profile_path(args.profile).name)
        if check_sources is not None:
            check_sources(notebook_parameters(profile, first.stem), first.parent)
        if check_sandbox is not None:
            for isolation in dict.fromkeys(sandboxes_used(profile, notebooks)):
                check_sandbox(isolation)
    except (SourceUnavailable, ValueError, FileNotFoundError) as exc:
        print(f"STOPPED before any notebook ran [{args.profile}]:\n{exc}", file=sys.stderr)
        return 1
    rerun = args.force
    for notebook in notebooks:
        start = time.perf_counter()
        try:
            if not rerun and up_to_date(notebook, args.profile, results_dir=args.results_dir, device=args.device):
                print(f"skip   {notebook.name} [{args.profile}]: up to date (same inputs; --force re-executes)")
                continue
            rerun = True  # every later notebook may read what this one writes
            executed = run_notebook(notebook, args.profile, results_dir=args.results_dir, device=args.device)
        except (NotebookFailed, ValueError, FileNotFoundError) as exc:
            print(f"FAILED {notebook.name}: {exc}", file=sys.stderr)
            return 1
        elapsed = time.perf_counter() - start
        print(f"ok     {notebook.name} [{args.profile}] {elapsed:.1f}s -> {_portable(executed)}")
    print(f"html   {_portable(export_html(args.results_dir))}: the results to browse without Jupyter")
    return 0


def sandbox_of(parameters: Mapping[str, Any]) -> str:
    """Where a notebook runs generated code: its ``evaluation: {sandbox: ...}``, else the sandbox's default."""
    return (parameters.get("evaluation") or {}).get("sandbox", "bubblewrap")


def sandboxes_used(profile: Mapping[str, Mapping[str, Any]], notebooks: Sequence[Path]) -> list[str]:
    """The sandbox of every notebook among ``notebooks`` that scores models (declares ``evaluation``)."""
    return [sandbox_of(notebook_parameters(profile, notebook.stem)) for notebook in notebooks
            if "evaluation" in declared_parameters(notebook)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lsa_utils", description=main.__doc__)
    parser.add_argument("--profile", default="cpu", help="profile name (params/<name>.yaml) or path [cpu]")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N [the profile's]")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="[results/]")
    parser.add_argument("--force", action="store_true",
                        help="execute every notebook, even those whose inputs are unchanged since their last run")
    parser.add_argument("notebooks", nargs="*", help="notebooks to run [notebooks/NN_*.ipynb]")
    return parser

