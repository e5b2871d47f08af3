"""The numerical environment of every process of the study, set in one place before torch computes anything.

Models trained from scratch turn last-bit differences into different models, so three things are fixed:

- **The CPU code paths.** ATen, MKL (torch's BLAS on x86) and oneDNN each pick their kernels by the CPU
  they find, and an AVX-512 machine trains another zoo than an AVX2 machine from the same corpus. All
  three are pinned to their AVX2 paths, which every current x86-64 CPU has. Measured: with ATen pinned
  alone, notebook 00's models.csv was byte-identical on an AVX-512 AMD EPYC and an AVX2 machine, but an
  AVX-512 Intel Xeon still trained other weights (MKL takes its AVX-512 path there; with ``MKL_CBWR=AVX2``
  the weights match). Each library reads its variable when it first computes, so `pin_numerics` runs when
  `lsa_utils` is first imported; kernels and workers inherit the environment.
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


def numerics_in_force() -> dict[str, str | int | bool | None]:
    """What run records state: the pinned variables and, once torch is loaded, what torch uses."""
    state: dict[str, str | int | bool | None] = {name: os.environ.get(name) for name in PINNED_X86 | PINNED}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        state |= {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                  "deterministic": torch.are_deterministic_algorithms_enabled()}
    return state
