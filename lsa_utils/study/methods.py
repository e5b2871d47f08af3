"""Every method of the study behind one call, so the comparison is fair (docs/method.md sections 1-3).

``transfer_model(method, ...)`` returns the student after the method (or the teacher / student as they
are); all trained methods read the same task splits through the same batches, trainer and budget, and
are scored afterwards by the same evaluator.

=================  ==============================================================================
method             what it does
=================  ==============================================================================
student, teacher   untouched references
sft                LoRA on every student layer, cross-entropy (the control)
kd                 sft plus KL(p_T || p_S) at response positions
layerwise_kd       sft plus MSE to teacher states through a learned projection per paired layer
seeking            teacher blocks planted by sensitivity and SVD, then fine-tuned as sft
laten              logit-lens location, hypernetwork injection, no fine-tuning of the student
semalign_v1        LoRA on the student layers paired with critical teacher layers, cosine losses
semalign_v2        the frontier schedule over student layers, Fisher layer loss, KL output loss
=================  ==============================================================================

Three controls bound what a method could show, through the same trainer and the same number of
optimiser steps (they are not transfer methods, and tables label them as controls):

=================  ==============================================================================
control            what it trains on
=================  ==============================================================================
oracle             the gold responses of the scored test prompts: a transductive upper bound
teacher_answers    the teacher's own answers to the scored test prompts: the ceiling of output transfer
semalign_shuffled  SemAlign v1 with its teacher targets permuted across items: a gain it shows is not
                   the teacher's knowledge
=================  ==============================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict
from peft import PeftModel
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from lsa_utils.baselines import laten, seeking
from lsa_utils.evaluation.scoring import answers
from lsa_utils.infra.device import offloaded
from lsa_utils.models import arch
from lsa_utils.models.batches import Batch, collate
from lsa_utils.models.pair_check import shared_vocabulary
from lsa_utils.semalign import (
    BASIS_KINDS, LayerSource, critical_layers, layer_attribution, least_squares_map, pair_alignment_map,
    pair_layers, plan_layers,
)
from lsa_utils.semalign.targets import (
    Pairing, TargetSet, cached_teacher_targets, cached_tensors, response_states, teacher_targets,
)
from lsa_utils.tasks.spec import TaskItem, get_task
from lsa_utils.training.trainer import LoraSpec, Supervision, TrainSpec, fit_lora, train_lora

METHODS = ("student", "teacher", "sft", "kd", "layerwise_kd", "seeking", "laten", "semalign_v1", "semalign_v2")
CONTROLS = ("oracle", "teacher_answers", "semalign_shuffled")
TRANSDUCTIVE = ("oracle", "teacher_answers")  # the controls that train on the scored test prompts
FITTED_BASIS = "least_squares"  # M fitted on activations instead of built from the weights
BASES = (*BASIS_KINDS, FITTED_BASIS)


@dataclass(frozen=True)
class TransferConfig:
    """The shared budget and SemAlign's choices; every field is a knob of notebook 05's ablations."""

    train: TrainSpec = TrainSpec()
    lora: LoraSpec = LoraSpec()
    n_train: int | None = None  # train items per epoch, cycling a shorter split; None: the whole split
    n_seed_examples: int = 32
    n_critical: int = 1
    basis: str = "output"  # one of BASES: a model matrix's semantic bases, or least_squares (fitted)
    pairing: str = "attribution"  # or floor, interpolate, last
    site: str = "block_delta"
    layer_loss: str | None = None  # None: the method's own (cosine for v1, fisher for v2)
    output_loss: str | None = None  # None: the method's own (cosine_onehot for v1, kl_teacher for v2)
    n_trained_layers: int | None = None  # v2: None = every student layer (frontier); v1: the paired ones
    teacher_top_k: int | None = None  # kd / kl_teacher: the teacher's k likeliest ids per position; None: all

    @classmethod
    def from_dict(cls, params: dict) -> TransferConfig:
        """From a profile's ``transfer`` mapping: ``train`` and ``lora`` sub-mappings, the rest flat."""
        params = dict(params)
        train = TrainSpec(**params.pop("train", {}))
        lora = params.pop("lora", {})
        lora = LoraSpec(**{**lora, "modules": tuple(lora.get("modules", LoraSpec.modules))})
        return cls(train=train, lora=lora, **params)


@dataclass(frozen=True)
class TargetCache:
    """Where teacher targets are cached, and what identifies the teacher / student pair they belong to."""

    directory: Path
    pair: str  # e.g. the zoo's model keys, or hub names and revisions


