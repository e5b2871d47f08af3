"""The training-free heart of SemAlign (METHOD.md 1.1-1.4): bases, the alignment map, pairing, attribution.

A hidden state is read as a mixture of vocabulary directions: its cosine to the *semantic basis* of
each token. Two models that share a vocabulary share those coefficients, so a teacher state can be
rewritten in the student's space by recomposing the same coefficients over the student's bases:

    a = S_T^T h_T / ||h_T||        (cosine to every unit basis, [V])
    h~_S = S_S a = M h_T / ||h_T||,   M = S_S S_T^T   ([D_S, D_T], computed once)

Example:
    >>> S_t = semantic_bases(teacher.lm_head.weight)          # [D_T, V]   # doctest: +SKIP
    >>> S_s = semantic_bases(student.lm_head.weight)          # [D_S, V]
    >>> M = alignment_map(S_t, S_s)                           # [D_S, D_T]
    >>> h_aligned = align_hidden(h_teacher, M)                # [..., D_S]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsa_utils import arch
from lsa_utils.batches import IGNORE, Batch
from lsa_utils.capture import record

BASIS_KINDS = ("output", "input", "random", "fold_norm")
EXACT_PINV_MAX = 50_000_000  # above this many entries of W, the pseudo-inverse is taken in float32


def semantic_bases(weight: Tensor, kind: str = "output", norm_weight: Tensor | None = None,
                   seed: int = 0) -> Tensor:
    """Unit-norm semantic bases [D, V] of a head or embedding matrix ``weight`` [V, D].

    - ``output``: columns of pinv(W); column i is the least-squares latent whose logits are e_i;
    - ``fold_norm``: the same after folding the final RMSNorm gain ``norm_weight`` [D] into W;
    - ``input``: the token vectors themselves (rows of W, e.g. the input embedding);
    - ``random``: Gaussian directions of the same shape (seeded), the control.
    """
    if kind not in BASIS_KINDS:
        raise ValueError(f"unknown basis kind {kind!r}; choose from {', '.join(BASIS_KINDS)}")
    w = weight.detach()
    dtype = torch.float64 if w.numel() <= EXACT_PINV_MAX else torch.float32
    if kind == "fold_norm":
        if norm_weight is None:
            raise ValueError("kind='fold_norm' needs norm_weight, the final norm's gain [D]")
        w = w * norm_weight.detach()  # logits = (g * x) @ W.T = x @ (W * g).T
    if kind in ("output", "fold_norm"):
        bases = torch.linalg.pinv(w.to(dtype))  # [D, V]
    elif kind == "input":
        bases = w.to(dtype).T  # [D, V]
    else:
        generator = torch.Generator().manual_seed(seed)
        bases = torch.randn(w.shape[1], w.shape[0], generator=generator, dtype=dtype)
    return F.normalize(bases, dim=0).to(weight.dtype)


def alignment_map(source_bases: Tensor, target_bases: Tensor) -> Tensor:
    """M = S_target S_source^T, shape [D_target, D_source]: decompose on the source, recompose on the target."""
    if source_bases.shape[1] != target_bases.shape[1]:
        raise ValueError(f"the bases cover different vocabularies ({source_bases.shape[1]} vs "
                         f"{target_bases.shape[1]} tokens): SemAlign needs a shared vocabulary")
    return target_bases @ source_bases.T


def align_hidden(h_source: Tensor, M: Tensor, eps: float = 1e-8) -> Tensor:
    """Map [..., D_source] to [..., D_target] as M h / ||h|| per vector."""
    return (h_source / h_source.norm(dim=-1, keepdim=True).clamp_min(eps)) @ M.T


def least_squares_map(source: Tensor, target: Tensor) -> Tensor:
    """W [D_target, D_source] minimising ||source W^T - target||^2: a fitted linear map, the reference for M."""
    return torch.linalg.lstsq(source.double(), target.double()).solution.T.float()


def recompose(h: Tensor, bases: Tensor) -> Tensor:
    """Decompose over one model's own bases and recompose: S S^T h / ||h|| ([..., D])."""
    return align_hidden(h, bases @ bases.T)


# ---------------------------------------------------------------------------------------------------
# Layer pairing (METHOD.md 1.3)


def floor_pairing(n_source: int, n_target: int) -> list[int]:
    """l(k) = max(1, floor(L_source / L_target * k)) for target layers k = 1..L_target."""
    return [max(1, n_source * k // n_target) for k in range(1, n_target + 1)]


def pair_layers(n_source: int, n_target: int, critical: Sequence[int] = (),
                interpolate: bool = False) -> list[int] | list[tuple[int, int, float]]:
    """Source layer (1-based) for each target layer k, as element k-1.

    A critical source layer missing from the floor map is served by the first target layer whose
    paired source layer is at least as deep (the last target layer if none). With ``interpolate``,
    element k-1 is ``(a, b, lam)``: the target is ``(1 - lam) h^(a) + lam h^(b)``.
    """
    if n_source < 1 or n_target < 1:
        raise ValueError(f"layer counts must be positive, got n_source={n_source}, n_target={n_target}")
    if interpolate:
        if n_source < 2:
            raise ValueError("interpolation needs at least two source layers")
        pairs = []
        for k in range(1, n_target + 1):
            u = n_source * k / n_target
            a = min(max(int(u), 1), n_source - 1)
            pairs.append((a, a + 1, min(max(u - a, 0.0), 1.0)))
        return pairs
    pairing = floor_pairing(n_source, n_target)
    for layer in sorted(critical):
        if not 1 <= layer <= n_source:
            raise ValueError(f"critical layer {layer} outside 1..{n_source}")
        if layer not in pairing:
            k = next((i for i, src in enumerate(pairing) if src >= layer), n_target - 1)
            pairing[k] = layer
    return pairing


def served_layers(pairing: Sequence, critical: Sequence[int]) -> list[int]:
    """Student layers (1-based) that serve the critical source layers: for each, the first target layer
    paired at least as deep (an interpolated pair counts at depth a + lam), the last one if none."""
    depth = [source[0] + source[2] if isinstance(source, tuple) else source for source in pairing]
    return sorted({next((k for k, d in enumerate(depth, start=1) if d >= layer), len(pairing)) for layer in critical})


# ---------------------------------------------------------------------------------------------------
# Layer attribution (METHOD.md 1.2)


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


def response_loss_per_example(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross-entropy over each example's response positions, [batch]."""
    per_token = F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=IGNORE,
                                reduction="none")  # [batch, seq]
    n = (labels != IGNORE).sum(dim=1).clamp_min(1)
    return per_token.sum(dim=1) / n


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
