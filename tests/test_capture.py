"""Architecture lookups, activation capture against output_hidden_states, and hook hygiene."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lsa_utils.models import arch
from lsa_utils.models.batches import collate
from lsa_utils.models.capture import capture, record


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_lookups_find_the_parts_of_every_supported_family(make_tiny, family):
    model = make_tiny(30, n_layers=2, family=family)
    assert arch.n_layers(model) == 2
    assert arch.lm_head(model).weight.shape == (30, 16)
    assert arch.input_embedding(model).weight.shape == (30, 16)
    assert arch.projection(model, 2, "up_proj") is model.model.layers[1].mlp.up_proj
    assert arch.projection_names(model, [1], ("v_proj",)) == ["model.layers.0.self_attn.v_proj"]
    ids = torch.arange(12).view(2, 6)
    hidden = arch.body(model)(input_ids=ids).last_hidden_state  # the head reads it: logits at chosen rows only
    assert torch.allclose(arch.lm_head(model)(hidden[:, -2:]), model(input_ids=ids).logits[:, -2:], atol=1e-6)


def test_unknown_architectures_are_named():
    class TinyGPT(nn.Module):
        pass
    with pytest.raises(arch.UnsupportedArchitecture, match="TinyGPT.*LlamaForCausalLM.*Qwen2ForCausalLM"):
        arch.decoder_layers(TinyGPT())


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_capture_agrees_with_output_hidden_states(tiny_task, make_tiny, family):
    tokenizer, items = tiny_task
    model = make_tiny(len(tokenizer), n_layers=3, family=family)
    batch = collate(tokenizer, items[:3]).model_inputs()
    hidden = model(**batch, output_hidden_states=True).hidden_states
    outputs = capture(model, batch, [1, 2, 3], "block_output")
    deltas = capture(model, batch, [1, 2, 3], "block_delta")
    for k in (1, 2):
        assert torch.allclose(outputs[k], hidden[k], atol=1e-6)
    # HF's last entry is after the final norm; the block output itself is before it
    assert torch.allclose(arch.final_norm(model)(outputs[3]), hidden[3], atol=1e-5)
    assert torch.allclose(deltas[1], hidden[1] - hidden[0], atol=1e-6)
    assert torch.allclose(deltas[3], outputs[3] - outputs[2], atol=1e-6)


def test_mlp_output_is_the_mlp_before_its_residual(tiny_task, make_tiny):
    tokenizer, items = tiny_task
    model = make_tiny(len(tokenizer))
    batch = collate(tokenizer, items[:2]).model_inputs()
    layer = arch.decoder_layers(model)[2]
    seen = {}
    layer.mlp.register_forward_hook(lambda m, a, out: seen.update(out=out))
    acts = capture(model, batch, [3], "mlp_output")
    assert torch.equal(acts[3], seen["out"])


def test_capture_stops_after_the_deepest_needed_layer(tiny_task, make_tiny):
    tokenizer, items = tiny_task
    model = make_tiny(len(tokenizer), n_layers=3)
    ran = []
    for i, layer in enumerate(arch.decoder_layers(model)):
        layer.register_forward_hook(lambda m, a, out, i=i: ran.append(i + 1))
    capture(model, collate(tokenizer, items[:1]).model_inputs(), [1, 2], "block_output")
    assert ran == [1, 2]


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_are_removed_after_an_exception(tiny_task, make_tiny):
    tokenizer, items = tiny_task
    model = make_tiny(len(tokenizer))
    start = _hook_count(model)
    with pytest.raises(RuntimeError, match="boom"):
        with record(model, [1, 3], "block_delta"):
            assert _hook_count(model) == start + 2
            raise RuntimeError("boom")
    assert _hook_count(model) == start
    with pytest.raises(ValueError, match="site 'block'"):
        with record(model, [1], "block"):
            pass
    with pytest.raises(ValueError, match=r"layers \[4\] outside 1..3"):
        with record(model, [4]):
            pass
    assert _hook_count(model) == start
