"""The v1 / v2 losses, CKA's invariances, and the Fisher loss against a finite-difference KL."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lsa_utils.semalign import losses
from lsa_utils.study.cka import cka_matrix, linear_cka

torch.manual_seed(0)


def test_fisher_quadratic_is_the_second_order_expansion_of_kl():
    z_target = torch.randn(6, 30, dtype=torch.float64)
    d = torch.randn(6, 30, dtype=torch.float64)
    p = z_target.softmax(-1)
    for eps in (1e-2, 1e-3):
        kl = F.kl_div((z_target + eps * d).log_softmax(-1), p.log(), log_target=True, reduction="none").sum(-1)
        quadratic = losses.fisher_quadratic(eps * d, p)
        assert torch.allclose(kl / quadratic, torch.ones(6, dtype=torch.float64), atol=20 * eps)


def test_fisher_layer_is_zero_at_the_target_and_ignores_shifts_of_all_logits():
    head = torch.nn.Linear(8, 20, bias=False).double()
    norm = torch.nn.Identity()
    target = torch.randn(4, 8, dtype=torch.float64)
    assert losses.fisher_layer(target.clone().requires_grad_(), target, norm, head).abs() < 1e-12
    d = torch.randn(4, 20, dtype=torch.float64)
    p = torch.rand(4, 20, dtype=torch.float64).softmax(-1)
    assert torch.allclose(losses.fisher_quadratic(d + 5.0, p), losses.fisher_quadratic(d, p))


def test_cosine_losses():
    h = torch.randn(5, 8)
    assert losses.cosine_layer(3 * h, h).abs() < 1e-6
    assert torch.isclose(losses.cosine_layer(-h, h), torch.tensor(2.0))
    labels = torch.tensor([1, 0, 3])
    assert losses.cosine_onehot(F.one_hot(labels, 6).float() * 7, labels).abs() < 1e-6


def test_mse_rescales_the_target_to_the_student_norm():
    h = torch.randn(5, 8)
    assert losses.mse_layer(h, 10 * h).abs() < 1e-10


def test_relation_loss_compares_token_geometry_per_sequence():
    h = torch.randn(7, 8)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8))
    sequence = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    assert losses.relation_layer(h, 2 * h @ rotation, sequence).abs() < 1e-5  # same Gram up to scale
    assert losses.relation_layer(h, torch.randn(7, 8), sequence) > 0.05


def test_kl_teacher_and_ce():
    logits = torch.randn(4, 10)
    assert losses.kl_teacher(logits, logits).abs() < 1e-6
    assert losses.kl_teacher(logits, torch.randn(4, 10)) > 0
    labels = torch.tensor([0, 1, 2, 3])
    assert torch.isclose(losses.cross_entropy(logits, labels), F.cross_entropy(logits, labels))


def test_top_k_kl_is_the_full_kl_at_k_equal_v_and_a_lower_bound_below():
    student, teacher = torch.randn(6, 50), 3 * torch.randn(6, 50)
    full = losses.kl_teacher(student, teacher)
    for k in (50, 10, 1):
        log_p, ids = F.log_softmax(teacher, dim=-1).topk(k, dim=-1)
        top_k = losses.kl_teacher_top_k(student, log_p, ids)
        if k == 50:
            assert torch.isclose(top_k, full, atol=1e-5)
        assert 0 <= top_k <= full + 1e-6
    log_p, ids = F.log_softmax(teacher, dim=-1).topk(10, dim=-1)
    assert losses.kl_teacher_top_k(teacher, log_p, ids).abs() < 1e-5  # the teacher itself: nothing to learn


def test_cka_invariances():
    x = torch.randn(50, 6, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert abs(linear_cka(x, x) - 1) < 1e-12
    assert abs(linear_cka(x, 3.5 * x @ q) - 1) < 1e-12  # orthogonal transform and isotropic scale
    assert abs(linear_cka(x, x + 4.0) - 1) < 1e-12  # translation (centred away)
    stretch = torch.diag(torch.tensor([10.0, 1, 1, 1, 1, 0.1], dtype=torch.float64))
    assert linear_cka(x, x @ stretch) < 0.99  # not invariant to anisotropic scaling
    y = torch.randn(50, 9, dtype=torch.float64)
    assert abs(linear_cka(x, y) - linear_cka(y, x)) < 1e-12
    assert cka_matrix({1: x, 2: y}, {1: x}).shape == (2, 1)


def test_a_registered_layer_loss_is_named_keyed_by_its_source_and_cannot_shadow_a_built_in():
    def gap(h, target):
        return (h - target).abs().mean()

    try:
        losses.register_layer_loss("abs_gap", gap)
        assert losses.layer_loss_names()[-1] == "abs_gap"
        assert "(h - target).abs().mean()" in losses.registered_loss_source("abs_gap")
        assert losses.registered_loss_source("cosine") is None and losses.registered_loss_source(None) is None
        with pytest.raises(ValueError, match="'cosine' is a built-in layer loss"):
            losses.register_layer_loss("cosine", gap)
    finally:
        losses.REGISTERED_LAYER_LOSSES.pop("abs_gap", None)


def test_layer_losses_compute_in_float32_on_bf16_states():
    h, target = torch.randn(6, 8).bfloat16(), torch.randn(6, 8).bfloat16()
    assert losses.cosine_layer(h, target).dtype == torch.float32
    assert losses.mse_layer(h, target).dtype == torch.float32
    assert losses.relation_layer(h, target, torch.tensor([0, 0, 0, 1, 1, 1])).dtype == torch.float32
    assert torch.allclose(losses.cosine_layer(h, target), losses.cosine_layer(h.float(), target.float()))
