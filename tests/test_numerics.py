"""Every process of the study runs ATen, MKL and oneDNN on their AVX2 paths, deterministic algorithms and a
pinned thread count, so every x86 machine trains the same models."""

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


MATMUL = ("torch.manual_seed(0); a = torch.randn(257, 509); b = torch.randn(509, 263); "
          "print(hash((a @ b).numpy().tobytes()))")


@pytest.mark.skipif(not X86, reason="the pin is for x86-64 CPUs")
def test_importing_the_package_runs_mkl_on_its_avx2_path():
    """A BLAS product after `import lsa_utils` is bit-identical to one with MKL_CBWR=AVX2 set by hand (on an
    AVX-512 Intel CPU, MKL's own choice gives other bits; on other vendors MKL ignores the branch)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}

    def product(code: str, extra: dict[str, str]) -> str:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**env, "PYTHONHASHSEED": "0", **extra})
        return done.stdout.strip()

    pinned = product(f"import lsa_utils, os, torch; assert os.environ['MKL_CBWR'] == 'AVX2'; {MATMUL}", {})
    assert pinned == product(f"import torch; {MATMUL}", {"MKL_CBWR": "AVX2"})


@pytest.mark.skipif(not X86, reason="the pin is for x86-64 CPUs")
def test_this_test_process_and_the_run_records_state_the_pin():
    import torch

    assert torch.backends.cpu.get_cpu_capability() == "AVX2"  # conftest imports lsa_utils before torch computes
    state = numerics_in_force()
    assert state["ATEN_CPU_CAPABILITY"] == "avx2" and state["cpu_capability"] == "AVX2"
    assert state["MKL_CBWR"] == "AVX2" and state["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    json.dumps(state)  # it goes into every run record as it is


def test_run_records_name_the_cpu():
    name = numerics_in_force()["cpu"]
    assert isinstance(name, str) and name
    if X86 and os.path.exists("/proc/cpuinfo"):
        assert name.split()[0] in ("GenuineIntel", "AuthenticAMD", "HygonGenuine", "CentaurHauls")


def test_torch_runs_deterministic_algorithms_on_the_pinned_thread_count():
    import torch

    state = numerics_in_force()  # conftest configures torch as every process of the study does
    assert state["deterministic"] is True and torch.are_deterministic_algorithms_enabled()
    assert state["threads"] == int(os.environ["LSA_NUM_THREADS"]) == torch.get_num_threads()
    assert state["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # what deterministic cuBLAS needs on a GPU
