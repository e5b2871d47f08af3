"""The losses of SemAlign v1 and v2 (docs/method.md 1.7 and 2) and of the controls.

Every loss takes tensors already gathered at the response positions, except
`response_loss_per_example`, which reads a whole batch (for the attribution and the baselines). Rows are
positions, the last axis is the hidden or vocabulary axis. ``h`` is the student's activation [N, D_S], ``target`` the aligned
teacher activation [N, D_S] (a constant), ``logits`` [N, V], ``labels`` [N]. Every loss is computed in
float32 whatever the states' dtype (bf16 models, autocast).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsa_utils.models.batches import IGNORE

LAYER_LOSSES = ("cosine", "fisher", "relation", "mse", "projected_mse")
OUTPUT_LOSSES = ("cosine_onehot", "kl_teacher", "ce", "ce_kl")  # ce_kl = ce + kl_teacher (the kd control)
LayerLoss = Callable[[Tensor, Tensor], Tensor]  # (h [N, D_S], target [N, D_S]) -> a scalar to minimise
REGISTERED_LAYER_LOSSES: dict[str, LayerLoss] = {}


def register_layer_loss(name: str, loss: LayerLoss) -> None:
    """Make ``loss`` a layer loss that configs and ablations can name (``layer_loss: name``).

    For experiments, e.g. the teaching pack's exercise: the registry lives in this process only, so runs
    that use it must execute here (the ``inprocess`` executor). Registering a name again replaces it.
    """
    if name in LAYER_LOSSES:
        raise ValueError(f"{name!r} is a built-in layer loss; register the new one under another name")
    REGISTERED_LAYER_LOSSES[name] = loss


def layer_loss_names() -> tuple[str, ...]:
    """Every layer loss a config may name: the built-in ones, then the registered ones."""
    return LAYER_LOSSES + tuple(REGISTERED_LAYER_LOSSES)


def registered_loss_source(name: str | None) -> str | None:
    """The source of a registered loss (None for a built-in one): part of a run's cache key, so that an
    edited definition reruns instead of reading the score of the old one."""
    loss = REGISTERED_LAYER_LOSSES.get(name) if name else None
    return None if loss is None else inspect.getsource(loss)


def cosine_layer(h: Tensor, target: Tensor) -> Tensor:
    """v1: 1 - mean cosine between student and aligned teacher states."""
    return 1 - F.cosine_similarity(h.float(), target.float(), dim=-1).mean()


def mse_layer(h: Tensor, target: Tensor) -> Tensor:
    """MSE after rescaling each target to the norm of the student's state (the norm carries no gradient)."""
    h, target = h.float(), target.float()
    scale = h.detach().norm(dim=-1, keepdim=True) / target.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return F.mse_loss(h, target * scale)


def fisher_layer(h: Tensor, target: Tensor, norm: nn.Module, head: nn.Module) -> Tensor:
    """v2 (reconstruction): the Fisher-weighted quadratic, the 2nd-order expansion of KL(p~ || softmax z).

    z = head(norm(h)) and z~ = head(norm(target)) through the student's own final norm and head;
    with d = z - z~ and p~ = softmax(z~): 1/2 (sum_v p~_v d_v^2 - (sum_v p~_v d_v)^2), mean over rows.
    """
    z = head(norm(h)).float()
    with torch.no_grad():
        z_target = head(norm(target.to(h.dtype))).float()  # through the student's modules, in its dtype
        p = z_target.softmax(dim=-1)
    return fisher_quadratic(z - z_target, p).mean()


def fisher_quadratic(d: Tensor, p: Tensor) -> Tensor:
    """1/2 Var_p(d) per row: the quadratic form 1/2 d^T (diag p - p p^T) d."""
    mean = (p * d).sum(dim=-1)
    return 0.5 * ((p * d * d).sum(dim=-1) - mean * mean)


def relation_layer(h: Tensor, target: Tensor, sequence: Tensor) -> Tensor:
    """v2 (reconstruction): 1 - cosine between token-by-token Gram matrices, per sequence.

    ``sequence`` [N] says which sequence each row belongs to; rows are centred within their sequence.
    """
    losses = []
    for s in sequence.unique():
        rows = sequence == s
        r, r_target = h[rows].float(), target[rows].float()
        r = r - r.mean(dim=0)
        r_target = r_target - r_target.mean(dim=0)
        g, g_target = r @ r.T, r_target @ r_target.T  # [n_s, n_s]
        denominator = (g.norm() * g_target.norm()).clamp_min(1e-12)
        losses.append(1 - (g * g_target).sum() / denominator)
    return torch.stack(losses).mean()


def cosine_onehot(logits: Tensor, labels: Tensor) -> Tensor:
    """v1 output loss: 1 - mean cos(z, onehot(y)) = 1 - mean z_y / ||z||."""
    z = logits.float()
    return 1 - (z.gather(-1, labels.unsqueeze(-1)).squeeze(-1) / z.norm(dim=-1).clamp_min(1e-8)).mean()


def kl_teacher_top_k(logits: Tensor, teacher_log_probs: Tensor, ids: Tensor) -> Tensor:
    """KL(p_T || p_S) from the teacher's top k only: its log-probabilities ``teacher_log_probs`` [rows, k] at
    ``ids`` [rows, k], and the rest of its mass as one tail bucket against the student's tail; averaged over
    rows. With k = V it is `kl_teacher`; with fewer it is a lower bound (lumping outcomes never raises a KL).
    """
    log_p_student = F.log_softmax(logits.float(), dim=-1).gather(-1, ids)  # [rows, k]
    p_teacher = teacher_log_probs.float().exp()
    tail_teacher = (1 - p_teacher.sum(dim=-1)).clamp_min(0)
    tail_student = (1 - log_p_student.exp().sum(dim=-1)).clamp_min(1e-12)
    head = (p_teacher * (teacher_log_probs.float() - log_p_student)).sum(dim=-1)
    tail = torch.xlogy(tail_teacher, tail_teacher) - tail_teacher * tail_student.log()
    return (head + tail).mean()


def kl_teacher(logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(p_T || p_S) per row, averaged over rows (temperature 1 by default)."""
    log_p_student = F.log_softmax(logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")


def response_loss_per_example(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross-entropy over each example's response positions, [batch]."""
    per_token = F.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=IGNORE,
                                reduction="none")  # [batch, seq]
    n = (labels != IGNORE).sum(dim=1).clamp_min(1)
    return per_token.sum(dim=1) / n


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits.float(), labels)
