"""LaTen (Tan et al., ACL 2025), the pre-training-free parametric baseline of docs/method.md section 3.

Knowledge is located in the teacher with a logit lens, mapped to the student's width by small
hypernetworks, and injected into the student's most relevant neurons; only the hypernetworks train,
and the final deltas are written into the student's weights (so they survive ``save_pretrained``).

1. **Locate** on one example's last answer token y: a layer's module scores
   log P_y(residual + contribution) - log P_y(residual), with P(v) = softmax(W_U (g * v / RMS(h_final)));
   FFN neuron i contributes m_i W_down[:, i], attention channel j contributes W_O[:, j] z_j.
2. **Select** the top-L_S teacher layers per module type, in depth order (paired 1:1 with the student's
   layers), and in each the top rho of the student's neuron / channel count, ranked.
3. **Map**: per module type (up, down, v, o) g(u) = W2 ReLU(W1 u), shared across layers and neurons.
4. **Inject**: the r-th ranked teacher neuron's mapped vector is added to the student's r-th ranked neuron
   (rows of up / v, columns of down / o).
5. **Train g** only: 16 examples per step (15 align + the current extract example), CE plus
   1000 * sum_m mean(delta_m^2); AdamW (wd 0.05, betas 0.9 / 0.95), one-cycle cosine schedule.

Our reading where the paper is silent (each a default): the extract examples are taken in turn, each
located, trained on for ``steps_per_example`` steps, and its deltas then written into the weights before
the next; the student's neurons are ranked with the same logit lens on the same example.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from lsa_utils.infra.progress import progress_bar
from lsa_utils.models import arch
from lsa_utils.models.batches import collate
from lsa_utils.models.capture import record_io
from lsa_utils.semalign.losses import response_loss_per_example
from lsa_utils.tasks.spec import TaskItem

MODULE_KINDS = ("up_proj", "down_proj", "v_proj", "o_proj")
UNIT = {"up_proj": "ffn", "down_proj": "ffn", "v_proj": "attn", "o_proj": "attn"}  # whose ranking it uses
ROWS = {"up_proj", "v_proj"}  # a neuron is a row of these weights and a column of the others


@dataclass(frozen=True)
class LatenSpec:
    rho: float = 0.10
    steps_per_example: int = 2
    lr: float = 3e-5
    batch_size: int = 16
    penalty: float = 1000.0
    init_std: float = 1e-5
    normaliser: str = "rms"  # or "sqrt_std", as in the authors' code
    attention_value: str = "summed"  # or "last_position", as in the authors' code
    seed: int = 0


@dataclass
class Location:
    """Per module unit (``ffn`` / ``attn``): every layer's score and its ranked neurons."""

    neurons: dict[str, dict[int, Tensor]]  # unit -> layer -> ranked neuron indices (best first)
    layer_scores: dict[str, Tensor]  # unit -> [n_layers]


# ---------------------------------------------------------------------------------------------------
# 1-2. Locate with the logit lens


def _log_prob(model: nn.Module, v: Tensor, y: int, h_final: Tensor, normaliser: str) -> Tensor:
    """log P_y(v) through the final norm's gain and the head, normalised by the final state's scale."""
    scale = h_final.pow(2).mean().sqrt() if normaliser == "rms" else h_final.std()
    logits = arch.lm_head(model)(arch.final_norm(model).weight * v / scale)  # [..., V]
    return F.log_softmax(logits.float(), dim=-1)[..., y]


def contribution_scores(model: nn.Module, base: Tensor, contributions: Tensor, y: int, h_final: Tensor,
                        normaliser: str) -> Tensor:
    """log P_y(base + c) - log P_y(base) for every row c of ``contributions`` [n, D] at once: [n]."""
    return _log_prob(model, base + contributions, y, h_final, normaliser) - _log_prob(model, base, y, h_final, normaliser)


