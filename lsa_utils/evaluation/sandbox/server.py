"""The sandbox's server: one limited interpreter per evaluation that forks a fresh child per program.

Started by `lsa_utils.evaluation.sandbox.supervisor` as ``python server.py REQUEST_FD RESPONSE_FD BASE_DIR``
with a minimal environment, in a new session, importing nothing but the standard library. It reads one
JSON request per line (program, tests, limits), and for each one:

1. makes an empty working directory under BASE_DIR and forks;
2. the child starts a new session, keeps only its output and report pipes, moves into the directory,
   limits itself (address space, CPU time, file size, no core dumps), installs an audit hook that
   refuses network access, new processes, signals to other processes and writes outside its directory,
   runs the program and then its tests, and reports one JSON object on the report pipe;
3. the server drains the child's output (keeping the first 64 KiB), stops waiting at the wall-clock
   limit, kills the child's whole process group, reaps it, removes the directory, and answers with the
   raw facts (exit status, timed out or not, report, output), which the supervisor classifies.

Forking costs milliseconds where a fresh interpreter costs about 70; everything a program left behind
is killed and deleted before the next one starts. Reporting on a pipe instead of through the exit code
means code that calls ``sys.exit(0)`` or ``os._exit(0)`` cannot pass by leaving early. The audit hook
guards against accidents in generated code; it is not a security boundary against an adversary.
"""

import builtins
import json
import linecache
import os
import resource
import selectors
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

_DETAIL_LIMIT = 4000  # characters; keeps the report far below the pipe buffer
_FILE_LIMIT = 64 * 1024 * 1024  # bytes any one file may grow to
OUTPUT_LIMIT = 64 * 1024  # bytes of stdout+stderr kept; the rest is read and dropped
_DRAIN_AFTER_KILL_S = 2.0  # the group is dead; only a descriptor that escaped it could hold a pipe open

# Bound before untrusted code runs, so code that rebinds module attributes cannot break reporting.
_dumps, _write, _close, _exit = json.dumps, os.write, os.close, os._exit

_BLOCKED_EVENTS = frozenset(
    {
        "socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo",
        "socket.gethostbyname", "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg",
        "subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn",
        "os.fork", "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill",
        "os.symlink", "os.link", "ctypes.dlopen", "resource.setrlimit", "resource.prlimit",
    }
)
_BLOCKED_IMPORTS = frozenset({"_posixsubprocess"})  # fork_exec has no audit event of its own
# Events whose listed positional arguments are paths that must stay inside the working directory.
_PATH_EVENTS = {
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
    "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
    "shutil.rmtree": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


# ---------------------------------------------------------------------------------------------------
# The child: limits, guard, run, report


def _limit(memory_mb: int, cpu_s: int) -> None:
    """Cap this process; hard limits equal soft ones so the code cannot raise them again."""
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))  # SIGXCPU first, SIGKILL after
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_LIMIT, _FILE_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _inside(root: str, path: Any) -> bool:
    """Whether `path` lies inside `root`; open file descriptors (ints) are allowed."""
    if isinstance(path, int):
        return True
    absolute = os.path.abspath(os.fsdecode(path))  # no syscalls: safe to call inside the hook
    return absolute == root or absolute.startswith(root + os.sep)


def _make_guard(root: str) -> Callable[[str, tuple], None]:
    """The audit hook: raise PermissionError for anything outside the sandbox's remit."""

    def guard(event: str, args: tuple) -> None:
        if event in _BLOCKED_EVENTS:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0] in _BLOCKED_IMPORTS:
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = args
            writes = (flags or 0) & _WRITE_FLAGS or any(c in (mode or "") for c in "wax+")
            if writes and path is not None and not _inside(root, path):
                raise PermissionError(f"sandbox: writing {path!r} is not allowed")
        for index in _PATH_EVENTS.get(event, ()):
            if not _inside(root, args[index]):
                raise PermissionError(f"sandbox: {event} on {args[index]!r} is not allowed")

    return guard


def _describe(exc: BaseException) -> str:
    """One-line summary of an exception with the user-code line it came from."""
    try:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in ("<program>", "<tests>")]
        if frames:
            text += f" [{frames[-1].filename} line {frames[-1].lineno}: {frames[-1].line}]"
    except BaseException:  # a hostile __str__ must not stop the report
        text = type(exc).__name__
    return text[:_DETAIL_LIMIT]


