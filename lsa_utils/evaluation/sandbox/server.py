"""The sandbox's server: one process per session that forks a fresh, limited child per program.

Started by `lsa_utils.evaluation.sandbox.supervisor` as ``python -S -s -P server.py CONTROL_FD BASE_DIR MODE``,
standard library only. Under bubblewrap (MODE ``bubblewrap``) it is PID 1 of the sandbox's own PID
namespace, as an unprivileged user, in a namespace without network, with a size-limited tmpfs as
BASE_DIR; with MODE ``guard`` it runs as the study's user, and the child adds an audit hook.

The control socket (a ``SOCK_SEQPACKET`` pair) carries two requests:

- ``{"op": "start", "memory_mb", "cpu_s"}`` with two descriptors attached, the child's end of a fresh
  call socket and the write end of its output pipe: the server makes an empty working directory, forks,
  and answers ``{"pid": ...}``. The child keeps only those two descriptors, limits itself, reads its
  program from the call socket, runs it, sends what it defined, and then answers calls
  (``{"call": name, "args", "kwargs"}``) until the evaluator closes the socket.
- ``{"op": "finish"}``: the server kills every process the program left (all of the namespace under
  bubblewrap; the child's process group with the guard), reaps them, removes the directory, and answers
  ``{"returncode": ...}``.

The child never sees the control socket, the tests, or the verdict: the evaluator runs the tests
itself and only calls into the child, so nothing the code does can make a failing test pass.
"""

import builtins
import json
import os
import resource
import shutil
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402  (this folder is not a package on the sandbox's side)

sys.path.pop(0)  # the code under test must not import from here

_FILE_LIMIT = 64 * 1024 * 1024  # bytes any one file may grow to
_PROCESS_LIMIT = 8  # processes the sandbox's user may run at once (RLIMIT_NPROC counts per user)
_OPEN_FILES = 64

_GUARD_BLOCKED = frozenset(
    {
        "socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo",
        "socket.gethostbyname", "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg",
        "subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn",
        "os.fork", "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill",
        "os.symlink", "os.link", "ctypes.dlopen", "resource.setrlimit", "resource.prlimit",
    }
)
_GUARD_BLOCKED_IMPORTS = frozenset({"_posixsubprocess"})  # fork_exec has no audit event of its own
_GUARD_PATH_EVENTS = {  # events whose listed positional arguments are paths that must stay inside
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
    "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
    "shutil.rmtree": (0,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


# ---------------------------------------------------------------------------------------------------
# The child: limits, (guard), program, calls


def _limit(memory_mb: int, cpu_s: int) -> None:
    """Cap this process; hard limits equal soft ones so the code cannot raise them again."""
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))  # SIGXCPU first, SIGKILL after
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_LIMIT, _FILE_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (_OPEN_FILES, _OPEN_FILES))
    if os.getuid() != 0:  # root ignores it, and counting all of root's processes would block the child
        resource.setrlimit(resource.RLIMIT_NPROC, (_PROCESS_LIMIT, _PROCESS_LIMIT))


def _inside(root: str, path: Any) -> bool:
    """Whether `path` lies inside `root`; open file descriptors (ints) are allowed."""
    if isinstance(path, int):
        return True
    absolute = os.path.abspath(os.fsdecode(path))  # no syscalls: safe to call inside the hook
    return absolute == root or absolute.startswith(root + os.sep)


def _make_guard(root: str) -> Callable[[str, tuple], None]:
    """The guard mode's audit hook: refuse network, processes, signals and writes outside `root`.

    It catches accidents in generated code; code written to beat it can (descriptor-relative calls,
    ctypes through other routes), which is why bubblewrap is the default.
    """

    def guard(event: str, args: tuple) -> None:
        if event in _GUARD_BLOCKED:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0] in _GUARD_BLOCKED_IMPORTS:
            raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = args
            writes = (flags or 0) & _WRITE_FLAGS or any(c in (mode or "") for c in "wax+")
            if writes and path is not None and not _inside(root, path):
                raise PermissionError(f"sandbox: writing {path!r} is not allowed")
        for index in _GUARD_PATH_EVENTS.get(event, ()):
            if not _inside(root, args[index]):
                raise PermissionError(f"sandbox: {event} on {args[index]!r} is not allowed")

    return guard


def _raised(exc: BaseException) -> dict:
    return {"raised": [type(exc).__name__, wire.describe(exc, ("<program>",))]}


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # the code may have closed or replaced the streams
            pass


def _definitions(namespace: dict) -> dict[str, Any]:
    """What the program defined at top level: ``"callable"``, or the encoded value for plain data."""
    defined = {}
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        if callable(value):
            defined[name] = "callable"
            continue
        try:
            defined[name] = {"value": wire.encode(value)}
        except (wire.Unpassable, RecursionError):
            pass  # modules and other objects stay inside
    return defined


