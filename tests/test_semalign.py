"""Each equation of docs/method.md 1.1-1.4 against an independent computation on random matrices."""

from __future__ import annotations

import pytest
import torch

from lsa_utils import align_hidden, alignment_map, layer_attribution, pair_layers, semantic_bases
from lsa_utils.models.batches import collate
from lsa_utils.semalign import LayerSource, critical_layers, recompose
from lsa_utils.semalign.losses import response_loss_per_example

torch.manual_seed(0)


def test_output_bases_give_one_hot_logits_when_the_vocabulary_fits():
    weight = torch.randn(8, 16, dtype=torch.float64)  # V = 8 <= D = 16: W has full row rank
    bases = semantic_bases(weight)  # [16, 8]
    logits = weight @ bases  # column i: logits of basis i, [V, V]
    scale = logits.diagonal()
    assert torch.allclose(logits, torch.diag(scale), atol=1e-10)
    assert (scale > 0).all()


def test_output_bases_are_least_squares_solutions_for_a_large_vocabulary():
    weight = torch.randn(50, 12, dtype=torch.float64)  # V > D: logits can only approximate e_i
    raw = torch.linalg.pinv(weight)
    bases = semantic_bases(weight)
    # normal equations W^T (W s_i - e_i) = 0 for the unnormalised solutions
    assert torch.allclose(weight.T @ (weight @ raw - torch.eye(50, dtype=torch.float64)),
                          torch.zeros(12, 50, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(bases, raw / raw.norm(dim=0), atol=1e-12)


@pytest.mark.parametrize("kind", ["output", "input", "random"])
def test_bases_have_unit_columns(kind):
    bases = semantic_bases(torch.randn(40, 10), kind=kind)
    assert bases.shape == (10, 40)
    assert torch.allclose(bases.norm(dim=0), torch.ones(40), atol=1e-5)


def test_input_bases_are_the_token_vectors_and_fold_norm_uses_the_gain():
    weight = torch.randn(30, 6, dtype=torch.float64)
    assert torch.allclose(semantic_bases(weight, "input"), (weight / weight.norm(dim=1, keepdim=True)).T)
    gain = torch.rand(6, dtype=torch.float64) + 0.5
    folded = semantic_bases(weight, "fold_norm", norm_weight=gain)
    assert torch.allclose(folded, semantic_bases(weight * gain), atol=1e-12)
    with pytest.raises(ValueError, match="norm_weight"):
        semantic_bases(weight, "fold_norm")
    with pytest.raises(ValueError, match="unknown basis kind 'outptu'"):
        semantic_bases(weight, "outptu")


def test_alignment_map_is_decompose_then_recompose():
    s_t = semantic_bases(torch.randn(60, 12, dtype=torch.float64))  # teacher [12, 60]
    s_s = semantic_bases(torch.randn(60, 8, dtype=torch.float64))  # student [8, 60]
    M = alignment_map(s_t, s_s)
    assert M.shape == (8, 12)
    assert torch.allclose(M, s_s @ s_t.T)
    h = torch.randn(5, 12, dtype=torch.float64)
    coefficients = torch.stack([s_t[:, i] @ h.T / h.norm(dim=1) for i in range(60)], dim=1)  # [5, V]
    explicit = coefficients @ s_s.T  # sum_i a_i s_s[:, i]
    assert torch.allclose(align_hidden(h, M), explicit, atol=1e-12)


def test_align_hidden_ignores_the_scale_of_h():
    M = torch.randn(8, 12, dtype=torch.float64)
    h = torch.randn(3, 4, 12, dtype=torch.float64)
    scales = torch.tensor([0.01, 3.0, 250.0], dtype=torch.float64).view(3, 1, 1)
    assert torch.allclose(align_hidden(h * scales, M), align_hidden(h, M), atol=1e-12)
    assert align_hidden(h, M).shape == (3, 4, 8)


def test_alignment_map_rejects_different_vocabularies():
    with pytest.raises(ValueError, match="shared vocabulary"):
        alignment_map(torch.randn(4, 10), torch.randn(4, 11))


def test_recomposition_is_a_psd_map_so_its_cosine_is_never_negative():
    bases = semantic_bases(torch.randn(40, 10))
    h = torch.randn(100, 10)
    cosine = torch.nn.functional.cosine_similarity(recompose(h, bases), h, dim=-1)
    assert (cosine >= -1e-6).all()


@pytest.mark.parametrize(("n_source", "n_target", "expected"), [
    (20, 10, list(range(2, 21, 2))),
    (6, 4, [1, 3, 4, 6]),
    (4, 6, [1, 1, 2, 2, 3, 4]),
])
def test_floor_pairing(n_source, n_target, expected):
    assert pair_layers(n_source, n_target) == [LayerSource.single(layer) for layer in expected]


def _teacher_layers(pairing: list[LayerSource]) -> list[int]:
    assert all(source.layers == (source.a,) for source in pairing)  # every source is a single layer
    return [source.a for source in pairing]


def test_pairing_40_to_32_skips_every_fifth_teacher_layer():
    pairing = _teacher_layers(pair_layers(40, 32))
    assert len(pairing) == 32 and pairing[-1] == 40
    assert sorted(set(range(1, 41)) - set(pairing)) == list(range(4, 40, 5))
    assert pairing == sorted(pairing)


def test_a_skipped_critical_layer_is_served_by_the_next_deeper_student_layer():
    pairing = _teacher_layers(pair_layers(40, 32, critical=[9]))
    assert pairing[7] == 9  # student layer 8 was paired with teacher 10, the first at least as deep
    assert pairing[:7] == _teacher_layers(pair_layers(40, 32))[:7]
    assert _teacher_layers(pair_layers(6, 4, critical=[2])) == [1, 2, 4, 6]
    assert _teacher_layers(pair_layers(6, 4, critical=[3])) == [1, 3, 4, 6]  # already served


def test_interpolated_pairing():
    pairs = pair_layers(6, 4, interpolate=True)
    assert pairs[0] == LayerSource(1, 2, 0.5)  # u = 1.5
    assert pairs[1] == LayerSource(3, 4, 0.0)  # u = 3
    assert pairs[3] == LayerSource(5, 6, 1.0)  # u = 6, a clipped to L_T - 1
    assert [type(source) for source in pairs] == [LayerSource] * 4  # one type for both modes
    with pytest.raises(ValueError, match="critical layer 7"):
        pair_layers(6, 4, critical=[7])


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_layer_attribution_matches_an_independent_grad_times_act(tiny_task, make_tiny, family):
    tokenizer, items = tiny_task
    model = make_tiny(len(tokenizer), n_layers=3, family=family)
    batch = collate(tokenizer, items[:4])
    scores = layer_attribution(model, batch)

    out = model(**batch.model_inputs(), output_hidden_states=True)
    hidden = list(out.hidden_states[1:3])  # blocks 1, 2 (the last entry of HF's tuple is normed)
    loss = response_loss_per_example(out.logits, batch.labels)
    expected = []
    for h in hidden:
        per_example = []
        for i in range(len(batch)):
            (grad,) = torch.autograd.grad(loss[i], h, retain_graph=True)
            mask = batch.response_mask[i]
            per_example.append((h[i] * grad[i]).abs()[mask].sum())
        expected.append(torch.stack(per_example).mean())
    assert scores.shape == (3,)
    assert torch.allclose(scores[:2], torch.stack(expected).detach(), rtol=1e-4)
    assert (scores > 0).all()
    assert critical_layers(scores, 2) == sorted(int(i) + 1 for i in scores.argsort(descending=True)[:2])


def test_attribution_works_on_a_frozen_model(tiny_task, make_tiny):
    tokenizer, items = tiny_task
    model = make_tiny(len(tokenizer))
    model.requires_grad_(False)
    assert (layer_attribution(model, collate(tokenizer, items[:2])) > 0).all()


def test_least_squares_reference_recovers_an_exact_linear_map():
    from lsa_utils.study.analysis import alignment_quality

    teacher = {k: torch.randn(200, 12) for k in (1, 2, 3)}
    W = torch.randn(8, 12)
    student = {1: teacher[1] @ W.T, 2: teacher[3] @ W.T}  # floor pairing (3 -> 2): 1 -> 1, 2 -> 3
    table = alignment_quality(teacher, student, {"random": torch.randn(8, 12)})
    least_squares = table[table["map"] == "least_squares"]
    assert (least_squares["cosine"] > 0.999).all()
    assert list(least_squares["teacher_layer"]) == [1, 3]


def test_served_layers():
    from lsa_utils.semalign import served_layers

    assert served_layers(pair_layers(6, 4), [2]) == [2]  # floor map [1, 3, 4, 6]: layer 2 served by student 2
    assert served_layers(pair_layers(6, 4, critical=[2]), [2]) == [2]
    assert served_layers(pair_layers(6, 4, interpolate=True), [6]) == [4]
    assert served_layers([LayerSource.single(1), LayerSource.single(2)], [5]) == [2]  # deeper than all: the last
