"""The sandbox for generated code: `SandboxSession` for many programs, `run_tests` for one.

`supervisor` starts the server and classifies what happened; `server` is the script that server runs,
forking one limited child per program.
"""

from lsa_utils.evaluation.sandbox.supervisor import SandboxResult, SandboxSession, Status, run_tests

__all__ = ["SandboxResult", "SandboxSession", "Status", "run_tests"]
