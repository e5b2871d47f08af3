"""The LoRA trainer: what trains, what stays put, and save / load."""

from __future__ import annotations

import pytest
import torch

from lsa_utils.semalign import LayerSource
from lsa_utils.semalign.targets import teacher_targets
from lsa_utils.training.trainer import (
    LoraSpec, NonFiniteTraining, Supervision, TrainSpec, attach_lora, load_result, response_logits, save_result,
    train_lora,
)

STEP = TrainSpec(epochs=1, lr=1e-2, batch_size=4, seed=0)


def test_lora_is_the_identity_at_step_zero(tiny_task, make_tiny):
    tokenizer, items = tiny_task
    student = make_tiny(len(tokenizer))
    wrapped = attach_lora(student, [2], LoraSpec())
    assert torch.equal(response_logits(wrapped, tokenizer, items[:3]), response_logits(student, tokenizer, items[:3]))


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_a_step_changes_only_the_chosen_lora_parameters(tiny_task, make_pair, family):
    tokenizer, items = tiny_task
    student, teacher, M = make_pair(len(tokenizer), family)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    targets = teacher_targets(teacher, tokenizer, items[:4], {2: LayerSource.single(3)}, "block_delta", M)
    result = train_lora(student, tokenizer, items[:4], [2], Supervision(layers=(2,)), targets, STEP)
    assert len(result.log) == 1 and result.log["layer_loss"].notna().all()
    changed = {name for name, p in result.model.named_parameters()
               if "lora_" in name and not torch.all(p == 0) and "lora_B" in name}
    assert changed and all(".layers.1." in name for name in changed)
    lora_names = {name for name, _ in result.model.named_parameters() if "lora_" in name}
    assert not any(".layers.0." in name for name in lora_names)
    assert {m for name in lora_names for m in ("up_proj", "down_proj", "v_proj", "o_proj", "q_proj")
            if m in name} == {"up_proj", "down_proj", "v_proj", "o_proj"}
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())  # the original is untouched
    base = result.model.get_base_model().state_dict()
    assert all(torch.equal(before[k], base[k]) for k in before if k in base)  # frozen weights did not move


@pytest.mark.parametrize(("layer_loss", "output_loss"), [
    ("fisher", "kl_teacher"), ("relation", "ce"), ("mse", "cosine_onehot"), (None, "ce"),
    (None, "ce_kl"),  # the kd control
    ("projected_mse", "ce"),  # layerwise kd: raw teacher states through a learned projection
])
def test_every_loss_trains(tiny_task, make_pair, layer_loss, output_loss):
    tokenizer, items = tiny_task
    student, teacher, M = make_pair(len(tokenizer))
    M = None if layer_loss == "projected_mse" else M
    targets = teacher_targets(teacher, tokenizer, items[:8], {1: LayerSource.single(2), 2: LayerSource.single(3)}, "block_output", M, with_logits=True)
    supervision = Supervision(layers=(1, 2), site="block_output", layer_loss=layer_loss, output_loss=output_loss)
    result = train_lora(student, tokenizer, items[:8], [1, 2], supervision, targets,  # full batch, no dropout
                        TrainSpec(epochs=5, lr=1e-2, batch_size=8), LoraSpec(dropout=0.0))
    assert torch.isfinite(torch.tensor(result.log["loss"].values)).all()
    assert result.log["loss"].iloc[-1] < result.log["loss"].iloc[0]


def test_frontier_schedule_trains_layers_one_after_another(tiny_task, make_pair):
    tokenizer, items = tiny_task
    student, teacher, M = make_pair(len(tokenizer))
    targets = teacher_targets(teacher, tokenizer, items[:8], {1: LayerSource.single(2), 2: LayerSource.single(3)}, "block_delta", M)
    result = train_lora(student, tokenizer, items[:8], [1, 2], Supervision(layers=(1, 2)), targets,
                        TrainSpec(epochs=2, lr=1e-2, batch_size=4, schedule="frontier"))
    assert result.log["stage"].tolist() == [0, 0, 1, 1]


def test_saved_result_reloads_to_the_same_outputs(tiny_task, make_tiny, tmp_path):
    tokenizer, items = tiny_task
    student = make_tiny(len(tokenizer))
    result = train_lora(student, tokenizer, items[:4], [1, 3], Supervision(output_loss="ce", layer_loss=None),
                        spec=STEP)
    save_result(result, tmp_path / "run")
    reloaded = load_result(student, tmp_path / "run")
    assert torch.allclose(response_logits(reloaded, tokenizer, items[:4]),
                          response_logits(result.model, tokenizer, items[:4]), atol=1e-6)
    assert not torch.allclose(response_logits(student, tokenizer, items[:4]),
                              response_logits(result.model, tokenizer, items[:4]))
    assert (tmp_path / "run" / "log.csv").exists()
    weights = tmp_path / "run" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])  # a copy cut short
    with pytest.raises(ValueError, match=rf"{tmp_path / 'run'} is corrupt \(adapter_model.safetensors: checksum"):
        load_result(student, tmp_path / "run")


