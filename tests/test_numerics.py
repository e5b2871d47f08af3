"""Every process of the study runs ATen at the same CPU capability, deterministic algorithms and a pinned
thread count, so every x86 machine trains the same models."""

import json
import os
import platform
import subprocess
import sys

import pytest

from lsa_utils.infra.numerics import numerics_in_force

X86 = platform.machine().lower() in ("x86_64", "amd64")
PROBE = "import lsa_utils, torch; print(torch.backends.cpu.get_cpu_capability())"


def _capability(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env)
    return done.stdout.strip()


@pytest.mark.skipif(not X86, reason="the pin is for x86-64 CPUs")
def test_importing_the_package_pins_aten_to_avx2_and_an_explicit_choice_wins():
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    assert _capability(env) == "AVX2"
    assert _capability({**env, "ATEN_CPU_CAPABILITY": "default"}) == "DEFAULT"


@pytest.mark.skipif(not X86, reason="the pin is for x86-64 CPUs")
def test_this_test_process_and_the_run_records_state_the_pin():
    import torch

    assert torch.backends.cpu.get_cpu_capability() == "AVX2"  # conftest imports lsa_utils before torch computes
    state = numerics_in_force()
    assert state["ATEN_CPU_CAPABILITY"] == "avx2" and state["cpu_capability"] == "AVX2"
    json.dumps(state)  # it goes into every run record as it is


def test_torch_runs_deterministic_algorithms_on_the_pinned_thread_count():
    import torch

    state = numerics_in_force()  # conftest configures torch as every process of the study does
    assert state["deterministic"] is True and torch.are_deterministic_algorithms_enabled()
    assert state["threads"] == int(os.environ["LSA_NUM_THREADS"]) == torch.get_num_threads()
    assert state["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # what deterministic cuBLAS needs on a GPU