def _compile(source: str, filename: str) -> Any:
    """Compile with the source registered in linecache, so tracebacks can quote the failing line."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")


def _run(program: str, test_code: str) -> tuple[str, str]:
    """Execute the program, then the tests, in one namespace; classify the outcome."""
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}  # `if __name__ == "__main__"` stays off
    try:
        exec(_compile(program, "<program>"), namespace)
        exec(_compile(test_code, "<tests>"), namespace)
    except AssertionError as exc:
        return "failed", _describe(exc)
    except MemoryError:
        return "memory", "MemoryError"
    except BaseException as exc:  # SystemExit and KeyboardInterrupt included: the tests did not finish
        return "error", _describe(exc)
    return "passed", ""


def _child(request: dict, workdir: str, output_fd: int, report_fd: int) -> None:
    """The forked child: isolate, limit, guard, run, report, and leave without cleanup handlers."""
    os.setsid()
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    os.closerange(3, report_fd)  # keep only the report pipe: not the server's requests or answers
    os.closerange(report_fd + 1, os.sysconf("SC_OPEN_MAX"))
    os.chdir(workdir)
    os.environ.update({"HOME": workdir, "TMPDIR": workdir})
    _limit(request["memory_mb"], request["cpu_s"])
    sys.addaudithook(_make_guard(workdir))
    status, detail = _run(request["program"], request["test_code"])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # the code may have closed or replaced the streams
            pass
    _write(report_fd, _dumps({"status": status, "detail": detail}).encode())
    _close(report_fd)
    _exit(0)  # skip atexit handlers and non-daemon threads the code may have left


# ---------------------------------------------------------------------------------------------------
# The server: fork, watch, kill, clean up


def _collect(pid: int, output_fd: int, report_fd: int, timeout_s: float) -> tuple[bytes, bytes, bool]:
    """Read the child's output (first OUTPUT_LIMIT bytes) and report until both close or time runs out."""
    kept = {output_fd: bytearray(), report_fd: bytearray()}
    selector = selectors.DefaultSelector()
    for fd in kept:
        selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    timed_out = False
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if timed_out:
                break
            timed_out = True  # kill the group, then give the pipes a moment to close
            _kill_group(pid)
            deadline = time.monotonic() + _DRAIN_AFTER_KILL_S
            continue
        for key, _ in selector.select(remaining):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                selector.unregister(key.fd)
            elif len(kept[key.fd]) < OUTPUT_LIMIT:
                kept[key.fd] += chunk[: OUTPUT_LIMIT - len(kept[key.fd])]
    selector.close()
    return bytes(kept[output_fd]), bytes(kept[report_fd]), timed_out


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_one(request: dict, base_dir: str, index: int) -> dict:
    """Fork a child for one program and answer with what happened (the supervisor classifies it)."""
    workdir = os.path.join(base_dir, f"program-{index}")
    os.mkdir(workdir)
    output_r, output_w = os.pipe()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(output_r)
            os.close(report_r)
            _child(request, workdir, output_w, report_w)
        finally:
            _exit(70)  # only reached if setting up the child itself failed
    os.close(output_w)
    os.close(report_w)
    try:
        output, report, timed_out = _collect(pid, output_r, report_r, request["timeout_s"])
    finally:
        _kill_group(pid)  # whatever the program left behind dies before the next one starts
        _, status = os.waitpid(pid, 0)
        os.close(output_r)
        os.close(report_r)
        shutil.rmtree(workdir, ignore_errors=True)
    return {"returncode": os.waitstatus_to_exitcode(status), "timed_out": timed_out,
            "report": report.decode("utf-8", errors="replace"), "output": output.decode("utf-8", errors="replace")}


def serve(request_fd: int, response_fd: int, base_dir: str) -> None:
    """Answer requests until the supervisor closes its end."""
    with os.fdopen(request_fd, "rb") as requests, os.fdopen(response_fd, "wb") as responses:
        for index, line in enumerate(requests):
            answer = run_one(json.loads(line), base_dir, index)
            responses.write(json.dumps(answer).encode() + b"\n")
            responses.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # the supervisor went away: stop quietly
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
