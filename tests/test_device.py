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


def test_offloading_is_a_no_op_on_the_cpu_and_for_a_model_accelerate_placed(make_tiny):
    """On the CPU the teacher stays put (the world computes exactly as without it); a model spread by
    accelerate keeps accelerate's placement. The move to the CPU and back runs only on a GPU."""
    from lsa_utils.infra.device import offloaded

    model = make_tiny(40)
    before = {name: p for name, p in model.named_parameters()}
    with offloaded(model):
        assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(p is before[name] for name, p in model.named_parameters())  # not even copied
    model.hf_device_map = {"": "cpu"}
    with offloaded(model):
        pass
    assert all(p is before[name] for name, p in model.named_parameters())
