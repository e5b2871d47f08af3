"""A run killed mid-stage and resumed ends as an uninterrupted run does, and leaves nothing behind.

Notebook 04 on the smoke profile, each run with a cache of its own: the reference runs straight through;
the other is SIGKILLed while the zoo trains and again while the transfer grid runs, then resumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


def _start(profile: Path, results: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "lsa_utils", "--profile", str(profile), "--device", "cpu",
               "--results-dir", str(results), str(NOTEBOOK)]
    return subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _kill_when(run: subprocess.Popen, ready, timeout_s: float = 300) -> None:
    """SIGKILL the run's whole process group (kernel, workers, sandbox) as soon as `ready()` holds."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert run.poll() is None, f"the run ended before its kill point: {run.stderr.read()}"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()


def _finish(profile: Path, results: Path) -> None:
    run = _start(profile, results)
    _, errors = run.communicate(timeout=900)
    assert run.returncode == 0, errors


def _sandbox_servers() -> list[str]:
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if "sandbox/server.py" in line]


@pytest.mark.skip(reason="kill point 1 (a .tmp-* under cache/models while the zoo trains) is missed: the smoke zoo "
                  "trains before the poll sees it; the test needs a kill point it cannot miss (issue 15, open)")
def test_killed_twice_then_resumed_gives_the_uninterrupted_tables(tmp_path: Path) -> None:
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    _finish(_profile(tmp_path, tmp_path / "cache-reference"), reference)

    cache = tmp_path / "cache-resumed"
    profile = _profile(tmp_path, cache)
    zoo_training = lambda: any((cache / "models").glob(".tmp-*"))  # noqa: E731
    _kill_when(_start(profile, resumed), zoo_training)
    transfer_started = lambda: len(list((cache / "transfer").glob("*.json"))) >= 2  # noqa: E731
    _kill_when(_start(profile, resumed), transfer_started)
    assert not (resumed / "tables" / "transfer.csv").exists()  # nothing landed from the killed runs
    _finish(profile, resumed)

    for table in TABLES:
        assert (resumed / "tables" / table).read_bytes() == (reference / "tables" / table).read_bytes(), table
    leftovers = [p for folder in (resumed, cache) for p in folder.rglob(".tmp-*")]
    assert leftovers == []
    assert not list((resumed / "executed").glob("*.failed.ipynb"))
    assert _sandbox_servers() == [], "a killed run left a sandbox running"
