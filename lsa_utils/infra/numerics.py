"""The numerical environment of every process of the study, set in one place before torch computes anything.

Models trained from scratch turn last-bit differences into different models, so three things are fixed:

- **The CPU code paths.** ATen, MKL (torch's BLAS on x86) and oneDNN each pick their kernels by the CPU
  they find, and an AVX-512 machine trains another zoo than an AVX2 machine from the same corpus. All
  three are pinned to their AVX2 paths, which every current x86-64 CPU has. Measured with notebook 00's
  models.csv: an AVX-512 AMD EPYC and an AVX2 AMD EPYC train byte-identical zoos. An Intel Xeon trains
  another one: MKL honours ``MKL_CBWR=AVX2`` on Intel CPUs only and runs its own dispatch on others
  (Intel's CNR documentation says so), so its products differ by vendor. Only ``MKL_CBWR=COMPATIBLE``
  (SSE2 code on every x86 CPU) is vendor-neutral; it made teacher training 2.6x slower on the AMD
  reference machine, so it is left as an opt-in, set in the environment. Run records name the CPU.
  Each library reads its variable when it first computes, so `pin_numerics` runs when `lsa_utils` is first
  imported; kernels and workers inherit the environment.
- **Threads.** A process that trains uses `TRAINING_THREADS` intra-op threads (a grid worker: one), so a
  bigger machine does not change the order of a reduction.
- **Deterministic algorithms**, and cuBLAS's workspace size that they need on a GPU.

A value already in the environment wins, so ``ATEN_CPU_CAPABILITY=default`` restores the machine's own
kernels and ``LSA_NUM_THREADS=8`` more threads; run records state what was in force.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

TRAINING_THREADS = 2  # the reference machine's core count; results were measured equal with 1 and 2
PINNED = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "LSA_NUM_THREADS": str(TRAINING_THREADS)}
PINNED_X86 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_numerics() -> None:
    """Set the pinned variables unless the environment already sets them (the CPU code paths on x86-64 only)."""
    pinned = PINNED | (PINNED_X86 if platform.machine().lower() in ("x86_64", "amd64") else {})
    for name, value in pinned.items():
        os.environ.setdefault(name, value)


def configure_torch() -> None:
    """Deterministic algorithms and the fixed intra-op thread count ``LSA_NUM_THREADS``."""
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.set_num_threads(int(os.environ.get("LSA_NUM_THREADS", TRAINING_THREADS)))


def cpu_name() -> str:
    """The CPU's vendor and model as the kernel reports them (MKL's results depend on the vendor)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    return " ".join(filter(None, (fields.get("vendor_id"), fields.get("model name")))) or platform.machine()


def numerics_in_force() -> dict[str, str | int | bool | None]:
    """What run records state: the CPU, the pinned variables and, once torch is loaded, what torch uses."""
    state: dict[str, str | int | bool | None] = {"cpu": cpu_name()}
    state |= {name: os.environ.get(name) for name in PINNED_X86 | PINNED}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        state |= {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                  "deterministic": torch.are_deterministic_algorithms_enabled()}
    return state
