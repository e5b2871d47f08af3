"""The numerical environment of every process of the study, set in one place before torch computes anything.

Models trained from scratch turn last-bit differences into different models, and ATen picks its CPU
kernels by the CPU it finds: an AVX-512 machine and an AVX2 machine train different zoos from the same
corpus. Pinning ATen to the AVX2 kernels, which every current x86-64 CPU has, makes them train the same
ones (measured: notebook 00's models.csv byte-identical on an AVX-512 AMD EPYC and on the AVX2 machine
behind the earlier results). ATen reads the variable at its first operation, so `pin_numerics` runs
when `lsa_utils` is first imported; kernels and worker processes inherit it. A value already in the
environment wins, so ``ATEN_CPU_CAPABILITY=default`` restores the machine's own kernels.
"""

from __future__ import annotations

import os
import platform
import sys

PINNED_X86 = {"ATEN_CPU_CAPABILITY": "avx2"}


def pin_numerics() -> None:
    """Set the pinned variables unless the environment already sets them (x86-64 only)."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        for name, value in PINNED_X86.items():
            os.environ.setdefault(name, value)


def numerics_in_force() -> dict[str, str | None]:
    """What run records state: the requested variables and, once torch is loaded, the capability in use."""
    state: dict[str, str | None] = {name: os.environ.get(name) for name in PINNED_X86}
    if "torch" in sys.modules:
        state["cpu_capability"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
    return state
