"""Programs written to beat the sandbox: each must end non-`passed` within its limit plus two seconds,
leave no process and no file, and leave the evaluator able to carry on.

Each case is a program and tests that would pass only if the attack worked. All run in one session,
as the evaluator runs a benchmark, under the default isolation (bubblewrap).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from lsa_utils.evaluation.sandbox import SandboxSession

LIMIT_S = 3.0
SECRET = "lsa-probe-8c1f"  # in the environment of a process beside the evaluator; no program may find it
HIDDEN = "HIDDEN-7781"  # only in the hidden tests
HOST_DIR = Path(tempfile.mkdtemp(prefix="lsa-hostile-"))  # the evaluator's own folder, with a file to keep
SENTINEL = HOST_DIR / "keep.txt"
REPO_FILE = Path(__file__).resolve()
PID = os.getpid()
ABSTRACT = f"\0lsa-hostile-{PID}"


def _program(body: str) -> str:
    return textwrap.dedent(body).strip() + "\n"


# (name, program, tests): the tests pass only if the attack succeeded.
CASES = [
    # Forged or tampered verdicts
    ("forge a report on every descriptor", _program("""
        import os, json, struct
        for fd in range(3, 64):
            for data in (b'{"status": "passed", "detail": ""}', struct.pack('>I', 2) + b'{}'):
                try:
                    os.write(fd, data)
                except OSError:
                    pass
        def f():
            return 0
     """), "assert f() == 1"),
    ("forge the protocol's answers ahead of the calls", _program("""
        import os, json, struct
        def frame(m):
            body = json.dumps(m).encode()
            return struct.pack('>I', len(body)) + body
        os.write(3, frame({"passed": True}) + frame({"status": "passed"}))
        def f():
            return 0
     """), "assert f() == 1"),
    ("rebind the child's reporting helpers", _program("""
        import json, os
        json.dumps = lambda *a, **k: '{"status": "passed", "detail": ""}'
        os.write = lambda fd, data: len(data)
        def f():
            return 0
     """), "assert f() == 1"),
    ("replace builtins.compile and exec", _program("""
        import builtins
        builtins.compile = lambda *a, **k: compile('pass', '<x>', 'exec')
        builtins.exec = lambda *a, **k: None
        def f():
            return 0
     """), "assert f() == 1"),
    ("rebind AssertionError", _program("""
        import builtins
        class Never(BaseException):
            pass
        builtins.AssertionError = Never
        def f():
            return 0
     """), "assert f() == 1"),
    ("return an object equal to everything", _program("""
        class Anything:
            def __eq__(self, other):
                return True
        def f():
            return Anything()
     """), "assert f() == 1"),
    ("return an int subclass equal to everything", _program("""
        class Int(int):
            def __eq__(self, other):
                return True
        def f():
            return Int(0)
     """), "assert f() == 1"),
    ("shadow the builtins the tests use", _program("""
        def isinstance(*args):
            return True
        def all(*args):
            return True
        def f():
            return 0
     """), "assert isinstance(f(), str) and all([f()])"),
    ("exit with status 0 inside the call", "import sys\ndef f():\n    sys.exit(0)\n", "assert f() == 1"),
    ("leave with os._exit(0) inside the call", "import os\ndef f():\n    os._exit(0)\n", "assert f() == 1"),
    ("exit before defining anything", "import sys\nsys.exit(0)\n", "assert f() == 1"),
    ("close the channel and linger", "import os, time\nos.close(3)\ntime.sleep(30)\n", "assert f() == 1"),
    ("read the hidden tests", _program(f"""
        import os
        def f():
            found = ''
            for pid in os.listdir('/proc'):
                for name in ('cmdline', 'environ'):
                    try:
                        data = open(f'/proc/{{pid}}/{{name}}', 'rb').read().decode(errors='ignore')
                    except OSError:
                        continue
                    if 'HIDDEN-' in data:
                        found = data[data.index('HIDDEN-'):][:11]
            return found
     """), f"assert f() == {HIDDEN!r}"),
    # Reads of private files and other processes' environments
    ("read /etc/shadow", "def f():\n    return open('/etc/shadow').read()\n", "assert 'root:' in f()"),
    ("read /etc/passwd", "def f():\n    return open('/etc/passwd').read()\n", "assert 'root:' in f()"),
    ("read the evaluator's environment through /proc", _program(f"""
        import os
        def f():
            for pid in os.listdir('/proc'):
                try:
                    if {SECRET!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb').read():
                        return True
                except OSError:
                    pass
            return False
     """), "assert f()"),
    ("read the evaluator's command line by its host pid", _program(f"""
        def f():
            return open('/proc/{PID}/cmdline', 'rb').read().decode()
     """), "assert 'python' in f()"),
    ("read the repository's source", f"def f():\n    return open({str(REPO_FILE)!r}).read()\n",
     "assert 'hostile' in f()"),
    ("climb out of the root", _program("""
        import os
        def f():
            for _ in range(20):
                os.chdir('..')
            return sorted(os.listdir('.'))
     """), "assert 'work' in f() or 'etc' in f()"),
    # Writes and deletes by path and by descriptor
    ("create a file in / by descriptor", _program("""
        import os
        def f():
            root = os.open('/', os.O_RDONLY)
            os.close(os.open('lsa-pwned', os.O_CREAT | os.O_WRONLY, dir_fd=root))
            return True
     """), "assert f()"),
    ("delete the evaluator's file by descriptor", _program(f"""
        import os
        def f():
            folder = os.open({str(HOST_DIR)!r}, os.O_RDONLY)
            os.unlink('keep.txt', dir_fd=folder)
            return True
     """), "assert f()"),
    ("write into the evaluator's folder", f"def f():\n    open({str(HOST_DIR / 'pwned')!r}, 'w').write('x')\n"
     "    return True\n", "assert f()"),
    ("write into the repository", f"def f():\n    open({str(REPO_FILE.parent / 'pwned.py')!r}, 'w')\n"
     "    return True\n", "assert f()"),
    ("write into the standard library", _program("""
        import os
        def f():
            open(os.path.join(os.path.dirname(os.__file__), 'pwned.py'), 'w').write('x')
            return True
     """), "assert f()"),
    ("chmod the interpreter", "import os, sys\ndef f():\n    os.chmod(sys.executable, 0o777)\n    return True\n",
     "assert f()"),
    ("become root", "import os\ndef f():\n    os.setuid(0)\n    return os.getuid()\n", "assert f() == 0"),
    # Signals to the evaluator and the server
    ("SIGKILL the parent", "import os, signal\ndef f():\n    os.kill(os.getppid(), signal.SIGKILL)\n"
     "    return 0\n", "assert f() == 1"),
    ("SIGKILL every process it can", "import os, signal\ndef f():\n    os.kill(-1, signal.SIGKILL)\n"
     "    return 0\n", "assert f() == 1"),
    ("SIGTERM the evaluator by its host pid", f"import os, signal\ndef f():\n    os.kill({PID}, signal.SIGTERM)\n"
     "    return True\n", "assert f()"),
    ("pidfd_send_signal to the evaluator", _program(f"""
        import ctypes, signal
        libc = ctypes.CDLL(None, use_errno=True)
        def f():
            fd = libc.syscall(434, {PID}, 0)  # pidfd_open
            return fd >= 0 and libc.syscall(424, fd, signal.SIGKILL, None, 0) == 0  # pidfd_send_signal
     """), "assert f()"),
    ("ptrace the server", _program("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        def f():
            return libc.ptrace(16, 1, None, None)  # PTRACE_ATTACH to PID 1
     """), "assert f() == 0"),
    ("write the server's memory", "def f():\n    open('/proc/1/mem', 'r+b').write(b'x')\n    return True\n",
     "assert f()"),
    # Survival
    ("a daemon that outlives its program", _program("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        def f():
            return 0
     """), "assert f() == 1"),
    ("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
     "assert f() == 1"),
    ("a thread that keeps the child busy", _program("""
        import threading
        def spin():
            while True:
                pass
        threading.Thread(target=spin, daemon=True).start()
        def f():
            while True:
                pass
     """), "assert f() == 1"),
    # Disk, memory, CPU, output
    ("fill the disk with one file", _program("""
        def f():
            n = 0
            with open('big', 'wb') as out:
                for _ in range(200):
                    n += out.write(b'x' * 2**20)
            return n
     """), "assert f() >= 200 * 2**20"),
    ("fill the disk with many files", _program("""
        def f():
            n = 0
            for i in range(200):
                with open(f'part-{i}', 'wb') as out:
                    n += out.write(b'x' * 2**20)
            return n
     """), "assert f() >= 200 * 2**20"),
    ("fill shared memory", "def f():\n    open('/dev/shm/x', 'wb').write(b'x' * 2**20)\n    return True\n",
     "assert f()"),
    ("memory bomb", "xs = []\nwhile True:\n    xs.append(' ' * 10**6)\n", "assert f() == 1"),
    ("return a huge value", "def f():\n    return [0] * 10**8\n", "assert len(f()) == 10**8"),
    ("return a value nested past any recursion limit", _program("""
        def f():
            x = []
            for _ in range(100000):
                x = [x]
            return x
     """), "assert f()"),
    ("infinite loop", "while True:\n    pass\n", "assert f() == 1"),
    ("print without end", "def f():\n    while True:\n        print('x' * 1000)\n", "assert f() == 1"),
    ("crash the interpreter", "import ctypes\ndef f():\n    return ctypes.string_at(0)\n", "assert f()"),
    # Network
    ("connect to the evaluator's loopback listener", _program("""
        import socket
        def f(port):
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return True
     """), "assert f(PORT)"),
    ("connect to the evaluator's abstract unix socket", _program(f"""
        import socket
        def f():
            s = socket.socket(socket.AF_UNIX)
            s.connect({ABSTRACT!r})
            return True
     """), "assert f()"),
    ("resolve and reach the internet", _program("""
        import socket
        def f():
            socket.create_connection(('1.1.1.1', 53), timeout=1).close()
            return True
     """), "assert f()"),
]


@pytest.fixture(scope="module")
def session():
    """The session, beside a process of the evaluator's user whose environment holds a secret."""
    SENTINEL.write_text("keep")
    holder = subprocess.Popen(["sleep", "600"], env={**os.environ, "LSA_HOSTILE_SECRET": SECRET})
    with SandboxSession() as sandbox:
        yield sandbox
    holder.kill()
    holder.wait()
    shutil.rmtree(HOST_DIR)


@pytest.fixture(scope="module")
def listeners():
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(ABSTRACT)
    unix.listen()
    for s in (tcp, unix):
        s.settimeout(0.2)
    yield tcp
    tcp.close()
    unix.close()


def _children(pid: int) -> set[int]:
    """Every descendant of `pid`, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has already died


def _host_temp() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("lsa-")}


@pytest.mark.parametrize("name, program, tests", CASES, ids=[c[0] for c in CASES])
def test_a_hostile_program_does_not_pass(session: SandboxSession, listeners, name: str, program: str,
                                         tests: str) -> None:
    temp_before = _host_temp()
    tests = tests.replace("PORT", str(listeners.getsockname()[1]))
    start = time.monotonic()
    result = session.run(program, tests, timeout_s=LIMIT_S, memory_mb=256)
    elapsed = time.monotonic() - start
    assert result.status != "passed", result
    assert elapsed <= LIMIT_S + 2.0, f"{name}: {elapsed:.1f} s"
    assert len(_children(session._server.pid)) == 1, "only the server may be left running"
    assert _host_temp() == temp_before
    assert SENTINEL.read_text() == "keep"
    assert not (HOST_DIR / "pwned").exists() and not (REPO_FILE.parent / "pwned.py").exists()
    assert not Path("/lsa-pwned").exists()
    with pytest.raises(TimeoutError):
        listeners.accept()
    assert session.run("def f():\n    return 1\n", "assert f() == 1").status == "passed"  # carries on


def test_there_are_at_least_thirty() -> None:
    assert len(CASES) >= 30


def test_a_killed_evaluator_takes_the_sandbox_with_it(tmp_path: Path) -> None:
    script = tmp_path / "evaluator.py"
    script.write_text(textwrap.dedent("""
        import sys
        from lsa_utils.evaluation.sandbox import SandboxSession
        program = "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep(120)\\ntime.sleep(120)\\n"
        with SandboxSession() as sandbox:
            print(sandbox._server.pid, flush=True)
            sandbox.run(program, "", timeout_s=60)
    """))
    evaluator = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).parent.parent)
    server = int(evaluator.stdout.readline())
    deadline = time.monotonic() + 10
    while len(_children(server)) < 3 and time.monotonic() < deadline:  # server, the program, its daemon
        time.sleep(0.1)
    inside = _children(server) | {server}
    assert len(inside) >= 4
    evaluator.send_signal(signal.SIGKILL)
    evaluator.wait()
    deadline = time.monotonic() + 2.0
    while any(map(_alive, inside)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in inside if _alive(pid)], "the sandbox outlived its evaluator"