def test_bad_requests_are_explained(tiny_task, make_tiny):
    tokenizer, items = tiny_task
    student = make_tiny(len(tokenizer))
    with pytest.raises(ValueError, match="must train"):
        train_lora(student, tokenizer, items[:4], [1], Supervision(layers=(2,)), spec=STEP)
    with pytest.raises(ValueError, match="targets=teacher_targets"):
        train_lora(student, tokenizer, items[:4], [2], Supervision(layers=(2,)), spec=STEP)
    with pytest.raises(ValueError, match="schedule 'loop'"):
        train_lora(student, tokenizer, items[:4], [2], Supervision(layer_loss=None, output_loss="ce"),
                   spec=TrainSpec(schedule="loop"))


def test_micro_batches_accumulate_the_whole_batch_update(tiny_task, make_pair):
    """Gradient accumulation (a batch of 8 as 3 + 3 + 2 sequences) gives the one-piece update and loss."""
    tokenizer, items = tiny_task
    student, teacher, M = make_pair(len(tokenizer))
    targets = teacher_targets(teacher, tokenizer, items[:8], {2: LayerSource.single(3)}, "block_delta", M,
                              with_logits=True)
    supervision = Supervision(layers=(2,), layer_loss="cosine", output_loss="ce_kl")
    runs = [train_lora(student, tokenizer, items[:8], [1, 2], supervision, targets,
                       TrainSpec(epochs=2, lr=1e-2, batch_size=8, micro_batch_size=micro), LoraSpec(dropout=0.0))
            for micro in (None, 3)]
    whole, accumulated = ({n: p for n, p in r.model.named_parameters() if "lora_" in n} for r in runs)
    assert all(torch.allclose(whole[n], accumulated[n], atol=1e-5) for n in whole)
    assert runs[0].log["loss"].to_numpy() == pytest.approx(runs[1].log["loss"].to_numpy(), rel=1e-5)
    assert any(not torch.all(p == 0) for n, p in accumulated.items() if "lora_B" in n)  # it did train


def test_a_diverging_run_stops_at_the_first_non_finite_loss(tiny_task, make_tiny):
    tokenizer, items = tiny_task
    student = make_tiny(len(tokenizer))
    spec = TrainSpec(epochs=3, lr=1e30, batch_size=4, seed=0)  # the first update sends LoRA to inf
    with pytest.raises(NonFiniteTraining, match=r"sft on facts: step 2 of 6 \(lr 1e\+30\): the output loss is nan"):
        train_lora(student, tokenizer, items[:8], [1, 2], Supervision(layer_loss=None, output_loss="ce"), None, spec,
                   desc="sft on facts")


@pytest.mark.parametrize("layer_loss", ["cosine", "fisher", "relation", "mse", "projected_mse"])
def test_autocast_trains_a_bf16_student_with_float32_master_weights(tiny_task, make_pair, layer_loss):
    """The real profiles' path: bf16 weights, the forward under autocast, LoRA trained in float32."""
    tokenizer, items = tiny_task
    student, teacher, M = make_pair(len(tokenizer))
    targets = teacher_targets(teacher, tokenizer, items[:8], {2: LayerSource.single(3)}, "block_delta",
                              None if layer_loss == "projected_mse" else M, with_logits=True)
    supervision = Supervision(layers=(2,), layer_loss=layer_loss, output_loss="kl_teacher")
    spec = TrainSpec(epochs=3, lr=1e-2, batch_size=8, autocast=True)
    result = train_lora(student.to(torch.bfloat16), tokenizer, items[:8], [2], supervision, targets, spec,
                        LoraSpec(dropout=0.0))
    lora = {name: p for name, p in result.model.named_parameters() if "lora_" in name}
    assert lora and all(p.dtype == torch.float32 for p in lora.values())
    assert any(not torch.all(p == 0) for name, p in lora.items() if "lora_B" in name)
    assert torch.isfinite(torch.tensor(result.log[["layer_loss", "kl_loss"]].values)).all()
    assert response_logits(result.model, tokenizer, items[:2]).dtype == torch.bfloat16


def test_autocast_computes_in_bf16_and_stays_close_to_float32(tiny_task, make_pair):
    """On a float32 model autocast changes the products (bf16), not the result beyond bf16's precision."""
    tokenizer, items = tiny_task
    student, teacher, M = make_pair(len(tokenizer))
    targets = teacher_targets(teacher, tokenizer, items[:8], {2: LayerSource.single(3)}, "block_delta", M)
    logs = {autocast: train_lora(student, tokenizer, items[:8], [2], Supervision(layers=(2,)), targets,
                                 TrainSpec(epochs=2, lr=1e-2, batch_size=8, autocast=autocast),
                                 LoraSpec(dropout=0.0)).log["loss"].to_numpy() for autocast in (False, True)}
    assert not (logs[True] == logs[False]).all()  # the products did run in bf16
    assert abs(logs[True] - logs[False]).max() < 0.02 * abs(logs[False]).max()