@torch.no_grad()
def locate(model: nn.Module, tokenizer: PreTrainedTokenizerBase, item: TaskItem, n_neurons: dict[str, int],
           spec: LatenSpec) -> Location:
    """Logit-lens scores of every layer's FFN and attention, and each layer's top neurons / channels."""
    batch = collate(tokenizer, [item]).to(next(model.parameters()).device)
    t = int(batch.response_mask[0].nonzero()[-1])  # the position that predicts the last answer token
    y = int(batch.labels[0, t])
    layers = range(1, arch.n_layers(model) + 1)
    watched = {f"{m}.{k}": arch.projection(model, k, m) for k in layers for m in ("o_proj", "down_proj", "v_proj")}
    watched |= {f"block.{k}": arch.decoder_layers(model)[k - 1] for k in layers}
    with record_io(watched) as io:
        model(**batch.model_inputs())
    h_final = io[f"block.{len(layers)}"][1][0, t]
    layer_scores = {"ffn": [], "attn": []}
    neurons: dict[str, dict[int, Tensor]] = {"ffn": {}, "attn": {}}
    for k in layers:
        residual = io[f"block.{k}"][0][0, t]  # block input h_{k-1}
        z, attn_out = (x[0, t] for x in io[f"o_proj.{k}"])
        m, mlp_out = (x[0, t] for x in io[f"down_proj.{k}"])
        if spec.attention_value == "last_position":
            z = _expand_values(model, io[f"v_proj.{k}"][1][0, t])
        mid = residual + attn_out  # the MLP's residual input
        layer_scores["attn"].append(contribution_scores(model, residual, attn_out, y, h_final, spec.normaliser))
        layer_scores["ffn"].append(contribution_scores(model, mid, mlp_out, y, h_final, spec.normaliser))
        w_o, w_down = arch.projection(model, k, "o_proj").weight, arch.projection(model, k, "down_proj").weight
        channel_scores = contribution_scores(model, residual, (w_o * z).T, y, h_final, spec.normaliser)
        neuron_scores = contribution_scores(model, mid, (w_down * m).T, y, h_final, spec.normaliser)
        neurons["attn"][k] = channel_scores.argsort(descending=True)[: n_neurons["attn"]]
        neurons["ffn"][k] = neuron_scores.argsort(descending=True)[: n_neurons["ffn"]]
    return Location(neurons, {u: torch.stack(s) for u, s in layer_scores.items()})


def _expand_values(model: nn.Module, v: Tensor) -> Tensor:
    """The value vector at one position, repeated per query head (grouped-query attention)."""
    config = arch.unwrap(model).config
    head_dim = v.shape[-1] // config.num_key_value_heads
    repeats = config.num_attention_heads // config.num_key_value_heads
    return v.view(config.num_key_value_heads, head_dim).repeat_interleave(repeats, dim=0).flatten()


def choose_layers(location: Location, n_student: int) -> dict[str, list[int]]:
    """The top ``n_student`` teacher layers per unit by layer score, in depth order."""
    return {unit: sorted(int(i) + 1 for i in scores.topk(n_student).indices)
            for unit, scores in location.layer_scores.items()}


def neuron_counts(student: nn.Module, rho: float) -> dict[str, int]:
    """rho of the student's FFN neurons and attention channels (at least one of each)."""
    return {"ffn": max(1, math.ceil(rho * arch.projection(student, 1, "down_proj").weight.shape[1])),
            "attn": max(1, math.ceil(rho * arch.projection(student, 1, "o_proj").weight.shape[1]))}


# ---------------------------------------------------------------------------------------------------
# 3-4. Map and inject


class Hypernetwork(nn.Module):
    """g(u) = W2 ReLU(W1 u): a teacher neuron vector [D_T] to a student delta [D_S]; no bias."""

    def __init__(self, d_teacher: int, d_student: int, init_std: float):
        super().__init__()
        self.w1 = nn.Linear(d_teacher, d_teacher, bias=False)
        self.w2 = nn.Linear(d_teacher, d_student, bias=False)
        for layer in (self.w1, self.w2):
            nn.init.normal_(layer.weight, std=init_std)

    def forward(self, u: Tensor) -> Tensor:
        return self.w2(F.relu(self.w1(u)))


def teacher_vectors(teacher: nn.Module, kind: str, layer: int, neurons: Tensor) -> Tensor:
    """The ranked teacher neurons' weight vectors [k, D_T] (rows of up / v, columns of down / o)."""
    weight = arch.projection(teacher, layer, kind).weight.detach()
    neurons = weight_indices(teacher, kind, neurons)
    return weight[neurons] if kind in ROWS else weight[:, neurons].T


def weight_indices(model: nn.Module, kind: str, neurons: Tensor) -> Tensor:
    """Rows (up, v) or columns (down, o) of ``kind`` for ranked FFN neurons or attention channels."""
    return _value_rows(model, neurons) if kind == "v_proj" else neurons


