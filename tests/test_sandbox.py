"""The sandbox classifies every outcome and never raises for what the code does."""

import os
import tempfile

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
