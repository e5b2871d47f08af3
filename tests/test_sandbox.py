"""The sandbox classifies every outcome and never raises for what the code does."""

import os
import tempfile
import time

import pytest

from lsa_utils.evaluation.sandbox import SandboxResult, run_tests

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
        "import socket\nsocket.getaddrinfo('localhost', 80)",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:9')",
    ],
)
def test_network_is_blocked(program: str) -> None:
    result = run_tests(program, "")
    assert result.status == "error" and "sandbox" in result.detail


@pytest.mark.parametrize(
    "program",
    ["import subprocess\nsubprocess.run(['true'])", "import os\nos.system('true')", "import os\nos.fork()"],
)
def test_processes_are_blocked(program: str) -> None:
    assert run_tests(program, "").status == "error"


@pytest.mark.parametrize("program", ["import sys\nsys.exit(0)", "import os\nos._exit(0)"])
def test_leaving_early_does_not_pass(program: str) -> None:
    assert run_tests(program, "assert False").status == "error"


def test_files_stay_in_a_removed_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tempfile.gettempdir()))
    program = "import os\nopen('out.txt', 'w').write('x')\nos.mkdir('sub')"
    assert run_tests(program, "assert open('out.txt').read() == 'x'").status == "passed"
    assert list(tmp_path.iterdir()) == []
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("lsa-sandbox-")}


def test_writes_outside_the_sandbox_are_blocked(tmp_path) -> None:
    target = tmp_path / "escaped.txt"
    result = run_tests(f"open({str(target)!r}, 'w').write('x')", "")
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


def test_a_session_runs_many_programs_each_in_a_fresh_child_and_directory() -> None:
    from lsa_utils.evaluation.sandbox import SandboxSession

    with SandboxSession() as sandbox:
        assert sandbox.run("import os\nopen('left.txt', 'w').write('x')", "").status == "passed"
        assert sandbox.run("import os", "assert os.listdir('.') == []").status == "passed"  # a new, empty folder
        assert sandbox.run("import json\njson.dumps = None", "").status == "passed"
        assert sandbox.run("import json", "assert json.dumps(1) == '1'").status == "passed"  # its changes are gone
        assert sandbox.run("while True:\n    pass", "", timeout_s=0.5).status == "timeout"
        assert sandbox.run("import time\nt = time.time()", "assert True").status == "passed"  # carries on
        sandbox.run(ADD, "", memory_mb=64)
        assert sandbox.run("x = bytearray(200 * 1024**2)", "", memory_mb=256).status == "passed"  # own limits


def test_threads_a_program_leaves_do_not_outlive_it() -> None:
    from lsa_utils.evaluation.sandbox import SandboxSession

    program = "import threading, time\nthreading.Thread(target=lambda: time.sleep(30)).start()"
    with SandboxSession() as sandbox:
        start = time.monotonic()
        assert sandbox.run(program, "").status == "passed"
        assert time.monotonic() - start < 5  # no wait for the thread: the child left with it


def test_a_dead_server_is_replaced() -> None:
    import signal as signals

    from lsa_utils.evaluation.sandbox import SandboxSession

    with SandboxSession() as sandbox:
        os.killpg(sandbox._server.pid, signals.SIGKILL)
        assert sandbox.run(ADD, "assert add(1, 1) == 2").status == "error"  # the request that found it dead
        assert sandbox.run(ADD, "assert add(1, 1) == 2").status == "passed"
