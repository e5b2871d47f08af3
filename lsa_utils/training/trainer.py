"""One LoRA trainer for every transfer method: what trains, on what targets, with which losses.

SemAlign (docs/method.md 1.6-1.8 and 2) trains LoRA on the paired student layers only, against aligned
teacher activations computed once per item (`lsa_utils.semalign.targets`), plus an output loss. The controls use
the same trainer with other supervision (``sft``: no layer loss, cross-entropy), so every method sees
the same batches, optimiser and budget.

Schedules:
- ``single`` (v1): all chosen layers train together for the whole budget;
- ``frontier`` (v2, reconstruction): the layers train one at a time, shallow to deep, each for an equal
  share of the same number of optimiser steps, earlier layers frozen afterwards.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from lsa_utils.infra.cache import atomic_dir, entry_problem
from lsa_utils.infra.progress import progress_bar
from lsa_utils.models import arch
from lsa_utils.models.batches import Batch, collate, iterate_batches
from lsa_utils.models.capture import record
from lsa_utils.semalign import losses
from lsa_utils.semalign.targets import TargetSet
from lsa_utils.tasks.spec import TaskItem

DEFAULT_MODULES = ("up_proj", "down_proj", "v_proj", "o_proj")
SCHEDULES = ("single", "frontier")


@dataclass(frozen=True)
class LoraSpec:
    rank: int = 16
    alpha: int = 16
    dropout: float = 0.05
    modules: tuple[str, ...] = DEFAULT_MODULES


@dataclass(frozen=True)
class TrainSpec:
    """The optimiser's budget. ``micro_batch_size`` (sequences per forward / backward pass; None: the whole
    batch) accumulates gradients so that a batch of 64 fits on one card; the update is the batch's.

    ``autocast`` runs the forward passes under `torch.autocast` in bfloat16: the matrix products of a float32
    or bf16 model in bf16 (tensor cores on a GPU), while what trains keeps float32 master weights (peft
    creates LoRA in float32 on a bf16 model; the layerwise-KD maps are float32) and every loss is computed
    in float32.
    """

    epochs: int = 5
    lr: float = 3e-4
    batch_size: int = 64
    schedule: str = "single"
    seed: int = 0
    micro_batch_size: int | None = None
    autocast: bool = False


@dataclass(frozen=True)
class Supervision:
    """What the loss compares: student ``layers`` against ``targets`` at ``site``, plus an output loss."""

    layers: tuple[int, ...] = ()
    site: str = "block_delta"
    layer_loss: str | None = "cosine"
    output_loss: str = "cosine_onehot"


class NonFiniteTraining(FloatingPointError):
    """A loss term or a gradient became NaN or infinite: the run stops there, before the update, and nothing
    of it is cached."""


@dataclass
class TrainResult:
    model: PeftModel
    log: pd.DataFrame  # one row per optimiser step
    trained_layers: tuple[int, ...]
    config: dict = field(default_factory=dict)


def attach_lora(student: nn.Module, layers: Sequence[int], spec: LoraSpec) -> PeftModel:
    """A copy of ``student`` with LoRA (B = 0, so unchanged at step 0) on ``layers`` only."""
    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=arch.projection_names(student, list(layers), spec.modules))
    with _peft_reads_deprecated_attribute():
        return get_peft_model(copy.deepcopy(student), config)


@contextmanager
def _peft_reads_deprecated_attribute() -> Iterator[None]:
    """peft asks a model for ``is_gradient_checkpointing``, which transformers 5 deprecates with a
    FutureWarning: peft's doing, not the study's, so it is silenced here (and only here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _lora_parameters(model: PeftModel, layer: int) -> list[nn.Parameter]:
    prefix = f".{arch.layout(model).layers}.{layer - 1}."
    return [p for name, p in model.named_parameters() if "lora_" in name and prefix in name]


def _step_loss(model: PeftModel, batch: Batch, rows: Tensor | None, targets: TargetSet | None,
               supervision: Supervision, layers: Sequence[int], projections: nn.ModuleDict,
               n_vocab: int) -> dict[str, Tensor]:
    mask = batch.response_mask
    with record(model, layers, supervision.site) as acts:
        hidden = arch.body(model)(**batch.model_inputs()).last_hidden_state  # [batch, seq, D]
    logits = arch.lm_head(model)(hidden[mask])  # [rows, V]: the head only where a loss reads
    terms: dict[str, Tensor] = {}
    if supervision.layer_loss and layers:
        terms["layer"] = torch.stack([
            _layer_term(model, supervision.layer_loss, acts[k][mask], targets.layers[k][rows].to(logits.device),
                        mask, projections[str(k)] if str(k) in projections else None) for k in layers]).mean()
    labels = batch.labels[mask]
    name = supervision.output_loss
    if name not in losses.OUTPUT_LOSSES:
        raise ValueError(f"unknown output loss {name!r}; choose from {losses.OUTPUT_LOSSES}")
    if name == "cosine_onehot":
        terms["output"] = losses.cosine_onehot(logits, labels)
    if name in ("ce", "ce_kl"):
        terms["output"] = losses.cross_entropy(logits, labels)
    if name in ("kl_teacher", "ce_kl"):
        teacher = targets.logits[rows].to(logits.device)
        shared = logits[:, :n_vocab]  # the tokenizer's ids: none of a hub model's padding rows
        if targets.logit_ids is None:  # [rows, V shared]: every teacher logit
            terms["kl"] = losses.kl_teacher(shared, teacher)
        else:  # [rows, k]: the teacher's top-k log-probabilities, and their ids
            terms["kl"] = losses.kl_teacher_top_k(shared, teacher, targets.logit_ids[rows].to(logits.device))
    return terms


def _backward(model: PeftModel, batch: Batch, indices: Sequence[int], targets: TargetSet | None,
              supervision: Supervision, layers: Sequence[int], projections: nn.ModuleDict, n_vocab: int,
              micro_batch_size: int | None, autocast: bool) -> dict[str, Tensor]:
    """Back-propagate one batch's loss, in micro-batches of ``micro_batch_size`` sequences when set; returns
    the batch's loss terms (detached).

    Each micro-batch's terms are weighted by its share of the batch's response positions, so the gradient
    is the whole batch's for every loss that is a mean over positions (all but ``relation``, a mean over
    sequences, which it approximates), and identical to it when the batch goes in one piece. Only the
    forward pass runs under ``autocast``; backward follows the dtypes it chose, as torch recommends.
    """
    size = micro_batch_size or len(batch)
    n_rows = batch.response_mask.sum()
    totals: dict[str, Tensor] = {}
    device_type = batch.input_ids.device.type
    for start in range(0, len(batch), size):
        part = batch.map(lambda t: t[start:start + size])  # [micro, seq]: same columns, same positions
        rows = targets.rows(indices[start:start + size]) if targets is not None else None
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            terms = _step_loss(model, part, rows, targets, supervision, layers, projections, n_vocab)
        share = part.response_mask.sum() / n_rows
        (sum(terms.values()) * share).backward()
        for name, value in terms.items():
            totals[name] = totals.get(name, 0.0) + value.detach() * share
    return totals


def _check_finite(terms: dict[str, Tensor], params: Sequence[nn.Parameter], where: str) -> None:
    """Raise `NonFiniteTraining` naming the first loss term (or the gradient) that is NaN or infinite."""
    for name, value in terms.items():
        if not torch.isfinite(value):
            raise NonFiniteTraining(f"{where}: the {name} loss is {value.item()}; nothing was cached. Lower the "
                                    "learning rate, or check the inputs and targets of this run")
    grads = [p.grad for p in params if p.grad is not None]
    if grads and not torch.stack([torch.isfinite(g).all() for g in grads]).all():
        raise NonFiniteTraining(f"{where}: a gradient holds NaN or inf values (the loss is finite); nothing was "
                                "cached. Lower the learning rate")


def _layer_term(model: nn.Module, name: str, h: Tensor, target: Tensor, mask: Tensor,
                projection: nn.Module | None) -> Tensor:
    if name == "projected_mse":  # layerwise KD: a learned map from the raw teacher state
        return F.mse_loss(h.float(), projection(target).float())
    if name == "cosine":
        return losses.cosine_layer(h, target)
    if name == "mse":
        return losses.mse_layer(h, target)
    if name == "fisher":
        return losses.fisher_layer(h, target, arch.final_norm(model), arch.lm_head(model))
    if name == "relation":
        sequence = mask.nonzero()[:, 0]  # [rows]: the sequence of each response position
        return losses.relation_layer(h, target, sequence)
    if name in losses.REGISTERED_LAYER_LOSSES:
        return losses.REGISTERED_LAYER_LOSSES[name](h, target)
    raise ValueError(f"unknown layer loss {name!r}; choose from {losses.layer_loss_names()}")


def _stages(train_layers: Sequence[int], spec: TrainSpec) -> list[tuple[int, ...]]:
    """Per stage, the layers whose LoRA trains (and whose layer loss counts)."""
    if spec.schedule == "single":
        return [tuple(train_layers)]
    if spec.schedule == "frontier":
        return [(k,) for k in sorted(train_layers)]
    raise ValueError(f"unknown schedule {spec.schedule!r}; choose from {SCHEDULES}")


def train_lora(student: nn.Module, tokenizer: PreTrainedTokenizerBase, items: Sequence[TaskItem],
               train_layers: Sequence[int], supervision: Supervision, targets: TargetSet | None = None,
               spec: TrainSpec = TrainSpec(), lora: LoraSpec = LoraSpec(), desc: str = "train") -> TrainResult:
    """LoRA on ``train_layers`` of a copy of ``student``, trained as ``supervision`` says."""
    torch.manual_seed(spec.seed)
    model = attach_lora(student, train_layers, lora)
    result = fit_lora(model, tokenizer, items, train_layers, supervision, targets, spec, desc)
    result.config["lora"] = asdict(lora)
    return result


def fit_lora(model: PeftModel, tokenizer: PreTrainedTokenizerBase, items: Sequence[TaskItem],
             train_layers: Sequence[int], supervision: Supervision, targets: TargetSet | None = None,
             spec: TrainSpec = TrainSpec(), desc: str = "train") -> TrainResult:
    """Train the LoRA parameters of ``train_layers`` in a model that already carries them (in place)."""
    if supervision.layer_loss and any(k not in train_layers for k in supervision.layers):
        raise ValueError(f"supervised layers {supervision.layers} must train: {tuple(train_layers)}")
    needs_targets = bool(supervision.layer_loss and supervision.layers) or "kl" in supervision.output_loss
    if needs_targets and targets is None:
        raise ValueError("this supervision compares with the teacher: pass targets=teacher_targets(...)")
    torch.manual_seed(spec.seed)
    model.train()
    device = next(model.parameters()).device
    total = spec.epochs * math.ceil(len(items) / spec.batch_size)
    stages = _stages(train_layers, spec)
    projections = nn.ModuleDict()
    if supervision.layer_loss == "projected_mse":  # layerwise KD learns one D_T -> D_S map per layer
        width = arch.unwrap(model).config.hidden_size
        projections = nn.ModuleDict({str(k): nn.Linear(targets.layers[k].shape[1], width, bias=False)
                                     for k in supervision.layers}).to(device)
    bounds = [round(total * j / len(stages)) for j in range(len(stages) + 1)]
    log, step = [], 0
    batches = (b for epoch in range(spec.epochs)
               for b in iterate_batches(tokenizer, items, spec.batch_size, shuffle_seed=spec.seed * 1000 + epoch))
    bar = progress_bar(total=total, desc=desc, unit="step", mininterval=2.0)
    for j, stage_layers in enumerate(stages):
        for p in model.parameters():
            p.requires_grad_(False)
        params = [p for k in stage_layers for p in _lora_parameters(model, k)]
        params += [p for k in stage_layers if str(k) in projections for p in projections[str(k)].parameters()]
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=0.0)
        n_steps = bounds[j + 1] - bounds[j]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s, n=n_steps: 0.5 * (1 + math.cos(math.pi * s / max(1, n))))
        supervised = [k for k in stage_layers if k in supervision.layers]
        for _ in range(n_steps):
            indices, batch = next(batches)
            optimizer.zero_grad()
            terms = _backward(model, batch.to(device), indices, targets, supervision, supervised, projections,
                              len(tokenizer), spec.micro_batch_size, spec.autocast)
            loss = sum(terms.values())
            step += 1
            _check_finite(terms, params, f"{desc}: step {step} of {total} (lr {spec.lr})")
            optimizer.step()
            scheduler.step()
            log.append({"step": step, "stage": j, "loss": loss.item()} |
                       {f"{name}_loss": v.item() for name, v in terms.items()})
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    model.eval()
    config = {"train_layers": list(train_layers), "supervision": asdict(supervision), "spec": asdict(spec)}
    return TrainResult(model, pd.DataFrame(log), tuple(train_layers), config)


