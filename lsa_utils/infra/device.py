"""Pick the torch device the same way in every notebook.

"auto" means CUDA when present, else CPU. The environment variable LSA_DEVICE overrides "auto" (so a
whole `make reproduce` can be forced onto one device) but never an explicit request. `offloaded` frees a
model's accelerator memory for a block (the teacher, while the student trains).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

CHOICES = ("auto", "cpu", "cuda", "cuda:N")
ENV_VAR = "LSA_DEVICE"


def resolve_device(requested: str = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a usable torch.device, or raise ValueError."""
    choice = requested.strip().lower()
    override = os.environ.get(ENV_VAR, "").strip().lower()
    if choice == "auto" and override:
        try:
            return _parse(override)
        except ValueError as exc:
            raise ValueError(f"{ENV_VAR}: {exc}") from None
    return _parse(choice)


def _parse(choice: str) -> torch.device:
    if choice == "auto":
        return _cuda(choice, None) if torch.cuda.is_available() else torch.device("cpu")
    if choice == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", choice)
    if match is None:
        raise ValueError(f"unknown device {choice!r}; valid choices: {', '.join(CHOICES)}")
    return _cuda(choice, None if match.group(1) is None else int(match.group(1)))


def _cuda(choice: str, index: int | None) -> torch.device:
    """CUDA device `index` (the current one when None), checking that it exists."""
    if not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} requested but CUDA is not available; valid choices here: auto, cpu")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if index is None else index
    if index >= count:
        valid = ", ".join(["auto", "cpu", "cuda"] + [f"cuda:{i}" for i in range(count)])
        raise ValueError(f"device {choice!r} requested but only {count} CUDA device(s) are visible; "
                         f"valid choices here: {valid}")
    return torch.device("cuda", index)


def describe_device(device: torch.device) -> str:
    """Human-readable name for run records, e.g. "cpu" or "cuda:0 (NVIDIA H200)"."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


@contextmanager
def offloaded(model: nn.Module) -> Iterator[None]:
    """Move ``model``'s weights to the CPU for the block and back to its device after it.

    A no-op for a model on the CPU and for one that accelerate spread over devices (``device_map``: its
    placement is accelerate's to change), so the CPU path computes exactly as without it.
    """
    device = next(model.parameters()).device
    if device.type == "cpu" or getattr(model, "hf_device_map", None):
        yield
        return
    model.to("cpu")
    torch.cuda.empty_cache()
    try:
        yield
    finally:
        model.to(device)
