"""Every method of the study behind one call, so the comparison is fair (METHOD.md sections 1-3).

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
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from datasets import DatasetDict
from torch import nn
from transformers import PreTrainedTokenizerBase

from lsa_utils import arch, laten, seeking
from lsa_utils.batches import collate
from lsa_utils.semalign import (
    alignment_map, critical_layers, layer_attribution, least_squares_map, pair_layers, semantic_bases,
    served_layers,
)
from lsa_utils.trainer import (
    LoraSpec, Supervision, TrainSpec, cached_teacher_targets, fit_lora, teacher_targets, train_lora,
)

METHODS = ("student", "teacher", "sft", "kd", "layerwise_kd", "seeking", "laten", "semalign_v1", "semalign_v2")
PAIRINGS = ("floor", "interpolate", "attribution", "last")


@dataclass(frozen=True)
class TransferConfig:
    """The shared budget and SemAlign's choices; every field is a knob of notebook 05's ablations."""

    train: TrainSpec = TrainSpec()
    lora: LoraSpec = LoraSpec()
    n_train: int | None = None  # None: the whole train split
    n_seed_examples: int = 32
    n_critical: int = 1
    basis: str = "output"  # or input, random, fold_norm, least_squares (fitted on activations)
    pairing: str = "attribution"  # or floor, interpolate, last
    site: str = "block_delta"
    layer_loss: str | None = None  # None: the method's own (cosine for v1, fisher for v2)
    output_loss: str | None = None  # None: the method's own (cosine_onehot for v1, kl_teacher for v2)
    n_trained_layers: int | None = None  # v2: None = every student layer (frontier); v1: the paired ones

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


def _alignment(teacher: nn.Module, student: nn.Module, basis: str):
    if basis == "fold_norm":
        bases = [semantic_bases(arch.lm_head(m).weight, basis, norm_weight=arch.final_norm(m).weight)
                 for m in (teacher, student)]
    else:
        source = {"input": arch.input_embedding}.get(basis, arch.lm_head)
        bases = [semantic_bases(source(m).weight, basis, seed=i) for i, m in enumerate((teacher, student))]
    return alignment_map(*bases)


def _fitted_map(teacher: nn.Module, student: nn.Module, tokenizer: PreTrainedTokenizerBase, items,
                pairing: dict, site: str):
    """The ablation's data-fitted alternative to M: least squares from unit teacher states to student states,
    pooled over the paired layers at the response positions of the transfer items."""
    sources = teacher_targets(teacher, tokenizer, items, pairing, site, None)
    own = teacher_targets(student, tokenizer, items, {k: k for k in pairing}, site, None)
    x = torch.cat([sources.layers[k] / sources.layers[k].norm(dim=-1, keepdim=True).clamp_min(1e-8) for k in pairing])
    y = torch.cat([own.layers[k] for k in pairing])
    return least_squares_map(x, y)


def semalign_plan(teacher: nn.Module, student: nn.Module, seed_batch, config: TransferConfig,
                  version: int) -> tuple[list[int], dict]:
    """(student layers that train, student layer -> teacher source) for SemAlign v1 or v2.

    v1 trains the student layers paired with critical teacher layers, v2 every student layer (frontier);
    ``n_trained_layers`` overrides both, taking the critical layers' partners first, then the deepest.
    """
    n_t, n_s = arch.n_layers(teacher), arch.n_layers(student)
    critical = critical_layers(layer_attribution(teacher, seed_batch), config.n_critical)
    if config.pairing not in PAIRINGS:
        raise ValueError(f"unknown pairing {config.pairing!r}; choose from {PAIRINGS}")
    pairing = pair_layers(n_t, n_s, critical=critical if config.pairing == "attribution" else (),
                          interpolate=config.pairing == "interpolate")
    by_layer = dict(enumerate(pairing, start=1))
    served = served_layers(pairing, critical)
    if config.pairing == "last":
        layers = [n_s]
    elif config.n_trained_layers is not None:
        preference = sorted(by_layer, key=lambda k: (k not in served, -k))
        layers = sorted(preference[: config.n_trained_layers])
    else:
        layers = sorted(served) if version == 1 else list(by_layer)
    return layers, {k: by_layer[k] for k in layers}


def transfer_model(method: str, teacher: nn.Module, student: nn.Module, tokenizer: PreTrainedTokenizerBase,
                   splits: DatasetDict, family: str, config: TransferConfig = TransferConfig(),
                   cache: TargetCache | None = None) -> nn.Module:
    """The model a method produces for one task family (train / align / extract splits of ``splits``).

    With ``cache``, teacher targets are stored as safetensors and reused by every run that needs the same
    ones (the seeds of a method, and methods that share them)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if method == "student":
        return student
    if method == "teacher":
        return teacher
    train = splits["train"]
    if config.n_train is not None:
        train = train.select(range(min(config.n_train, len(train))))
    n_s = arch.n_layers(student)
    all_layers = list(range(1, n_s + 1))
    seed_batch = collate(tokenizer, [train[i] for i in range(min(config.n_seed_examples, len(train)))])
    ce = Supervision(layer_loss=None, output_loss="ce")
    desc = f"{method} on {family}"

    def targets(pairing: dict, site: str, M, with_logits: bool, map_name: str):
        return cached_teacher_targets(cache.directory if cache else None, {"pair": cache.pair if cache else "",
                                      "map": map_name}, teacher, tokenizer, train, pairing, site, M, with_logits)

    if method == "sft":
        return train_lora(student, tokenizer, train, all_layers, ce, None, config.train, config.lora, desc).model
    if method == "kd":
        return train_lora(student, tokenizer, train, all_layers, replace(ce, output_loss="ce_kl"),
                          targets({}, "block_output", None, True, "none"),
                          config.train, config.lora, desc).model
    if method == "layerwise_kd":
        pairing = dict(enumerate(pair_layers(arch.n_layers(teacher), n_s), start=1))
        supervision = Supervision(tuple(all_layers), "block_output", "projected_mse", "ce")
        return train_lora(student, tokenizer, train, all_layers, supervision,
                          targets(pairing, "block_output", None, False, "none"),
                          config.train, config.lora, desc).model
    if method == "seeking":
        scores = seeking.sensitivities(teacher, seed_batch, config.lora.modules)
        model = seeking.plant(student, teacher, scores, config.lora)
        return fit_lora(model, tokenizer, train, all_layers, ce, None, config.train, desc).model
    if method == "laten":
        spec = laten.LatenSpec(steps_per_example=laten.STEPS_PER_EXAMPLE.get(family, 2), seed=config.train.seed)
        return laten.transfer(teacher, student, tokenizer, splits["extract"], splits["align"], spec, desc)[0]
    version = 1 if method == "semalign_v1" else 2
    layers, pairing = semalign_plan(teacher, student, seed_batch, config, version)
    layer_loss = config.layer_loss or ("cosine" if version == 1 else "fisher")
    output_loss = config.output_loss or ("cosine_onehot" if version == 1 else "kl_teacher")
    if config.basis == "least_squares":
        M = _fitted_map(teacher, student, tokenizer, train, pairing, config.site)
    else:
        M = _alignment(teacher, student, config.basis)
    spec = replace(config.train, schedule="single" if version == 1 else "frontier")
    supervision = Supervision(tuple(layers), config.site, layer_loss, output_loss)
    semalign_targets = targets(pairing, config.site, M, "kl" in output_loss, config.basis)
    return train_lora(student, tokenizer, train, layers, supervision, semalign_targets, spec, config.lora, desc).model