def _value_rows(model: nn.Module, channels: Tensor) -> Tensor:
    """The v_proj row feeding each o_proj input channel (the same index without grouped-query attention)."""
    config = arch.unwrap(model).config
    head_dim = arch.projection(model, 1, "o_proj").weight.shape[1] // config.num_attention_heads
    repeats = config.num_attention_heads // config.num_key_value_heads
    return (channels // head_dim) // repeats * head_dim + channels % head_dim


@dataclass
class Injection:
    """Deltas [k, D_S] for one student projection, at the student's ranked neuron indices."""

    kind: str
    layer: int
    neurons: Tensor
    delta: Tensor


@contextmanager
def injected(student: nn.Module, injections: Sequence[Injection]) -> Iterator[None]:
    """Run the student as if the deltas were in its weights (hooks; gradients reach the deltas)."""
    def hook(inj: Injection):
        def add(module, args, out):
            x = args[0]
            delta = inj.delta.to(x.dtype)  # the hypernetworks work in float32, the student in its own dtype
            if inj.kind in ROWS:  # W[n, :] += delta  ->  out[..., n] += x @ delta^T
                return out.index_add(-1, inj.neurons, x @ delta.T)
            return out + x[..., inj.neurons] @ delta  # W[:, n] += delta^T
        return add
    handles = [arch.projection(student, inj.layer, inj.kind).register_forward_hook(hook(inj)) for inj in injections]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def write_deltas(student: nn.Module, injections: Sequence[Injection]) -> None:
    """Add the deltas to the weights for good (LaTen's released code loses them on save)."""
    for inj in injections:
        weight = arch.projection(student, inj.layer, inj.kind).weight
        if inj.kind in ROWS:
            weight.index_add_(0, inj.neurons, inj.delta.to(weight.dtype))
        else:
            weight.index_add_(1, inj.neurons, inj.delta.T.to(weight.dtype))


# ---------------------------------------------------------------------------------------------------
# 5. Train the hypernetworks, one extract example at a time


def transfer(teacher: nn.Module, student: nn.Module, tokenizer: PreTrainedTokenizerBase,
             extract: Sequence[TaskItem], align: Sequence[TaskItem], spec: LatenSpec = LatenSpec(),
             desc: str = "laten") -> tuple[nn.Module, list[dict]]:
    """A copy of ``student`` with LaTen's deltas written in, and a per-step log."""
    torch.manual_seed(spec.seed)
    student = copy.deepcopy(student).eval()
    student.requires_grad_(False)
    device = next(student.parameters()).device
    d_teacher, d_student = arch.unwrap(teacher).config.hidden_size, arch.unwrap(student).config.hidden_size
    nets = nn.ModuleDict({kind: Hypernetwork(d_teacher, d_student, spec.init_std) for kind in MODULE_KINDS}).to(device)
    optimizer = torch.optim.AdamW(nets.parameters(), lr=spec.lr, weight_decay=0.05, betas=(0.9, 0.95))
    total = len(extract) * spec.steps_per_example
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=spec.lr, total_steps=total, anneal_strategy="cos")
    counts, n_student = neuron_counts(student, spec.rho), arch.n_layers(student)
    generator = torch.Generator().manual_seed(spec.seed)
    log = []
    for e, item in enumerate(progress_bar(extract, desc=desc, unit="example", mininterval=2.0)):
        teacher_loc = locate(teacher, tokenizer, item, counts, spec)
        student_loc = locate(student, tokenizer, item, counts, spec)
        plan = [(kind, k_student, k_teacher) for kind in MODULE_KINDS
                for k_student, k_teacher in enumerate(choose_layers(teacher_loc, n_student)[UNIT[kind]], start=1)]

        def injections() -> list[Injection]:
            return [Injection(kind, k_s, weight_indices(student, kind, student_loc.neurons[UNIT[kind]][k_s]),
                              nets[kind](teacher_vectors(teacher, kind, k_t, teacher_loc.neurons[UNIT[kind]][k_t]).float()))
                    for kind, k_s, k_t in plan]

        for step in range(spec.steps_per_example):
            picks = torch.randperm(len(align), generator=generator)[: spec.batch_size - 1].tolist()
            batch = collate(tokenizer, [align[i] for i in picks] + [item]).to(device)
            current = injections()
            with injected(student, current):
                logits = student(**batch.model_inputs()).logits
            ce = response_loss_per_example(logits, batch.labels).sum()
            penalty = spec.penalty * sum(inj.delta.pow(2).mean() for inj in current) * len(batch)
            loss = ce + penalty
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            log.append({"example": e, "step": step, "ce": ce.item() / len(batch), "penalty": penalty.item()})
        with torch.no_grad():
            write_deltas(student, injections())
    return student, log
