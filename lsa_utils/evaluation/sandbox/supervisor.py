"""Run generated code against its tests in separate, limited processes, a few milliseconds a program.

The code tasks (`code_complete`, `code_write`) score pass@1 by executing what a model wrote, so one
module owns that. A `SandboxSession` starts one interpreter (the server, `server.py`) in a new session
with a minimal environment, no stdin and no user site; for each program the server forks a child that
runs in an empty temporary directory with a memory limit, a CPU limit and a wall-clock limit enforced
on its whole process group, and an audit hook that refuses network access, subprocesses and writes
outside that directory. `run_tests` is one program in a session of its own. Neither raises for anything
the code does: every outcome is a `SandboxResult`.

Example:
    >>> run_tests("def add(a, b):\\n    return a + b", "assert add(2, 3) == 5").status
    'passed'
    >>> with SandboxSession() as sandbox:                           # doctest: +SKIP
    ...     statuses = [sandbox.run(program, tests).status for program, tests in pairs]
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timeout", "memory", "error"]

_SERVER = Path(__file__).with_name("server.py")
_MEMORY_HINTS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory")
_ANSWER_GRACE_S = 10.0  # beyond a program's own limit, how long the server may take to answer


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


class SandboxSession:
    """One sandbox server for many programs; use it as a context manager so the server always stops."""

    def __init__(self) -> None:
        self._base = Path(tempfile.mkdtemp(prefix="lsa-sandbox-"))
        self._server: subprocess.Popen | None = None
        self._start()

    def __enter__(self) -> SandboxSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, program: str, test_code: str, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
        """Execute `program` and then `test_code` in one namespace of a fresh forked child.

        An AssertionError in the tests means "failed"; any other exception means "error". The namespace's
        `__name__` is not "__main__", so a program's `if __name__ == "__main__":` block does not run.
        """
        if timeout_s <= 0 or memory_mb <= 0:
            raise ValueError(f"timeout_s and memory_mb must be positive, got {timeout_s} and {memory_mb}")
        request = {"program": program, "test_code": test_code, "timeout_s": timeout_s, "memory_mb": memory_mb,
                   "cpu_s": int(timeout_s) + 1}
        answer = self._ask(json.dumps(request).encode() + b"\n", timeout_s + _ANSWER_GRACE_S)
        if answer is None:  # the server died or hung: start a new one for the next program
            self._stop()
            self._start()
            return SandboxResult("error", "the sandbox server stopped answering")
        return _classify(answer["returncode"], answer["timed_out"], answer["report"], answer["output"], timeout_s)

    def close(self) -> None:
        self._stop()
        shutil.rmtree(self._base, ignore_errors=True)

    def _start(self) -> None:
        request_r, self._requests = os.pipe()
        self._answers, answer_w = os.pipe()
        try:
            self._server = subprocess.Popen(
                _command(request_r, answer_w, self._base), cwd=self._base, env=_environment(self._base),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(request_r, answer_w), start_new_session=True,
            )
        finally:
            os.close(request_r)
            os.close(answer_w)
        self._pending = b""

    def _stop(self) -> None:
        if self._server is None:
            return
        for fd in (self._requests, self._answers):
            os.close(fd)
        try:
            self._server.wait(timeout=5.0)  # it exits when its requests end
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self._server.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._server.wait()
        self._server = None

    def _ask(self, request: bytes, timeout_s: float) -> dict | None:
        """Send one request line and read one answer line, or None if the server fails to answer in time."""
        try:
            _write_all(self._requests, request)
        except BrokenPipeError:
            return None
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._answers], [], [], remaining)[0]:
                return None
            chunk = os.read(self._answers, 1 << 20)
            if not chunk:
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def run_tests(program: str, test_code: str, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Execute `program` and then `test_code` once, in a sandbox session of its own (see `SandboxSession.run`)."""
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError(f"timeout_s and memory_mb must be positive, got {timeout_s} and {memory_mb}")
    with SandboxSession() as sandbox:
        return sandbox.run(program, test_code, timeout_s, memory_mb)


def _command(request_fd: int, answer_fd: int, base: Path) -> list[str]:
    """Interpreter flags: no user site (-s), no script directory on sys.path (-P), UTF-8 I/O.

    Not -I: it implies -E, which would ignore the PYTHONHASHSEED that keeps set ordering, and so
    pass@1, reproducible. The environment is built from scratch instead, so -E would add nothing.
    """
    return [sys.executable, "-s", "-P", "-X", "utf8", str(_SERVER), str(request_fd), str(answer_fd), str(base)]


def _environment(workdir: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workdir), "TMPDIR": str(workdir),
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


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
