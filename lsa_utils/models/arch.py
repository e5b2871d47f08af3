"""Where things live inside a supported causal LM: the one module that knows architectures.

Everything else asks here for the decoder layers, the final norm, the LM head, the input embedding and
the projections that LoRA, Seeking and LaTen touch, so supporting a new family means adding one row to
``ARCHITECTURES``. A PEFT-wrapped model is looked through to the model it wraps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

PROJECTIONS = ("up_proj", "down_proj", "v_proj", "o_proj", "q_proj", "k_proj", "gate_proj")


@dataclass(frozen=True)
class Layout:
    """Attribute paths, relative to the causal LM (``layers``, ``norm``...) or to one decoder layer."""

    body: str  # the decoder stack with its final norm, whose output the LM head reads
    layers: str
    final_norm: str
    lm_head: str
    embedding: str
    mlp: str
    projections: dict[str, str]


_LLAMA_LIKE = Layout(
    body="model", layers="model.layers", final_norm="model.norm", lm_head="lm_head", embedding="model.embed_tokens",
    mlp="mlp",
    projections={"up_proj": "mlp.up_proj", "down_proj": "mlp.down_proj", "gate_proj": "mlp.gate_proj",
                 "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj",
                 "v_proj": "self_attn.v_proj", "o_proj": "self_attn.o_proj"},
)
ARCHITECTURES: dict[str, Layout] = {
    "LlamaForCausalLM": _LLAMA_LIKE,
    "Qwen2ForCausalLM": _LLAMA_LIKE,
    "MistralForCausalLM": _LLAMA_LIKE,
}


class UnsupportedArchitecture(ValueError):
    pass


def unwrap(model: nn.Module) -> PreTrainedModel:
    """The causal LM inside a PEFT wrapper (or the model itself)."""
    while hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def layout(model: nn.Module) -> Layout:
    name = type(unwrap(model)).__name__
    if name not in ARCHITECTURES:
        raise UnsupportedArchitecture(
            f"architecture {name} is not supported; supported: {', '.join(sorted(ARCHITECTURES))} "
            "(add a row to lsa_utils.arch.ARCHITECTURES)"
        )
    return ARCHITECTURES[name]


def body(model: nn.Module) -> nn.Module:
    """The decoder stack and final norm without the LM head: it returns ``last_hidden_state`` [batch, seq, D]."""
    return unwrap(model).get_submodule(layout(model).body)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return unwrap(model).get_submodule(layout(model).layers)


def n_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def final_norm(model: nn.Module) -> nn.Module:
    return unwrap(model).get_submodule(layout(model).final_norm)


def lm_head(model: nn.Module) -> nn.Linear:
    return unwrap(model).get_submodule(layout(model).lm_head)


def input_embedding(model: nn.Module) -> nn.Embedding:
    return unwrap(model).get_submodule(layout(model).embedding)


def input_device(model: nn.Module) -> torch.device:
    """Where inputs go: the input embedding's device (the first shard of a model spread by ``device_map``)."""
    return input_embedding(model).weight.device


def mlp(model: nn.Module, layer: int) -> nn.Module:
    """The MLP of decoder layer ``layer`` (1-based, as everywhere in the method)."""
    return decoder_layers(model)[layer - 1].get_submodule(layout(model).mlp)


def projection(model: nn.Module, layer: int, name: str) -> nn.Linear:
    """Projection ``name`` (e.g. ``up_proj``) of decoder layer ``layer`` (1-based)."""
    return decoder_layers(model)[layer - 1].get_submodule(_projection_path(model, name))


def projection_names(model: nn.Module, layers: list[int], names: tuple[str, ...]) -> list[str]:
    """Full module names (relative to the causal LM) of projections, as PEFT's ``target_modules``."""
    lay = layout(model)
    return [f"{lay.layers}.{k - 1}.{_projection_path(model, name)}" for k in layers for name in names]


def _projection_path(model: nn.Module, name: str) -> str:
    projections = layout(model).projections
    if name not in projections:
        raise ValueError(f"unknown projection {name!r}; choose from {', '.join(projections)}")
    return projections[name]
