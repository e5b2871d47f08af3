"""Run generated code against its tests: the code in a sandbox, the tests in the evaluator.

The code tasks (`code_complete`, `code_write`, HumanEval, MBPP) score pass@1 by executing what a model
wrote, so one module owns that. A `SandboxSession` starts one server (`server.py`) inside bubblewrap
(`isolation`: its own PID, network, IPC and mount namespaces, user ``nobody``, a read-only standard
library, a size-limited tmpfs, dying with the evaluator); for each program the server forks a child
with memory, CPU, file-size, open-file and process-count limits that defines the program and answers
calls. The hidden tests run here (`judge`) against stand-ins for the program's functions, under a
wall-clock limit, so the verdict is the evaluator's own. `run_tests` is one program in a session of its
own. Neither raises for anything the code does: every outcome is a `SandboxResult`.

Example:
    >>> run_tests("def add(a, b):\\n    return a + b", "assert add(2, 3) == 5").status
    'passed'
    >>> with SandboxSession() as sandbox:                           # doctest: +SKIP
    ...     statuses = [sandbox.run(program, tests).status for program, tests in pairs]
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lsa_utils.evaluation.sandbox.isolation import (Isolation, SandboxUnavailable, check_isolation,
                                                    server_command, server_environment)
from lsa_utils.evaluation.sandbox.judge import Channel, Stopped, judge

Status = Literal["passed", "failed", "timeout", "memory", "error"]

_MEMORY_HINTS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory")
_ANSWER_GRACE_S = 10.0  # how long the server may take to start or finish a program
_DRAIN_AFTER_KILL_S = 0.5  # the program is dead; only a descriptor that escaped could hold its output open



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
    """One sandbox server for many programs; use it as a context manager so the server always stops.

    isolation: "bubblewrap" (default; `SandboxUnavailable` says how to install it when it cannot run)
    or "guard", the in-process audit hook, which is not a security boundary.
    """

    def __init__(self, isolation: Isolation = "bubblewrap") -> None:
        check_isolation(isolation)
        self.isolation = isolation
        self._guard_dir = Path(tempfile.mkdtemp(prefix="lsa-sandbox-")) if isolation == "guard" else None
        self._server: subprocess.Popen | None = None
        self._start()

    def __enter__(self) -> SandboxSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, program: str, test_code: str, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
        """Define `program` in a fresh child, then run `test_code` here against what it defined.

        An AssertionError in the tests means "failed"; any other exception means "error". The program's
        `__name__` is not "__main__", so its `if __name__ == "__main__":` block does not run.
        """
        _check_limits(timeout_s, memory_mb)
        deadline = time.monotonic() + timeout_s
        call, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        output_r, output_w = os.pipe()
        try:
            started = self._control({"op": "start", "memory_mb": memory_mb, "cpu_s": int(timeout_s) + 1},
                                    [child_end.fileno(), output_w])
        finally:
            child_end.close()
            os.close(output_w)
        if started is None:
            call.close()
            os.close(output_r)
            return SandboxResult("error", "the sandbox server stopped answering")
        channel = Channel(call, output_r, deadline)
        try:
            outcome: tuple[str, str] | Stopped = judge(channel, program, test_code)
        except Stopped as stop:
            outcome = stop
        finally:
            call.close()  # the child's calls end here, whatever it is doing
        finished = self._control({"op": "finish"}, [])
        channel.drain(_DRAIN_AFTER_KILL_S)
        os.close(output_r)
        returncode = finished.get("returncode") if finished else None
        return _classify(outcome, returncode, channel.output, timeout_s)

    def close(self) -> None:
        self._stop()
        if self._guard_dir is not None:
            shutil.rmtree(self._guard_dir, ignore_errors=True)

    def _start(self) -> None:
        self._control_socket, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        workdir = self._guard_dir or Path(tempfile.gettempdir())
        try:
            self._server = subprocess.Popen(
                server_command(self.isolation, server_end.fileno(), workdir), cwd=workdir,
                env=server_environment(workdir), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, pass_fds=(server_end.fileno(),), start_new_session=True,
            )
        finally:
            server_end.close()

    def _stop(self) -> None:
        if self._server is None:
            return
        self._control_socket.close()
        try:
            self._server.wait(timeout=5.0)  # it finishes the last program and exits when the socket closes
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self._server.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._server.wait()
        self._server = None

    def _control(self, request: dict, fds: list[int]) -> dict | None:
        """One request to the server and its answer; None (and a fresh server) if it does not answer."""
        try:
            self._control_socket.settimeout(_ANSWER_GRACE_S)
            socket.send_fds(self._control_socket, [json.dumps(request).encode()], fds)
            answer = self._control_socket.recv(4096)
            if answer:
                return json.loads(answer)
        except (OSError, ValueError):
            pass
        self._stop()
        self._start()
        return None


def run_tests(program: str, test_code: str, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Execute `program` and then `test_code` once, in a sandbox session of its own (see `SandboxSession.run`)."""
    _check_limits(timeout_s, memory_mb)
    with SandboxSession() as sandbox:
        return sandbox.run(program, test_code, timeout_s, memory_mb)


def _check_limits(timeout_s: float, memory_mb: int) -> None:
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError(f"timeout_s and memory_mb must be positive, got {timeout_s} and {memory_mb}")


def _classify(outcome: tuple[str, str] | Stopped, returncode: int | None, output: str,
              timeout_s: float) -> SandboxResult:
    """The tests' outcome, or why the child stopped answering, as a SandboxResult."""
    if not isinstance(outcome, Stopped):
        status, detail = outcome
        return SandboxResult(status, detail, output)
    if outcome.kind == "timeout":
        return SandboxResult("timeout", f"no result within {timeout_s:g} s (wall clock)", output)
    if outcome.kind == "protocol":
        return SandboxResult("error", f"the program broke the sandbox's protocol: {outcome.detail}", output)
    if returncode == -signal.SIGXCPU:
        return SandboxResult("timeout", "CPU time limit exceeded", output)
    if returncode == -signal.SIGKILL or any(hint in output for hint in _MEMORY_HINTS):
        return SandboxResult("memory", f"died without a result (exit {returncode}) at the memory limit", output)
    return SandboxResult("error", f"died without a result ({_exit_cause(returncode)})", output)


def _exit_cause(returncode: int | None) -> str:
    if returncode is None:
        return "exit status unknown"
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"signal {signal.Signals(-returncode).name}"
    except ValueError:
        return f"signal {-returncode}"
