"""Run generated code against its tests in a separate, limited Python process.

The code tasks (`code_complete`, `code_write`) score pass@1 by executing what a model wrote, so one
function owns that: `run_tests` starts a fresh interpreter in an empty temporary directory with a
memory limit, a CPU limit, a wall-clock limit enforced on the whole process group, no stdin, a minimal
environment and an audit hook that refuses network access, subprocesses and writes outside that
directory. It returns a `SandboxResult` and never raises for anything the code does.

Example:
    >>> run_tests("def add(a, b):\\n    return a + b", "assert add(2, 3) == 5").status
    'passed'
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

Status = Literal["passed", "failed", "timeout", "memory", "error"]

_CHILD = Path(__file__).with_name("child.py")
_OUTPUT_LIMIT = 64 * 1024  # bytes of stdout+stderr kept; the rest is read and dropped
_MEMORY_HINTS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory")


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run.

    status: "passed" (tests ran to the end), "failed" (an AssertionError), "timeout" (wall clock or CPU
    limit), "memory" (MemoryError or killed at the memory limit), "error" (anything else, including
    syntax errors and blocked operations). detail: the exception or the reason, empty when passed.
    output: the first 64 KiB of what the code printed, stdout and stderr interleaved.
    """

    status: Status
    detail: str = ""
    output: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_tests(program: str, test_code: str, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Execute `program` and then `test_code` in one namespace of a fresh sandboxed interpreter.

    An AssertionError in the tests means "failed"; any other exception means "error". The namespace's
    `__name__` is not "__main__", so a program's `if __name__ == "__main__":` block does not run.
    """
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError(f"timeout_s and memory_mb must be positive, got {timeout_s} and {memory_mb}")
    workdir = Path(tempfile.mkdtemp(prefix="lsa-sandbox-"))
    try:
        return _run_in(workdir, program, test_code, timeout_s, memory_mb)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_in(workdir: Path, program: str, test_code: str, timeout_s: float, memory_mb: int) -> SandboxResult:
    """Start the child in `workdir`, wait for it within the time limit, and classify what happened."""
    read_fd, write_fd = os.pipe()
    payload = {"program": program, "test_code": test_code, "memory_mb": memory_mb,
               "cpu_s": int(timeout_s) + 1, "result_fd": write_fd}
    (workdir / "payload.json").write_text(json.dumps(payload), encoding="utf-8")
    try:
        process = subprocess.Popen(
            _command(), cwd=workdir, env=_environment(workdir), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(write_fd,), start_new_session=True,
        )
    except OSError as exc:
        os.close(read_fd)
        return SandboxResult("error", f"could not start the sandbox: {exc}")
    finally:
        os.close(write_fd)
    output, report = _Drain(process.stdout, _OUTPUT_LIMIT), _Drain(os.fdopen(read_fd, "rb"), _OUTPUT_LIMIT)
    timed_out = _wait(process, timeout_s)
    return _classify(process.returncode, timed_out, report.join(), output.join(), timeout_s)


def _command() -> list[str]:
    """Interpreter flags: no user site (-s), no script directory on sys.path (-P), UTF-8 I/O.

    Not -I: it implies -E, which would ignore the PYTHONHASHSEED that keeps set ordering, and so
    pass@1, reproducible. The environment is built from scratch instead, so -E would add nothing.
    """
    return [sys.executable, "-s", "-P", "-X", "utf8", str(_CHILD), "payload.json"]


def _environment(workdir: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workdir), "TMPDIR": str(workdir),
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def _wait(process: subprocess.Popen, timeout_s: float) -> bool:
    """Wait for the child; kill its whole process group on timeout (and any stragglers either way)."""
    try:
        process.wait(timeout=timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    return timed_out


class _Drain:
    """Read a pipe to its end on a thread, keeping the first `limit` bytes, then close it.

    Reading everything (not just the kept part) stops a chatty child from blocking on a full pipe.
    """

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream, self._limit, self._kept = stream, limit, bytearray()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._stream:
            for chunk in iter(lambda: self._stream.read1(65536), b""):
                self._kept += chunk[: self._limit - len(self._kept)]

    def join(self) -> str:
        self._thread.join(timeout=5.0)  # the group is dead; only a leaked descriptor could hold it open
        return bytes(self._kept).decode("utf-8", errors="replace")


def _classify(returncode: int, timed_out: bool, report: str, output: str, timeout_s: float) -> SandboxResult:
    """Turn the child's exit, report and output into a SandboxResult."""
    if timed_out:
        return SandboxResult("timeout", f"no result within {timeout_s:g} s (wall clock)", output)
    try:
        reported = json.loads(report)
        return SandboxResult(reported["status"], reported["detail"], output)
    except (ValueError, KeyError, TypeError):
        pass  # the child died before reporting
    if returncode == -signal.SIGXCPU:
        return SandboxResult("timeout", "CPU time limit exceeded", output)
    if returncode == -signal.SIGKILL or any(hint in output for hint in _MEMORY_HINTS):
        return SandboxResult("memory", f"died without a result (exit {returncode}) at the memory limit", output)
    return SandboxResult("error", f"died without a result ({_exit_cause(returncode)})", output)


def _exit_cause(returncode: int) -> str:
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"