def _answer(call: dict, namespace: dict) -> dict:
    """Call one function the program defined, with arguments that arrived as plain data."""
    try:
        function = namespace[call["call"]]
        result = function(*wire.decode(call["args"]), **wire.decode(call["kwargs"]))
    except BaseException as exc:  # SystemExit included: the call did not return
        return _raised(exc)
    try:
        return {"returned": wire.encode(result)}
    except (wire.Unpassable, RecursionError, ValueError) as exc:
        return _raised(exc)


def _child_main(call: socket.socket) -> None:
    """Run the program sent on `call`, report what it defined, and answer calls until the socket closes."""
    reader = wire.FrameReader()
    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}  # `if __name__ == "__main__"` stays off
    request = wire.receive(call, reader)
    try:
        exec(wire.compile_source(request["program"], "<program>"), namespace)
        report = {"defined": _definitions(namespace)}
    except BaseException as exc:
        report = _raised(exc)
    _flush()
    _reply(call, report)
    while "defined" in report and (request := wire.receive(call, reader)) is not None:
        answer = _answer(request, namespace)
        _flush()
        _reply(call, answer)


def _reply(call: socket.socket, message: dict) -> None:
    try:
        payload = wire.frame(message)
    except (wire.Unpassable, ValueError, RecursionError) as exc:
        payload = wire.frame(_raised(exc))
    call.sendall(payload)


def _child(request: dict, call_fd: int, output_fd: int, workdir: str, guard: bool) -> None:
    """The forked child: keep two descriptors, isolate, limit, run; leave without cleanup handlers."""
    os.setsid()
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    call_fd = os.dup2(call_fd, 3)
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))  # the control socket and everything else
    os.chdir(workdir)
    os.environ.update({"HOME": workdir, "TMPDIR": workdir})
    _limit(request["memory_mb"], request["cpu_s"])
    call = socket.socket(fileno=call_fd)  # before the guard, which refuses new sockets
    if guard:
        sys.addaudithook(_make_guard(workdir))
    try:
        _child_main(call)
    except BaseException:  # the evaluator went away, or the code broke its own channel
        pass
    os._exit(0)  # skip atexit handlers and non-daemon threads the code may have left


# ---------------------------------------------------------------------------------------------------
# The server: fork, finish, clean up


class Server:
    """Starts and finishes one program at a time, on requests from the evaluator's control socket."""

    def __init__(self, control: socket.socket, base_dir: str, guard: bool) -> None:
        self.control, self.base_dir, self.guard = control, base_dir, guard
        self.child: tuple[int, str] | None = None  # (pid, working directory)
        self.index = 0

    def serve(self) -> None:
        try:
            while True:
                data, fds, _, _ = socket.recv_fds(self.control, 4096, 2)
                if not data:
                    break
                request = json.loads(data)
                answer = self.start(request, fds) if request["op"] == "start" else self.finish()
                self.control.send(json.dumps(answer).encode())
        finally:
            self.finish()
            if self.guard:  # under bubblewrap the base is a tmpfs that vanishes with the namespace
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def start(self, request: dict, fds: list[int]) -> dict:
        self.finish()  # a program is never started beside another
        workdir = os.path.join(self.base_dir, f"program-{self.index}")
        self.index += 1
        os.mkdir(workdir)
        call_fd, output_fd = fds
        pid = os.fork()
        if pid == 0:
            try:
                _child(request, call_fd, output_fd, workdir, self.guard)
            finally:
                os._exit(70)  # only reached if setting up the child itself failed
        os.close(call_fd)
        os.close(output_fd)
        self.child = (pid, workdir)
        return {"pid": pid}

    def finish(self) -> dict:
        """Kill what the program left, reap it, remove its directory; the child's exit status."""
        if self.child is None:
            return {"returncode": None}
        pid, workdir = self.child
        self.child = None
        self._kill_all(pid)
        _, status = os.waitpid(pid, 0)
        self._reap_orphans()
        shutil.rmtree(workdir, ignore_errors=True)
        return {"returncode": os.waitstatus_to_exitcode(status)}

    @staticmethod
    def _kill_all(pid: int) -> None:
        """As PID 1 of the sandbox's namespace, every other process in it; otherwise the child's group."""
        try:
            if os.getpid() == 1:
                os.kill(-1, signal.SIGKILL)  # inside a PID namespace: all of it but this process
            else:
                os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    def _reap_orphans() -> None:
        """PID 1 inherits everything the program forked; collect them so none stays a zombie."""
        if os.getpid() != 1:
            return
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return


def _undumpable() -> None:
    """PR_SET_DUMPABLE 0: the programs run as the same user, and must not ptrace the server or read its memory."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # the evaluator went away: stop quietly
    _undumpable()
    control_fd, base, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    Server(socket.socket(fileno=control_fd), base, guard=mode == "guard").serve()