def save_result(result: TrainResult, path: Path) -> None:
    """The adapter (PEFT format), the loss log and the configuration, written atomically with checksums."""
    with atomic_dir(Path(path), checksum=True) as tmp:
        result.model.save_pretrained(tmp)
        result.log.to_csv(tmp / "log.csv", index=False)
        (tmp / "train_config.json").write_text(json.dumps(result.config, indent=1))


def load_result(student: nn.Module, path: Path) -> PeftModel:
    """The trained model back from :func:`save_result`, on a copy of the same base ``student``.

    A damaged run directory is an error naming it: nothing here can retrain it.
    """
    if Path(path).exists() and (problem := entry_problem(Path(path))):
        raise ValueError(f"trained run {path} is corrupt ({problem}): train it again and save_result it")
    with _peft_reads_deprecated_attribute():
        return PeftModel.from_pretrained(copy.deepcopy(student), Path(path)).eval()


def response_logits(model: nn.Module, tokenizer: PreTrainedTokenizerBase, items: Sequence[TaskItem]) -> Tensor:
    """Logits at every response position of ``items``, [rows, V] (to compare two models' outputs)."""
    batch = collate(tokenizer, items).to(next(model.parameters()).device)
    with torch.no_grad():
        return model(**batch.model_inputs()).logits[batch.response_mask]
