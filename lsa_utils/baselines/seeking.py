"""Seeking (Zhong et al., ICLR 2024), the parametric baseline of docs/method.md section 3.

The teacher's most sensitive weights are cut down to the student's shapes and planted in the student as
a LoRA whose product is subtracted from the base weight, so the student is unchanged at step 0; fine-tuning
then proceeds exactly as the `sft` control.

1. sensitivity S(theta) = sum over seed examples of |theta * dL/dtheta| (response cross-entropy);
2. the top L_S teacher layers by summed sensitivity, in depth order, map 1:1 onto the student's layers;
3. in each selected matrix, the contiguous block of the student's shape with the largest summed
   sensitivity (sliding window sums, ties to the first offset in row-major order);
4. a rank-r SVD of the block, B = U_r Sigma_r and A = V_r^T; W_S <- W_S - B A, LoRA(A, B) attached.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from peft import PeftModel
from torch import Tensor, nn

from lsa_utils.models import arch
from lsa_utils.models.batches import Batch
from lsa_utils.semalign.losses import response_loss_per_example
from lsa_utils.training.trainer import LoraSpec, attach_lora


def sensitivities(teacher: nn.Module, batch: Batch, modules: Sequence[str]) -> dict[tuple[int, str], Tensor]:
    """S = sum over the batch's examples of |W * dL_i/dW|, per (layer, module), each shaped like W.

    The totals are float32 on each weight's device (half of float64's 62 GB for a 13B teacher's projections;
    a sum of a few dozen non-negative terms loses nothing that ranks layers or blocks)."""
    targets = {(k, m): arch.projection(teacher, k, m).weight
               for k in range(1, arch.n_layers(teacher) + 1) for m in modules}
    totals = {key: torch.zeros_like(w, dtype=torch.float32) for key, w in targets.items()}
    device = arch.input_device(teacher)
    for i in range(len(batch)):
        row = batch.map(lambda t, i=i: t[i:i + 1]).to(device)
        loss = response_loss_per_example(teacher(**row.model_inputs()).logits, row.labels).sum()
        grads = torch.autograd.grad(loss, list(targets.values()))
        for (key, w), g in zip(targets.items(), grads):
            totals[key] += (w.detach() * g).abs().float()
    return totals


def select_layers(scores: dict[tuple[int, str], Tensor], n_student: int) -> list[int]:
    """The ``n_student`` teacher layers with the largest summed sensitivity, in depth order."""
    per_layer: dict[int, float] = {}
    for (layer, _), s in scores.items():
        per_layer[layer] = per_layer.get(layer, 0.0) + float(s.sum())
    ranked = sorted(per_layer, key=lambda k: -per_layer[k])
    return sorted(ranked[:n_student])


def best_block(sensitivity: Tensor, shape: tuple[int, int]) -> tuple[int, int]:
    """Top-left (row, col) of the ``shape`` block with the largest sum; ties go to the first in row-major order.

    Vectorised, and without a 2-D prefix table of the whole matrix: the column sums of every h-row window
    come from the first window and the rows that enter and leave it (a cumulative sum down the offsets),
    and the block sums from a prefix sum along each window's columns.
    """
    h, w = shape
    rows, cols = sensitivity.shape
    if h > rows or w > cols:
        raise ValueError(f"block {shape} does not fit in a {tuple(sensitivity.shape)} matrix")
    s = sensitivity.double()
    steps = torch.cat([s[:h].sum(dim=0, keepdim=True), s[h:] - s[:-h]])  # [rows-h+1, cols]
    windows = steps.cumsum(dim=0)  # row r: the column sums of rows r .. r+h-1
    prefix = F.pad(windows.cumsum(dim=1), (1, 0))  # [rows-h+1, cols+1]
    sums = prefix[:, w:] - prefix[:, :-w]  # [rows-h+1, cols-w+1]: the sum of the block at each offset
    flat = int(torch.argmax(sums))  # the first maximum in row-major order
    return divmod(flat, sums.shape[1])


def low_rank_factors(block: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """B = U_r Sigma_r [out, r] and A = V_r^T [r, in], the best rank-r approximation of ``block``."""
    if rank > min(block.shape):
        raise ValueError(f"rank {rank} exceeds the block's shape {tuple(block.shape)}: lower the LoRA rank")
    u, s, vh = torch.linalg.svd(block.double(), full_matrices=False)
    return (u[:, :rank] * s[:rank]).float(), vh[:rank].float()


@torch.no_grad()
def plant(student: nn.Module, teacher: nn.Module, scores: dict[tuple[int, str], Tensor],
          lora: LoraSpec) -> PeftModel:
    """A LoRA student carrying the teacher's best blocks, functionally equal to ``student`` at step 0."""
    n_student = arch.n_layers(student)
    layers = select_layers(scores, n_student)
    model = attach_lora(student, range(1, n_student + 1), lora)
    scaling = lora.alpha / lora.rank  # PEFT adds scaling * B A
    for k_student, k_teacher in enumerate(layers, start=1):
        for module in lora.modules:
            target = arch.projection(model, k_student, module)  # a PEFT LoRA layer
            shape = tuple(target.base_layer.weight.shape)
            row, col = best_block(scores[(k_teacher, module)], shape)
            block = arch.projection(teacher, k_teacher, module).weight[row:row + shape[0], col:col + shape[1]]
            b, a = low_rank_factors(block, lora.rank)
            target.base_layer.weight -= (b @ a).to(target.base_layer.weight.dtype)
            target.lora_A["default"].weight.copy_(a)
            target.lora_B["default"].weight.copy_(b / scaling)
    return model
