"""Layer attribution (docs/method.md 1.2): which teacher layers matter for a task, by Gradient x Activation.

score_l = mean over examples of the sum over response positions and channels of |h_l * dL/dh_l|, with L
each example's response cross-entropy and h_l the output of block l; the top layers are *critical*.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from lsa_utils.models import arch
from lsa_utils.models.batches import Batch
from lsa_utils.models.capture import record
from lsa_utils.semalign.losses import response_loss_per_example


@contextmanager
def _activations_need_grad(model: nn.Module) -> Iterator[None]:
    """Make the residual stream carry gradients even when every parameter is frozen."""
    embedding = arch.input_embedding(model)
    handle = embedding.register_forward_hook(
        lambda m, args, out: out if out.requires_grad else out.detach().requires_grad_(True))
    try:
        yield
    finally:
        handle.remove()


def layer_attribution(model: nn.Module, batch: Batch, signed: bool = False) -> Tensor:
    """Grad x Act per layer, shape [n_layers] (element l-1 for layer l).

    score_l = mean over examples of the sum over response positions and channels of |h_l * dL/dh_l|,
    with L each example's response cross-entropy and h_l the output of block l.
    """
    layers = list(range(1, arch.n_layers(model) + 1))
    batch = batch.to(next(model.parameters()).device)
    with _activations_need_grad(model), record(model, layers, "block_output") as acts:
        logits = model(**batch.model_inputs()).logits
    loss = response_loss_per_example(logits, batch.labels).sum()  # examples independent: one backward
    grads = torch.autograd.grad(loss, [acts[k] for k in layers])
    mask = batch.response_mask.unsqueeze(-1)  # [batch, seq, 1]
    scores = []
    for k, grad in zip(layers, grads):
        product = (acts[k] * grad).detach() * mask
        per_example = (product if signed else product.abs()).sum(dim=(1, 2))  # [batch]
        scores.append(per_example.mean())
    return torch.stack(scores)


def critical_layers(scores: Tensor, n_critical: int = 1) -> list[int]:
    """The ``n_critical`` highest-scoring layers, 1-based, in depth order."""
    top = torch.topk(scores, min(n_critical, len(scores))).indices
    return sorted(int(i) + 1 for i in top)
