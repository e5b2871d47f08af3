"""A run killed mid-stage and resumed ends as an uninterrupted run does, and leaves nothing behind.

Notebook 04 on the smoke profile with a cache of its own, SIGKILLed while the zoo trains and again while the
transfer grid runs, then resumed; the reference is the uninterrupted smoke run of every notebook (conftest).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "04_transfer.ipynb"
TABLES = ("transfer.csv", "04_verdicts.csv")


def _profile(tmp: Path, cache: Path) -> Path:
    profile = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    profile["all"]["cache_dir"] = str(cache)
    path = tmp / f"smoke-{cache.name}.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


KILL_POINT = REPO / "tests" / "killpoint"  # its sitecustomize.py stops the run at a chosen cache write


def _start(profile: Path, results: Path, kill_at: str = "", mark: Path | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "lsa_utils", "--profile", str(profile), "--device", "cpu",
               "--results-dir", str(results), str(NOTEBOOK)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LSA_RUN_MARK": str(results)}
    if kill_at:
        env |= {"PYTHONPATH": os.pathsep.join(filter(None, [str(KILL_POINT), env.get("PYTHONPATH")])),
                "LSA_KILL_AT": kill_at, "LSA_KILL_MARK": str(mark)}
    return subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def _run_processes(mark: str) -> list[int]:
    """Every process started for the run marked `mark`: runner, kernel, workers (they inherit its env)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"LSA_RUN_MARK={mark}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _kill_at(profile: Path, results: Path, folder: Path, n_writes: int, timeout_s: float = 600) -> None:
    """Run until some process opens its `n_writes`-th temporary file under `folder`, then SIGKILL the run."""
    mark = results.parent / f"killed-in-{folder.name}"
    run = _start(profile, results, f"{folder}:{n_writes}", mark)
    deadline = time.monotonic() + timeout_s
    while not mark.exists():
        assert run.poll() is None, f"the run ended before its kill point: {run.stderr.read()}"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.1)
    for pid in _run_processes(str(results)):
        os.kill(pid, signal.SIGKILL)
    run.wait()
    mark.unlink()


def _finish(profile: Path, results: Path) -> None:
    run = _start(profile, results)
    _, errors = run.communicate(timeout=900)
    assert run.returncode == 0, errors


def _sandbox_servers() -> list[str]:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if "sandbox/server.py" in line]


def test_killed_twice_then_resumed_gives_the_uninterrupted_tables(tmp_path: Path, smoke_results: Path) -> None:
    reference, resumed = smoke_results, tmp_path / "resumed"
    cache = tmp_path / "cache-resumed"
    profile = _profile(tmp_path, cache)
    _kill_at(profile, resumed, cache / "models", n_writes=6)  # 4 files a model: mid-way through the second
    assert list((cache / "models").glob(".tmp-*")), "the kill left no half-written model to clean up"
    _kill_at(profile, resumed, cache / "transfer", n_writes=2)  # mid-way through the transfer grid
    assert not (resumed / "tables" / "transfer.csv").exists()  # nothing landed from the killed runs
    _finish(profile, resumed)

    for table in TABLES:
        assert (resumed / "tables" / table).read_bytes() == (reference / "tables" / table).read_bytes(), table
    leftovers = [p for folder in (resumed, cache) for p in folder.rglob(".tmp-*")]
    assert leftovers == []
    assert not list((resumed / "executed").glob("*.failed.ipynb"))
    assert _sandbox_servers() == [], "a killed run left a sandbox running"
