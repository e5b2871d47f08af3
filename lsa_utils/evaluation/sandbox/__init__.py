"""The sandbox for generated code: `run_tests` and the `SandboxResult` it returns.

`supervisor` starts and watches the child process; `child` is the script the child runs.
"""

from lsa_utils.evaluation.sandbox.supervisor import SandboxResult, Status, run_tests

__all__ = ["SandboxResult", "Status", "run_tests"]