def _fitted_map(teacher: nn.Module, student: nn.Module, tokenizer: PreTrainedTokenizerBase,
                items: Sequence[TaskItem], pairing: Pairing, site: str) -> Tensor:
    """The ablation's data-fitted alternative to M: least squares from unit teacher states to student states,
    pooled over the paired layers at the response positions of the transfer items."""
    sources = teacher_targets(teacher, tokenizer, items, pairing, site, None)
    own = response_states(student, tokenizer, items, layers=list(pairing), site=site)
    x = torch.cat([sources.layers[k] / sources.layers[k].norm(dim=-1, keepdim=True).clamp_min(1e-8) for k in pairing])
    y = torch.cat([own[k] for k in pairing])
    return least_squares_map(x, y)


def _teacher_statistic(cache: TargetCache | None, kind: str, seed_batch: Batch,
                       compute: Callable[[], dict[str, Tensor]], **metadata: object) -> dict[str, Tensor]:
    """A statistic of the teacher on the seed batch, computed once per pair and batch (no seed changes it)."""
    return cached_tensors(cache.directory if cache else None, kind,
                          {"pair": cache.pair if cache else "", "batch": seed_batch.fingerprint(), **metadata}, compute)


def _sensitivities(teacher: nn.Module, seed_batch: Batch, modules: tuple[str, ...],
                   cache: TargetCache | None) -> dict[tuple[int, str], Tensor]:
    """Seeking's sensitivities on the seed batch, per (layer, module) in depth order, once per pair and batch."""
    def compute() -> dict[str, Tensor]:
        return {f"{k}.{m}": s for (k, m), s in seeking.sensitivities(teacher, seed_batch, modules).items()}

    named = _teacher_statistic(cache, "sensitivity", seed_batch, compute, modules=",".join(modules))
    return {(k, m): named[f"{k}.{m}"] for k in range(1, arch.n_layers(teacher) + 1) for m in modules}


def semalign_plan(teacher: nn.Module, student: nn.Module, seed_batch: Batch, config: TransferConfig,
                  version: int, cache: TargetCache | None = None) -> tuple[list[int], dict[int, LayerSource]]:
    """(student layers that train, student layer -> teacher source) for SemAlign v1 or v2.

    The critical teacher layers come from Grad x Act on ``seed_batch`` (cached with ``cache``);
    `plan_layers` says which student layers train under the configured pairing.
    """
    scores = _teacher_statistic(cache, "attribution", seed_batch,
                                lambda: {"scores": layer_attribution(teacher, seed_batch).cpu()})["scores"]
    critical = critical_layers(scores, config.n_critical)
    pairing = pair_layers(arch.n_layers(teacher), arch.n_layers(student),
                          critical=critical if config.pairing == "attribution" else (),
                          interpolate=config.pairing == "interpolate")
    layers = plan_layers(pairing, critical, config.pairing, version, config.n_trained_layers)
    return layers, {k: pairing[k - 1] for k in layers}


def teacher_answered(teacher: nn.Module, tokenizer: PreTrainedTokenizerBase, family: str, items: Dataset,
                     max_new_tokens: int = 64, batch_size: int = 64) -> list[TaskItem]:
    """``items`` with the teacher's answer as the response, in the format of the gold response.

    Multiple choice: the gold response with the gold answer replaced by the teacher's pick; generation: the
    answer prefix followed by the teacher's greedy continuation.
    """
    outputs = answers(teacher, tokenizer, family, items, max_new_tokens, batch_size)
    answered = []
    for item, answer in zip(items, outputs):
        prefix = item["answer_prefix"]
        if get_task(family).scoring == "multiple_choice":
            response = prefix + item["response"][len(prefix):].replace(item["answer"], answer, 1)
        else:
            joint = "" if prefix[-1:].isspace() or answer[:1].isspace() else " "
            response = f"{prefix}{joint}{answer}"
        answered.append({**item, "response": response})
    return answered


def _cycled(items: Sequence, n: int) -> list:
    """``n`` items cycling through ``items``: a control on the test prompts takes the steps of ``n`` train items."""
    return [items[i % len(items)] for i in range(n)]


def budgeted_train(train: Dataset, n_train: int | None) -> Dataset:
    """The first ``n_train`` train items, cycling a shorter split, so every family trains the same number of
    steps (the world's code_write split has 300 items; at 300 the oracle closed an eighth of its gap)."""
    if n_train is None:
        return train
    return train.select(_cycled(range(len(train)), n_train))


