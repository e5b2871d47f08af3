"""The sandbox classifies every outcome and never raises for what the code does (hostile programs: test_sandbox_hostile)."""

import os
import tempfile
import time

import pytest

from lsa_utils.evaluation.sandbox import ISOLATIONS, SandboxResult, SandboxSession, SandboxUnavailable, run_tests

ADD = "def add(a, b):\n    return a + b\n"


def test_passing_program() -> None:
    result = run_tests(ADD, "assert add(2, 3) == 5")
    assert result == SandboxResult("passed", "", "")
    assert result.passed


def test_failing_assertion_names_the_line() -> None:
    result = run_tests(ADD, "assert add(2, 2) == 5, 'wrong sum'")
    assert result.status == "failed"
    assert "wrong sum" in result.detail and "<tests> line 1" in result.detail


def test_infinite_loop_times_out() -> None:
    assert run_tests("while True:\n    pass", "", timeout_s=1.0).status == "timeout"


def test_sleeping_child_is_killed_on_time() -> None:
    assert run_tests("import time\ntime.sleep(60)", "", timeout_s=0.5).status == "timeout"


@pytest.mark.parametrize("hog", ["x = bytearray(4 * 1024**3)", "xs = []\nwhile True:\n    xs.append(' ' * 10**6)"])
def test_memory_hog(hog: str) -> None:
    assert run_tests(hog, "", timeout_s=10.0, memory_mb=256).status == "memory"


def test_syntax_error() -> None:
    result = run_tests("def add(a, b:\n    return a + b", "assert add(1, 2) == 3")
    assert result.status == "error" and "SyntaxError" in result.detail


def test_name_error_in_tests() -> None:
    result = run_tests(ADD, "assert mul(2, 3) == 6")
    assert result.status == "error" and "NameError" in result.detail


@pytest.mark.parametrize(
    "program",
    [
        "import socket\nsocket.create_connection(('127.0.0.1', 9))",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')",
    ],
)
@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_network_is_unreachable(program: str, isolation: str) -> None:
    with SandboxSession(isolation) as sandbox:
        assert sandbox.run(program, "").status == "error"


@pytest.mark.parametrize(
    "program",
    ["import subprocess\nsubprocess.run(['true'], check=True)", "import os\nos.system('true')"],
)
def test_the_guard_blocks_processes(program: str) -> None:
    with SandboxSession("guard") as sandbox:
        assert sandbox.run(program, "").status == "error"


@pytest.mark.parametrize("program", ["import sys\nsys.exit(0)", "import os\nos._exit(0)"])
@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_leaving_early_does_not_pass(program: str, isolation: str) -> None:
    with SandboxSession(isolation) as sandbox:
        assert sandbox.run(program, "assert False").status == "error"


def test_files_stay_in_a_removed_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tempfile.gettempdir()))
    program = "import os\nopen('out.txt', 'w').write('x')\nos.mkdir('sub')\ndef read():\n    return open('out.txt').read()"
    assert run_tests(program, "assert read() == 'x'").status == "passed"
    assert list(tmp_path.iterdir()) == []
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("lsa-sandbox-")}


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_writes_outside_the_sandbox_are_blocked(tmp_path, isolation: str) -> None:
    target = tmp_path / "escaped.txt"
    with SandboxSession(isolation) as sandbox:
        result = sandbox.run(f"open({str(target)!r}, 'w').write('x')", "")
    assert result.status == "error" and not target.exists()


def test_huge_output_is_capped() -> None:
    result = run_tests("for _ in range(200_000):\n    print('x' * 100)", "", timeout_s=20.0)
    assert result.status == "passed"
    assert 0 < len(result.output) <= 64 * 1024


def test_hash_order_is_reproducible() -> None:
    program = "print(list({'apple', 'pear', 'plum', 'fig'}))"
    assert run_tests(program, "").output == run_tests(program, "").output


def test_bad_limits_are_the_callers_error() -> None:
    with pytest.raises(ValueError):
        run_tests(ADD, "", timeout_s=0)


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_a_session_runs_many_programs_each_in_a_fresh_child_and_directory(isolation: str) -> None:
    listing = "import os\ndef listing():\n    return os.listdir('.')"
    with SandboxSession(isolation) as sandbox:
        assert sandbox.run("open('left.txt', 'w').write('x')", "").status == "passed"
        assert sandbox.run(listing, "assert listing() == []").status == "passed"  # a new, empty folder
        assert sandbox.run("import math\nmath.pi = 3", "").status == "passed"
        pi = "import math\ndef pi():\n    return math.pi"
        assert sandbox.run(pi, "assert pi() > 3.14").status == "passed"  # its changes are gone
        assert sandbox.run("while True:\n    pass", "", timeout_s=0.5).status == "timeout"
        assert sandbox.run(ADD, "assert add(1, 2) == 3").status == "passed"  # carries on
        assert sandbox.run("x = bytearray(200 * 1024**2)", "", memory_mb=256).status == "passed"  # own limits


def test_plain_values_cross_and_keep_their_types() -> None:
    program = "def echo(x):\n    return x\ndef boom(x):\n    raise ValueError(f'bad {x}')\nLIMIT = (3, 4.5)"
    tests = """
for value in [None, True, 7, 2**80, -0.0, float('inf'), 'é', b'\\x00', [1, (2, 3)], {'k': {1, 2}}, frozenset({4}), 1j]:
    assert echo(value) == value and type(echo(value)) is type(value), value
nan = echo(float('nan'))
assert nan != nan
assert LIMIT == (3, 4.5)
try:
    boom(1)
except ValueError as error:
    assert 'bad 1' in str(error)
else:
    raise AssertionError('no ValueError')
"""
    assert run_tests(program, tests) == SandboxResult("passed", "", "")


@pytest.mark.parametrize("program", ["def f():\n    return (x for x in [1])", "def f():\n    return object()"])
def test_values_that_are_not_plain_data_are_errors(program: str) -> None:
    result = run_tests(program, "assert f() is not None")
    assert result.status == "error" and "not plain data" in result.detail


def test_the_tests_can_pass_only_plain_data() -> None:
    result = run_tests("def apply(f):\n    return f(1)", "assert apply(lambda x: x) == 1")
    assert result.status == "error" and "not plain data" in result.detail


def test_without_bubblewrap_code_refuses_to_run_and_names_the_fix(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap.*sandbox: guard"):
        SandboxSession()
    with SandboxSession("guard") as sandbox:  # the explicit opt-in still works
        assert sandbox.run(ADD, "assert add(1, 1) == 2").status == "passed"


def test_an_unknown_isolation_is_an_error() -> None:
    with pytest.raises(ValueError, match="'docker' is not one of bubblewrap, guard"):
        SandboxSession("docker")


def test_threads_a_program_leaves_do_not_outlive_it() -> None:
    program = "import threading, time\nthreading.Thread(target=lambda: time.sleep(30)).start()"
    with SandboxSession() as sandbox:
        start = time.monotonic()
        assert sandbox.run(program, "").status == "passed"
        assert time.monotonic() - start < 5  # no wait for the thread: the child left with it


def test_a_dead_server_is_replaced() -> None:
    import signal as signals

    with SandboxSession() as sandbox:
        os.killpg(sandbox._server.pid, signals.SIGKILL)
        assert sandbox.run(ADD, "assert add(1, 1) == 2").status == "error"  # the request that found it dead
        assert sandbox.run(ADD, "assert add(1, 1) == 2").status == "passed"
