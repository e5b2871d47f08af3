"""Seeking: the vectorised block search against a slow reference, and identity at step 0."""

from __future__ import annotations

import itertools

import pytest
import torch

from lsa_utils.models import arch
from lsa_utils.models.batches import collate
from lsa_utils.baselines.seeking import best_block, low_rank_factors, plant, select_layers, sensitivities
from lsa_utils.training.trainer import LoraSpec, Supervision, TrainSpec, fit_lora, response_logits

MODULES = ("up_proj", "down_proj", "v_proj", "o_proj")


def reference_block(sensitivity: torch.Tensor, shape: tuple[int, int]) -> tuple[int, int]:
    """Every offset in row-major order, summed directly; strict > keeps the first maximum."""
    best, where = -float("inf"), None
    h, w = shape
    for r, c in itertools.product(range(sensitivity.shape[0] - h + 1), range(sensitivity.shape[1] - w + 1)):
        total = float(sensitivity[r:r + h, c:c + w].double().sum())
        if total > best:
            best, where = total, (r, c)
    return where


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_block_search_matches_the_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    sensitivity = torch.rand(13, 9, generator=generator, dtype=torch.float64)
    for shape in [(1, 1), (4, 3), (13, 9), (6, 9), (13, 2)]:
        assert best_block(sensitivity, shape) == reference_block(sensitivity, shape)


def test_ties_go_to_the_first_offset_in_row_major_order():
    sensitivity = torch.zeros(6, 6, dtype=torch.float64)
    sensitivity[1, 4] = sensitivity[4, 1] = 1.0  # two equally good 2x2 blocks contain one of them each
    assert best_block(sensitivity, (2, 2)) == reference_block(sensitivity, (2, 2)) == (0, 3)
    assert best_block(torch.ones(5, 5), (3, 3)) == (0, 0)
    integer = torch.randint(0, 3, (8, 7), generator=torch.Generator().manual_seed(0)).double()
    assert best_block(integer, (3, 2)) == reference_block(integer, (3, 2))
    with pytest.raises(ValueError, match="does not fit"):
        best_block(torch.ones(3, 3), (4, 1))


def test_layers_are_chosen_by_summed_sensitivity_and_kept_in_order():
    scores = {(k, m): torch.full((2, 2), float(v)) for k, v in zip(range(1, 6), [5, 1, 9, 2, 7]) for m in ("a", "b")}
    assert select_layers(scores, 3) == [1, 3, 5]


def test_low_rank_factors_are_the_truncated_svd():
    block = torch.randn(10, 7, dtype=torch.float64)
    b, a = low_rank_factors(block, 7)
    assert torch.allclose((b @ a).double(), block, atol=1e-5)
    b, a = low_rank_factors(block, 2)
    assert b.shape == (10, 2) and a.shape == (2, 7)
    with pytest.raises(ValueError, match="rank 8"):
        low_rank_factors(block, 8)


def test_planted_student_is_unchanged_at_step_zero_and_carries_the_teacher_blocks(tiny_task, make_tiny):
    tokenizer, items = tiny_task
    student = make_tiny(len(tokenizer), n_layers=2, hidden=16, seed=0)
    teacher = make_tiny(len(tokenizer), n_layers=3, hidden=24, seed=1)
    scores = sensitivities(teacher, collate(tokenizer, items[:4]), MODULES)
    assert all(s.shape == arch.projection(teacher, k, m).weight.shape and (s >= 0).all()
               for (k, m), s in scores.items())
    lora = LoraSpec(rank=8, dropout=0.0)
    model = plant(student, teacher, scores, lora)
    assert torch.allclose(response_logits(model, tokenizer, items[:4]), response_logits(student, tokenizer, items[:4]),
                          atol=1e-5)
    first = select_layers(scores, 2)[0]
    layer = arch.projection(model, 1, "up_proj")
    delta = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * (lora.alpha / lora.rank)
    row, col = best_block(scores[(first, "up_proj")], tuple(layer.base_layer.weight.shape))
    block = arch.projection(teacher, first, "up_proj").weight[row:row + 32, col:col + 16]
    b, a = low_rank_factors(block, 8)
    assert torch.allclose(delta, b @ a, atol=1e-5)
    result = fit_lora(model, tokenizer, items[:4], [1, 2], Supervision(layer_loss=None, output_loss="ce"),
                      spec=TrainSpec(epochs=1, lr=1e-2, batch_size=4))
    assert len(result.log) == 1