def transfer_model(method: str, teacher: nn.Module, student: nn.Module, tokenizer: PreTrainedTokenizerBase,
                   splits: DatasetDict, family: str, config: TransferConfig = TransferConfig(),
                   cache: TargetCache | None = None, test: Dataset | None = None,
                   evaluation: Mapping[str, int] | None = None) -> nn.Module:
    """The model a method or control produces for one task family (train / align / extract of ``splits``).

    With ``cache``, teacher targets are stored as safetensors and reused by every run that needs the same
    ones (the seeds of a method, and methods that share them). ``test`` (the scored items) and
    ``evaluation`` (the evaluator's settings, for the teacher's answers) are read only by the transductive
    controls."""
    if method not in (*METHODS, *CONTROLS):
        raise ValueError(f"unknown method {method!r}; choose from {', '.join((*METHODS, *CONTROLS))}")
    if method == "student":
        return student
    if method == "teacher":
        return teacher
    n_vocab = shared_vocabulary(teacher, student, tokenizer)  # every method: one error before any work
    train = budgeted_train(splits["train"], config.n_train)
    n_s = arch.n_layers(student)
    all_layers = list(range(1, n_s + 1))
    ce = Supervision(layer_loss=None, output_loss="ce")
    desc = f"{method} on {family}"

    def trained(items: Sequence[TaskItem], layers: Sequence[int], supervision: Supervision,
                target_set: TargetSet | None = None, spec: TrainSpec = config.train,
                model: PeftModel | None = None) -> nn.Module:
        """LoRA training, with the teacher off the accelerator: everything the method needs of it is computed."""
        with offloaded(teacher):
            if model is not None:  # Seeking's student, its LoRA already planted
                return fit_lora(model, tokenizer, items, layers, supervision, target_set, spec, desc).model
            return train_lora(student, tokenizer, items, layers, supervision, target_set, spec, config.lora,
                              desc).model

    if method in TRANSDUCTIVE:
        if test is None:
            raise ValueError(f"the {method} control trains on the scored items: pass test=<the test items>")
        greedy = {k: v for k, v in (evaluation or {}).items() if k in ("max_new_tokens", "batch_size")}
        items = list(test) if method == "oracle" else teacher_answered(teacher, tokenizer, family, test, **greedy)
        return trained(_cycled(items, len(train)), all_layers, ce)
    seed_batch = collate(tokenizer, [train[i] for i in range(min(config.n_seed_examples, len(train)))])

    def targets(pairing: Pairing, site: str, M: Tensor | None, with_logits: bool, map_name: str):
        return cached_teacher_targets(cache.directory if cache else None, {"pair": cache.pair if cache else "",
                                      "map": map_name}, teacher, tokenizer, train, pairing, site, M, with_logits,
                                      config.teacher_top_k)

    if method == "sft":
        return trained(train, all_layers, ce)
    if method == "kd":
        return trained(train, all_layers, replace(ce, output_loss="ce_kl"), targets({}, "block_output", None, True,
                                                                                    "none"))
    if method == "layerwise_kd":
        pairing = dict(enumerate(pair_layers(arch.n_layers(teacher), n_s), start=1))  # the floor map
        supervision = Supervision(tuple(all_layers), "block_output", "projected_mse", "ce")
        return trained(train, all_layers, supervision, targets(pairing, "block_output", None, False, "none"))
    if method == "seeking":
        scores = _sensitivities(teacher, seed_batch, config.lora.modules, cache)
        return trained(train, all_layers, ce, model=seeking.plant(student, teacher, scores, config.lora))
    if method == "laten":
        spec = laten.LatenSpec(steps_per_example=get_task(family).laten_steps, seed=config.train.seed)
        return laten.transfer(teacher, student, tokenizer, splits["extract"], splits["align"], spec, desc)[0]
    version = 2 if method == "semalign_v2" else 1
    layers, pairing = semalign_plan(teacher, student, seed_batch, config, version, cache)
    layer_loss = config.layer_loss or ("cosine" if version == 1 else "fisher")
    output_loss = config.output_loss or ("cosine_onehot" if version == 1 else "kl_teacher")
    if config.basis == FITTED_BASIS:
        M = _fitted_map(teacher, student, tokenizer, train, pairing, config.site)
    else:
        M = pair_alignment_map(teacher, student, config.basis, n_vocab)
    spec = replace(config.train, schedule="single" if version == 1 else "frontier")
    supervision = Supervision(tuple(layers), config.site, layer_loss, output_loss)
    semalign_targets = targets(pairing, config.site, M, "kl" in output_loss, config.basis)
    if method == "semalign_shuffled":
        semalign_targets = semalign_targets.permuted(config.train.seed)
    return trained(train, layers, supervision, semalign_targets, spec)
