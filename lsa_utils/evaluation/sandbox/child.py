"""Child side of the sandbox (`lsa_utils.evaluation.sandbox`), executed by path in a fresh interpreter.

It limits itself (address space, CPU time, file size, no core dumps) before touching untrusted code,
installs an audit hook that refuses network access, new processes, signals to other processes and
writes outside its working directory, then runs the program and its tests and reports one JSON object
on a private pipe. Reporting on a pipe instead of through the exit code means code that calls
`sys.exit(0)` or `os._exit(0)` cannot pass by leaving early.

The hook guards against accidents in generated code; it is not a security boundary against an adversary.
"""

import builtins
import json
import linecache
import os
import resource
import sys
import traceback
from collections.abc import Callable
from typing import Any

_DETAIL_LIMIT = 4000  # characters; keeps the report far below the pipe buffer
_FILE_LIMIT = 64 * 1024 * 1024  # bytes any one file may grow to

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


def main() -> None:
    payload_path = sys.argv[1]
    with open(payload_path, encoding="utf-8") as f:
        payload = json.load(f)
    os.remove(payload_path)  # the working directory is empty when the program starts
    _limit(payload["memory_mb"], payload["cpu_s"])
    sys.addaudithook(_make_guard(os.getcwd()))
    status, detail = _run(payload["program"], payload["test_code"])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # the code may have closed or replaced the streams
            pass
    _write(payload["result_fd"], _dumps({"status": status, "detail": detail}).encode())
    _close(payload["result_fd"])
    _exit(0)  # skip atexit handlers and non-daemon threads the code may have left


if __name__ == "__main__":
    main()
