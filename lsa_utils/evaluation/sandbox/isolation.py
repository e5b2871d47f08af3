"""How the sandbox's server is started: inside bubblewrap (the default), or under the guard by explicit choice.

Bubblewrap (Debian's ``bubblewrap`` package) gives the kernel boundary: new PID, network, IPC, UTS and
mount namespaces; a file system that holds only ``/usr``, the interpreter's standard library (read
only) and a tmpfs of `DISK_MB` for the programs' working directories; ``--die-with-parent``; a new
session; and an unprivileged user, ``nobody`` (65534). Started as root, bubblewrap builds the sandbox
and ``setpriv`` drops to ``nobody`` before Python runs; started as anyone else, a user namespace maps
them to ``nobody`` inside. ``guard`` runs the same server as the study's user with an audit hook: it
stops accidents, not an adversary, so it is used only when a profile asks for it
(``evaluation: {sandbox: guard}``) and the run record and report say so.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

from lsa_utils.infra.records import SourceUnavailable

Isolation = Literal["bubblewrap", "guard"]
ISOLATIONS: tuple[Isolation, ...] = ("bubblewrap", "guard")
NOBODY = 65534
DISK_MB = 64  # the tmpfs all programs of a session write to; each program's folder is removed after it
INSIDE_DIR = "/sandbox"  # where the server's two files appear inside
WORK_DIR = "/tmp"  # the tmpfs, inside

_HERE = Path(__file__).parent
_FILES = ("server.py", "wire.py")
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
INSTALL = "apt-get install bubblewrap"
_FIX = (f"install it with `{INSTALL}` (`make setup` does this when run as root), or set "
        "`evaluation: {sandbox: guard}` in the profile to run code under the in-process guard, which is "
        "not a security boundary")


class SandboxUnavailable(SourceUnavailable):
    """Bubblewrap is missing or cannot create its namespaces here; the message says what to do. A source the
    run cannot have, like a missing model: the runner's preflight stops on it before any notebook runs."""


def check_isolation(isolation: str) -> None:
    """Raise ValueError for an unknown isolation, SandboxUnavailable if bubblewrap cannot run here."""
    if isolation not in ISOLATIONS:
        raise ValueError(f"sandbox {isolation!r} is not one of {', '.join(ISOLATIONS)}")
    if isolation == "bubblewrap":
        _probe_bubblewrap()


def server_command(isolation: Isolation, control_fd: int, guard_dir: Path) -> list[str]:
    """The command line that starts the server with its control socket on `control_fd`."""
    if isolation == "guard":
        return [*_python(sys.executable), str(_HERE / "server.py"), str(control_fd), str(guard_dir), "guard"]
    return [*bubblewrap_prefix(), *_python(_interpreter()), f"{INSIDE_DIR}/server.py", str(control_fd),
            WORK_DIR, "bubblewrap"]


def server_environment(workdir: Path) -> dict[str, str]:
    """The guard's whole environment (bubblewrap clears and sets its own, the same but for paths)."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(workdir), "TMPDIR": str(workdir),
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


def bubblewrap_prefix() -> list[str]:
    """bwrap's arguments up to the command: namespaces, file system, environment, user."""
    namespaces = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                  "--die-with-parent", "--new-session", "--as-pid-1"]
    root = os.geteuid() == 0
    user = [] if root else ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--cap-drop", "ALL"]
    environment = ["--clearenv"]
    for name, value in {**server_environment(Path(WORK_DIR)), "PYTHONHOME": _python_home()}.items():
        environment += ["--setenv", name, value]
    files = [*_system_mounts(), *_interpreter_mounts(),
             "--perms", "0755", "--dir", INSIDE_DIR,
             *(arg for name in _FILES for arg in ("--ro-bind", str(_HERE / name), f"{INSIDE_DIR}/{name}")),
             "--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(DISK_MB * 1024 * 1024), "--tmpfs", WORK_DIR, "--chdir", WORK_DIR]
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all"] if root else []
    return [_bwrap(), *namespaces, *user, *environment, *files, *drop]


def _python(executable: str) -> list[str]:
    """No site packages (-S, -s), no script folder on sys.path (-P), UTF-8 I/O.

    Not -I: it implies -E, which would ignore PYTHONHASHSEED, which keeps set ordering, and so pass@1,
    reproducible. The environment is built from scratch instead.
    """
    return [executable, "-S", "-s", "-P", "-X", "utf8"]


def _bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise SandboxUnavailable(f"generated code runs only inside bubblewrap, and `bwrap` is not on PATH: {_FIX}")
    return path


def _interpreter() -> str:
    """The real interpreter binary (a venv's python is a link to it; the venv is not mounted)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _python_home() -> str:
    prefix, exec_prefix = sys.base_prefix, sys.base_exec_prefix
    return prefix if prefix == exec_prefix else f"{prefix}:{exec_prefix}"


def _system_mounts() -> list[str]:
    mounts = ["--ro-bind", "/usr", "/usr"]
    for path in _TOP_LEVEL:
        if os.path.islink(path):
            mounts += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            mounts += ["--ro-bind", path, path]
    return mounts


def _interpreter_mounts() -> list[str]:
    """The interpreter's prefix, read only, under folders readable by ``nobody`` (its real parents may not be)."""
    mounts: list[str] = []
    for prefix in dict.fromkeys([sys.base_prefix, sys.base_exec_prefix, str(Path(_interpreter()).parent.parent)]):
        if prefix == "/usr" or prefix.startswith("/usr/"):
            continue
        for parent in reversed(Path(prefix).parents[:-1]):
            mounts += ["--perms", "0755", "--dir", str(parent)]
        mounts += ["--ro-bind", prefix, prefix]
    return mounts


@functools.cache
def _probe_bubblewrap() -> None:
    """Start the sandbox once with an interpreter that does nothing, so a broken setup fails with its reason."""
    command = [*bubblewrap_prefix(), *_python(_interpreter()), "-c", "pass"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bubblewrap could not start a sandbox ({exc}): {_FIX}") from exc
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise SandboxUnavailable(f"bubblewrap could not start a sandbox here ({reason}): {_FIX}")
