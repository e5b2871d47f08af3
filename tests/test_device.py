"""Device selection: auto, the LSA_DEVICE override, and clear errors."""

import pytest
import torch

from lsa_utils.infra.device import describe_device, resolve_device


@pytest.fixture(autouse=True)
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave like a CPU-only machine whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("LSA_DEVICE", raising=False)


def test_auto_falls_back_to_cpu() -> None:
    assert resolve_device() == torch.device("cpu")
    assert describe_device(resolve_device("CPU ")) == "cpu"


def test_env_overrides_auto_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSA_DEVICE", "cuda")
    with pytest.raises(ValueError, match="LSA_DEVICE"):
        resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu"])
def test_unknown_device_names_value_and_choices(bad: str) -> None:
    with pytest.raises(ValueError, match=f"'{bad}'.*valid choices: auto, cpu, cuda, cuda:N"):
        resolve_device(bad)


def test_unavailable_cuda_is_an_error() -> None:
    with pytest.raises(ValueError, match="'cuda:1'.*not available"):
        resolve_device("cuda:1")
