"""Reading hidden states out of a decoder stack, with hooks that always come off.

Three supervision sites (docs/method.md 1.5), named as in the method and 1-based like the paper's layers:

- ``block_output``: h_k, the residual stream after decoder layer k (``hidden_states[k]`` in HF terms);
- ``block_delta``: h_k - h_{k-1}, what layer k writes into the residual stream (the default site);
- ``mlp_output``: the MLP's output in layer k, before its residual addition.

Example:
    >>> with record(model, layers=[2], site="block_delta", stop_after_last=True) as acts:  # doctest: +SKIP
    ...     model(**batch)                      # stops after layer 2; the context swallows the stop
    >>> acts[2].shape                           # [batch, seq, hidden]

Captured tensors keep their graph (the trainer needs student activations with gradients); detach them
for constant targets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from torch import Tensor, nn

from lsa_utils.models import arch

SITES = ("block_output", "block_delta", "mlp_output")


class _StopForward(Exception):
    """Raised by the last needed hook so the layers above it never run."""


def _hidden(output: Tensor | tuple) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _layer_input(args: tuple, kwargs: dict) -> Tensor:
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def record(model: nn.Module, layers: Sequence[int], site: str = "block_output",
           stop_after_last: bool = False) -> Iterator[dict[int, Tensor]]:
    """Fill a dict ``{layer: [batch, seq, hidden]}`` during the forward passes run inside the block.

    With ``stop_after_last`` the forward pass is cut after the deepest requested layer (the model's
    output is then never produced) and the block ends there; hooks are removed on every exit path.
    """
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; choose from {', '.join(SITES)}")
    blocks = arch.decoder_layers(model)
    bad = [k for k in layers if not 1 <= k <= len(blocks)]
    if bad:
        raise ValueError(f"layers {bad} outside 1..{len(blocks)} of {type(arch.unwrap(model)).__name__}")
    acts: dict[int, Tensor] = {}
    last = max(layers, default=0)

    def store(k: int, value: Tensor) -> None:
        acts[k] = value
        if stop_after_last and k == last:
            raise _StopForward

    handles = []
    for k in sorted(set(layers)):
        if site == "mlp_output":
            hook = lambda m, args, out, k=k: store(k, _hidden(out))  # noqa: E731
            handles.append(arch.mlp(model, k).register_forward_hook(hook))
        elif site == "block_output":
            hook = lambda m, args, out, k=k: store(k, _hidden(out))  # noqa: E731
            handles.append(blocks[k - 1].register_forward_hook(hook))
        else:
            hook = lambda m, args, kwargs, out, k=k: store(k, _hidden(out) - _layer_input(args, kwargs))  # noqa: E731
            handles.append(blocks[k - 1].register_forward_hook(hook, with_kwargs=True))
    try:
        yield acts
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_io(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, tuple[Tensor, Tensor]]]:
    """Fill ``{name: (input, output)}`` for arbitrary submodules (e.g. ``o_proj``, ``down_proj``)."""
    seen: dict[str, tuple[Tensor, Tensor]] = {}
    handles = [module.register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, (args[0], out)))
               for name, module in modules.items()]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def capture(model: nn.Module, batch: Mapping[str, Tensor], layers: Sequence[int],
            site: str = "block_output") -> dict[int, Tensor]:
    """One forward pass, stopped after the deepest requested layer; ``{layer: [batch, seq, hidden]}``."""
    with record(model, layers, site, stop_after_last=True) as acts:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return acts
