"""A deterministic kill point for tests/test_interrupt.py, loaded into every process of a run via PYTHONPATH.

With ``LSA_KILL_AT=<folder>:<n>``, the process that opens the n-th file for writing under a ``.tmp-*`` entry
of ``<folder>`` (counted per process) touches ``LSA_KILL_MARK`` and stops itself (SIGSTOP), mid-write. The
test then SIGKILLs every process of the run. Polling the cache from outside would miss stages that finish
between two polls; stopping at the write itself cannot.
"""

import os
import signal
import sys
from pathlib import Path

_spec = os.environ.get("LSA_KILL_AT")
if _spec:
    _folder, _n = _spec.rsplit(":", 1)
    _folder, _n, _seen = Path(_folder).resolve(), int(_n), [0]

    def _stop_at_the_kill_point(event: str, args: tuple) -> None:
        if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        mode, flags = args[1], args[2]
        writing = ("w" in mode or "a" in mode or "x" in mode) if isinstance(mode, str) else bool(
            flags & (os.O_WRONLY | os.O_RDWR))
        path = Path(os.fsdecode(args[0])).resolve()
        inside = path.is_relative_to(_folder) and any(part.startswith(".tmp-")
                                                      for part in path.relative_to(_folder).parts)
        if writing and inside:
            _seen[0] += 1
            if _seen[0] == _n:
                Path(os.environ["LSA_KILL_MARK"]).touch()
                os.kill(os.getpid(), signal.SIGSTOP)

    sys.addaudithook(_stop_at_the_kill_point)
