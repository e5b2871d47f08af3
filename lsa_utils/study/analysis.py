"""Measurements behind notebooks 01-03: recomposition, attribution per task, and alignment quality.

All of them read hidden states at the response positions of task items (`semalign.targets.response_states`),
so what is measured is what the transfer methods train on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from lsa_utils.models.batches import collate
from lsa_utils.semalign import (
    LayerSource, align_hidden, critical_layers, layer_attribution, least_squares_map, pair_layers, recompose,
    served_layers,
)
from lsa_utils.study.cka import cka_matrix
from lsa_utils.tasks.spec import TaskItem


def recomposition_table(states: Mapping[int, Tensor], bases: Mapping[str, Tensor]) -> pd.DataFrame:
    """Per basis kind and layer: mean cosine between h and S S^T h / ||h||, and the recomposed norm.

    The recomposed vector starts from the unit vector h / ||h||, so ``norm`` says how much length the
    decompose-recompose round trip adds or removes (1 = none).
    """
    rows = []
    for kind, basis in bases.items():
        for layer, h in states.items():
            image = recompose(h, basis.float())
            rows.append({"basis": kind, "layer": layer,
                         "cosine": F.cosine_similarity(image, h, dim=-1).mean().item(),
                         "norm": image.norm(dim=-1).mean().item()})
    return pd.DataFrame(rows)


def top_coefficients(h: Tensor, basis: Tensor, tokenizer: PreTrainedTokenizerBase, k: int = 5) -> list[str]:
    """The tokens whose bases a single state h [D] is most aligned with (the decomposition, read out)."""
    coefficients = basis.float().T @ (h / h.norm())  # [V]: cosine to every basis
    top = coefficients.topk(k)
    return [f"{tokenizer.convert_ids_to_tokens(int(i))} ({v:.2f})" for v, i in zip(top.values, top.indices)]


def attribution_table(teacher: nn.Module, tokenizer: PreTrainedTokenizerBase,
                      tasks: Mapping[str, Sequence[TaskItem]], n_examples: int = 32) -> pd.DataFrame:
    """Grad x Act per teacher layer and task, on the first ``n_examples`` items of each task."""
    rows = []
    for task, items in tasks.items():
        batch = collate(tokenizer, [items[i] for i in range(min(n_examples, len(items)))])
        scores = layer_attribution(teacher, batch.to(next(teacher.parameters()).device)).cpu()
        rows += [{"task": task, "layer": k + 1, "score": float(s), "share": float(s / scores.sum())}
                 for k, s in enumerate(scores)]
    return pd.DataFrame(rows)


def pairing_table(attribution: pd.DataFrame, n_teacher: int, n_student: int, n_critical: int = 1) -> pd.DataFrame:
    """Per task and student layer: the paired teacher layer and whether the layer trains (SemAlign v1)."""
    rows = []
    for task, group in attribution.groupby("task", sort=False):
        critical = critical_layers(torch.tensor(group.sort_values("layer")["score"].values), n_critical)
        pairing = pair_layers(n_teacher, n_student, critical=critical)
        trains = served_layers(pairing, critical)
        rows += [{"task": task, "student_layer": k, "teacher_layer": source.a,  # the floor map: one layer each
                  "critical": source.a in critical, "trains": k in trains}
                 for k, source in enumerate(pairing, start=1)]
    return pd.DataFrame(rows)


def alignment_quality(teacher_states: Mapping[int, Tensor], student_states: Mapping[int, Tensor],
                      maps: Mapping[str, Tensor], pairing: Mapping[int, LayerSource] | None = None,
                      fit_fraction: float = 0.5) -> pd.DataFrame:
    """Cosine between mapped teacher states and the paired student states, per student layer.

    ``pairing`` (student layer -> teacher source, as SemAlign's plan gives it) defaults to the floor map
    over every student layer. ``maps`` are training-free alignment maps (as ``align_hidden`` uses them);
    a least-squares map is fitted per layer pair on the first ``fit_fraction`` of the rows, and every map
    is scored on the rest.
    """
    if pairing is None:
        pairing = dict(enumerate(pair_layers(len(teacher_states), len(student_states)), start=1))
    rows = []
    for k, source in pairing.items():
        h_t, h_s = source.mix(teacher_states), student_states[k]
        split = int(len(h_t) * fit_fraction)
        held_out_t, held_out_s = h_t[split:], h_s[split:]
        mapped = {name: align_hidden(held_out_t, M.float()) for name, M in maps.items()}
        mapped["least_squares"] = held_out_t @ least_squares_map(h_t[:split], h_s[:split]).T
        rows += [{"student_layer": k, "teacher_layer": source.to_json(), "map": name,
                  "cosine": F.cosine_similarity(x, held_out_s, dim=-1).mean().item()}
                 for name, x in mapped.items()]
    return pd.DataFrame(rows)


def cka_tables(teacher_states: Mapping[int, Tensor], student_states: Mapping[int, Tensor],
               M: Tensor, max_rows: int = 4000) -> dict[str, Tensor]:
    """Linear-CKA heatmaps: teacher x student, aligned teacher x student, and student x student."""
    take = lambda states: {k: v[:max_rows] for k, v in states.items()}  # noqa: E731
    teacher, student = take(teacher_states), take(student_states)
    aligned = {k: align_hidden(v, M.float()) for k, v in teacher.items()}
    return {"teacher x student": cka_matrix(teacher, student),
            "aligned teacher x student": cka_matrix(aligned, student),
            "student x student": cka_matrix(student, student)}
