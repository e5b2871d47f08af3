"""Reading hidden states out of a decoder stack, with hooks that always come off.

Three supervision sites (METHOD.md 1.5), named as in the method and 1-based like the paper's layers:

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

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from lsa_utils import arch
from lsa_utils.cache import atomic_write

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


def data_hash(texts: Sequence[str]) -> str:
    """A short fingerprint of the texts a cached activation set was computed from."""
    return hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()[:16]


def save_activations(path: Path, tensors: Mapping[int | str, Tensor], metadata: Mapping[str, object]) -> None:
    """Write tensors (int keys are layers) to safetensors with string metadata (model, site, layers, data...)."""
    named = {f"layer.{k}" if isinstance(k, int) else k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    layers = ",".join(str(k) for k in tensors if isinstance(k, int))
    meta = {key: str(value) for key, value in metadata.items()} | {"layers": layers}
    with atomic_write(Path(path)) as tmp:
        save_file(named, tmp, metadata=meta)


def load_activations(path: Path, expected: Mapping[str, object] | None = None) -> dict[int | str, Tensor]:
    """Read what :func:`save_activations` wrote; a metadata mismatch with ``expected`` is an error."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    stale = {k: (meta.get(k), str(v)) for k, v in (expected or {}).items() if meta.get(k) != str(v)}
    if stale:
        raise ValueError(f"cached activations {path} were made for other settings {stale} "
                         "(stored, wanted): delete the file or change the cache directory")
    return {int(name.removeprefix("layer.")) if name.startswith("layer.") else name: t
            for name, t in load_file(path).items()}
