"""The sandbox for generated code: `SandboxSession` for many programs, `run_tests` for one.

`supervisor` starts the server and classifies what happened; `isolation` says how the server is
started (bubblewrap, or the guard by explicit choice); `server` is the script it runs, forking one
limited child per program; `judge` runs the tests in the evaluator against the child; `wire` is what
both sides share.
"""

from lsa_utils.evaluation.sandbox.isolation import ISOLATIONS, Isolation, SandboxUnavailable
from lsa_utils.evaluation.sandbox.supervisor import SandboxResult, SandboxSession, Status, run_tests

__all__ = ["ISOLATIONS", "Isolation", "SandboxResult", "SandboxSession", "SandboxUnavailable", "Status", "run_tests"]
