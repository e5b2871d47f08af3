"""Teacher targets: a model's own states at response positions, mapped teacher states, and their cache."""

from __future__ import annotations

import pytest
import torch

from lsa_utils.infra.cache import CorruptCacheEntry, verified
from lsa_utils.models.batches import collate
from lsa_utils.models.capture import capture
from lsa_utils.semalign import LayerSource
from lsa_utils.semalign.targets import (
    TargetSet, cached_teacher_targets, load_activations, response_states, save_activations, teacher_targets,
)


def test_response_states_are_the_activations_at_response_positions(tiny_task, make_tiny):
    tokenizer, items = tiny_task
    model = make_tiny(len(tokenizer), n_layers=3)
    states = response_states(model, tokenizer, items[:5], batch_size=2)  # every layer, two items a batch
    batch = collate(tokenizer, items[:5])
    acts = capture(model, batch.model_inputs(), [1, 2, 3], "block_output")
    assert set(states) == {1, 2, 3}
    for k in (1, 2, 3):
        assert torch.allclose(states[k], acts[k][batch.response_mask], atol=1e-6)
    deltas = response_states(model, tokenizer, items[:5], layers=[2], site="block_delta")
    assert set(deltas) == {2} and torch.allclose(deltas[2], (acts[2] - acts[1])[batch.response_mask], atol=1e-6)


def test_teacher_targets_are_the_mapped_activations_at_response_positions(tiny_task, make_pair):
    tokenizer, items = tiny_task
    student, teacher, M = make_pair(len(tokenizer))
    pairing = {1: LayerSource.single(2), 2: LayerSource(2, 3, 0.25)}
    targets = teacher_targets(teacher, tokenizer, items[:5], pairing, "block_delta", M, with_logits=True, batch_size=2)
    batch = collate(tokenizer, items[:5])
    acts = capture(teacher, batch.model_inputs(), [2, 3], "block_delta")
    mask = batch.response_mask
    h = acts[2][mask]
    expected = (h / h.norm(dim=-1, keepdim=True)) @ M.T
    assert torch.allclose(targets.layers[1], expected, atol=1e-5)
    mixed = 0.75 * acts[2][mask] + 0.25 * acts[3][mask]
    assert torch.allclose(targets.layers[2], (mixed / mixed.norm(dim=-1, keepdim=True)) @ M.T, atol=1e-5)
    assert targets.layers[1].shape == (int(mask.sum()), 16)
    assert targets.logits.shape == (int(mask.sum()), len(tokenizer))
    assert torch.equal(targets.rows([1]), torch.arange(targets.offsets[1], targets.offsets[2]))
    raw = teacher_targets(teacher, tokenizer, items[:5], {1: LayerSource.single(2)}, "block_delta", None)
    assert torch.equal(raw.layers[1], response_states(teacher, tokenizer, items[:5], [2], "block_delta")[2])


def test_teacher_targets_are_cached_with_their_metadata(tiny_task, make_pair, tmp_path):
    tokenizer, items = tiny_task
    student, teacher, M = make_pair(len(tokenizer))
    meta, pairing = {"pair": "tiny", "map": "output"}, {2: LayerSource.single(3)}
    first = cached_teacher_targets(tmp_path, meta, teacher, tokenizer, items[:3], pairing, "block_delta", M, True)
    (path,) = tmp_path.glob("targets-*.safetensors")
    again = cached_teacher_targets(tmp_path, meta, teacher, tokenizer, items[:3], pairing, "block_delta", M, True)
    assert torch.equal(first.layers[2], again.layers[2]) and torch.equal(first.logits, again.logits)
    assert torch.equal(first.offsets, again.offsets)
    cached_teacher_targets(tmp_path, meta, teacher, tokenizer, items[:4], pairing, "block_delta", M, True)
    assert len(list(tmp_path.glob("targets-*.safetensors"))) == 2  # other items, another entry
    with pytest.raises(ValueError, match="other settings"):
        TargetSet.load(path, {**meta, "site": "block_output"})


def test_a_truncated_target_file_is_reported_and_recomputed(tiny_task, make_pair, tmp_path):
    """The issue's `SafetensorError: incomplete metadata` under --force: now a named warning and a rebuild."""
    tokenizer, items = tiny_task
    student, teacher, M = make_pair(len(tokenizer))
    args = (tmp_path, {"pair": "tiny", "map": "output"}, teacher, tokenizer, items[:3], {2: LayerSource.single(3)},
            "block_delta", M, True)
    first = cached_teacher_targets(*args)
    (path,) = tmp_path.glob("targets-*.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(CorruptCacheEntry, match=f"{path}.*checksum mismatch.*removed, recomputing"):
        again = cached_teacher_targets(*args)
    assert torch.equal(first.layers[2], again.layers[2]) and torch.equal(first.logits, again.logits)
    assert verified(path)


def test_a_pairing_is_keyed_as_layer_numbers_and_blends():
    """The cache key's pairing: a single layer is its number, a blend [a, b, lam] (kept so old caches hold)."""
    assert LayerSource.single(3).to_json() == 3
    assert LayerSource(3, 4, 0.0).to_json() == [3, 4, 0.0]  # an interpolated pair at lam 0 is still a pair
    assert LayerSource(3, 4, 0.0).layers == (3, 4) and LayerSource.single(3).layers == (3,)


def test_saved_activations_carry_their_metadata(tmp_path):
    acts = {2: torch.randn(5, 4), 4: torch.randn(5, 4)}
    meta = {"model": "teacher", "revision": "abc", "site": "block_delta", "data": "123"}
    save_activations(tmp_path / "acts.safetensors", acts, meta)
    loaded = load_activations(tmp_path / "acts.safetensors", expected=meta)
    assert set(loaded) == {2, 4} and torch.equal(loaded[4], acts[4])
    with pytest.raises(ValueError, match="other settings.*site"):
        load_activations(tmp_path / "acts.safetensors", expected={**meta, "site": "block_output"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".acts.safetensors.sha256", "acts.safetensors"]
