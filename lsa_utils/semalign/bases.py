"""The training-free heart of SemAlign (docs/method.md 1.1 and 1.4): semantic bases and the alignment map.

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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsa_utils.models import arch

BASIS_KINDS = ("output", "input", "random", "fold_norm")
EXACT_PINV_MAX = 50_000_000  # above this many entries of W, the pseudo-inverse is taken in float32


def _at_least_float32(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def semantic_bases(weight: Tensor, kind: str = "output", norm_weight: Tensor | None = None,
                   seed: int = 0) -> Tensor:
    """Unit-norm semantic bases [D, V] of a head or embedding matrix ``weight`` [V, D], in float32 or the
    weight's wider dtype (a bf16 model's bases are as exact as a float32 model's; users cast at use).

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
    return F.normalize(bases, dim=0).to(_at_least_float32(weight.dtype))


def model_bases(model: nn.Module, kind: str = "output", seed: int = 0, n_vocab: int | None = None) -> Tensor:
    """The semantic bases [D, V] of one model, built from the matrix that ``kind`` reads.

    ``output`` and ``random`` read the LM head (``random`` only its shape), ``input`` the input embedding,
    ``fold_norm`` the head with the final norm's gain folded in; ``seed`` seeds ``random``. ``n_vocab``
    keeps the first rows only: the pair's shared vocabulary, without a hub model's padding rows.
    """
    matrix = arch.input_embedding(model) if kind == "input" else arch.lm_head(model)
    weight = matrix.weight[:n_vocab]
    norm = arch.final_norm(model).weight if kind == "fold_norm" else None
    return semantic_bases(weight, kind, norm_weight=norm, seed=seed)


def pair_alignment_map(teacher: nn.Module, student: nn.Module, kind: str = "output",
                       n_vocab: int | None = None) -> Tensor:
    """M [D_S, D_T] from both models' bases of ``kind`` over the first ``n_vocab`` ids (random bases: seed 0
    for the teacher, 1 for the student)."""
    return alignment_map(model_bases(teacher, kind, seed=0, n_vocab=n_vocab),
                         model_bases(student, kind, seed=1, n_vocab=n_vocab))


def alignment_map(source_bases: Tensor, target_bases: Tensor) -> Tensor:
    """M = S_target S_source^T, shape [D_target, D_source]: decompose on the source, recompose on the target."""
    if source_bases.shape[1] != target_bases.shape[1]:
        raise ValueError(f"the bases cover different vocabularies ({source_bases.shape[1]} vs "
                         f"{target_bases.shape[1]} tokens): SemAlign needs a shared vocabulary")
    return target_bases @ source_bases.T


def align_hidden(h_source: Tensor, M: Tensor, eps: float = 1e-8) -> Tensor:
    """Map [..., D_source] to [..., D_target] as M h / ||h|| per vector, in float32 at least (h may be bf16)."""
    dtype = _at_least_float32(torch.promote_types(h_source.dtype, M.dtype))
    h = h_source.to(dtype)
    return (h / h.norm(dim=-1, keepdim=True).clamp_min(eps)) @ M.to(dtype).T


def least_squares_map(source: Tensor, target: Tensor) -> Tensor:
    """W [D_target, D_source] minimising ||source W^T - target||^2: a fitted linear map, the reference for M."""
    return torch.linalg.lstsq(source.double(), target.double()).solution.T.float()


def recompose(h: Tensor, bases: Tensor) -> Tensor:
    """Decompose over one model's own bases and recompose: S S^T h / ||h|| ([..., D])."""
    return align_hidden(h, bases @ bases.T)
