"""The zoo: tiny models train, save and load like hub models, and a second load reuses the cache."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from lsa_utils.infra.cache import CorruptCacheEntry, verified
from lsa_utils.tasks.world import zoo as zoo_module
from lsa_utils.tasks.world.zoo import MODEL_NAMES, ZooConfig, load_zoo, model_key, world_key

TINY = {
    "world": {"seed": 0, "n_entities": 30, "n_items": 30, "n_functions": 20, "split_scale": 0.02},
    "student": {"n_layers": 2, "hidden_size": 16, "n_heads": 2, "intermediate_size": 32},
    "teacher": {"n_layers": 3, "hidden_size": 24, "n_heads": 2, "intermediate_size": 48},
    "pretrain": {"tokens": 4096, "batch_size": 4, "seq_len": 32, "warmup_steps": 2},
    "code_continuation": {"tokens": 1024, "batch_size": 4, "seq_len": 32, "warmup_steps": 1},
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo-cache")


@pytest.fixture(scope="module")
def zoo(cache):
    return load_zoo(ZooConfig.from_dict(TINY), cache, torch.device("cpu"))


def test_zoo_shapes_follow_the_config(zoo):
    world, models = zoo
    assert set(models) == set(MODEL_NAMES)
    assert models["student"].config.num_hidden_layers == 2
    assert models["teacher"].config.hidden_size == models["code_teacher"].config.hidden_size == 24
    assert all(m.config.vocab_size == len(world.tokenizer) for m in models.values())
    assert all(m.config.tie_word_embeddings for m in models.values())


def test_code_teacher_starts_from_the_teacher_and_moves_away(zoo):
    _, models = zoo
    teacher, code = models["teacher"].state_dict(), models["code_teacher"].state_dict()
    assert teacher.keys() == code.keys()
    assert any(not torch.equal(teacher[k], code[k]) for k in teacher)


def test_second_load_reuses_the_cache(zoo, cache, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("the zoo retrained although every model was cached")

    monkeypatch.setattr(zoo_module, "train_causal_lm", no_training)
    _, models = zoo
    _, again = load_zoo(ZooConfig.from_dict(TINY), cache, torch.device("cpu"))
    ids = torch.arange(10).unsqueeze(0)
    for name in MODEL_NAMES:
        torch.testing.assert_close(again[name](ids).logits, models[name](ids).logits)


def _overwrite(path: Path, data: bytes) -> None:
    """Damage a cached file as a new file of the same name: the fixture's models map the old one's pages."""
    path.with_name("damaged").write_bytes(data)
    path.with_name("damaged").replace(path)


def test_a_model_overwritten_with_garbage_is_noticed_and_retrained_alone(zoo, cache, monkeypatch):
    """The issue's case: garbage of the same size in a saved model no longer loads silently."""
    _, models = zoo
    entry = cache / "models" / f"student-{model_key(ZooConfig.from_dict(TINY), 'student')}"
    weights = bytearray((entry / "model.safetensors").read_bytes())
    weights[-64:] = b"\x7f" * 64  # float32 3.4e38, as in the issue
    _overwrite(entry / "model.safetensors", bytes(weights))
    trained, train = [], zoo_module.train_causal_lm

    def spy(model, ids, budget, device, desc):
        trained.append(desc)
        return train(model, ids, budget, device, desc)

    monkeypatch.setattr(zoo_module, "train_causal_lm", spy)
    with pytest.warns(CorruptCacheEntry, match=f"cache entry {entry} is corrupt .model.safetensors: checksum"):
        _, again = load_zoo(ZooConfig.from_dict(TINY), cache, torch.device("cpu"))
    assert trained == ["train student"]
    for name in MODEL_NAMES:
        expected = models[name].state_dict()
        assert all(torch.equal(t, expected[k]) for k, t in again[name].state_dict().items())


def test_a_truncated_world_is_rebuilt_and_its_models_reused(zoo, cache, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a model retrained although only the world was damaged")

    world, _ = zoo
    entry = cache / "world" / world_key(ZooConfig.from_dict(TINY))
    corpus = entry / "corpus.safetensors"
    _overwrite(corpus, corpus.read_bytes()[:1000])
    monkeypatch.setattr(zoo_module, "train_causal_lm", no_training)
    with pytest.warns(CorruptCacheEntry, match=f"cache entry {entry} is corrupt .corpus.safetensors: checksum"):
        again, _ = load_zoo(ZooConfig.from_dict(TINY), cache, torch.device("cpu"))
    assert torch.equal(again.corpus_ids, world.corpus_ids)
    assert again.tokenizer.get_vocab() == world.tokenizer.get_vocab()
    again.tasks["facts"]["test"].map(lambda row: {"n": len(row["prompt"])})  # writes no cache file into the entry
    assert verified(entry)


def test_keys_depend_on_what_the_stage_depends_on():
    base = ZooConfig.from_dict(TINY)
    wider_student = ZooConfig.from_dict({**TINY, "student": {**TINY["student"], "hidden_size": 32}})
    assert world_key(base) == world_key(wider_student)
    assert model_key(base, "teacher") == model_key(wider_student, "teacher")
    assert model_key(base, "student") != model_key(wider_student, "student")
    longer_code = ZooConfig.from_dict({**TINY, "code_continuation": {**TINY["code_continuation"], "tokens": 2048}})
    assert model_key(base, "teacher") == model_key(longer_code, "teacher")
    assert model_key(base, "code_teacher") != model_key(longer_code, "code_teacher")


def test_unknown_config_key_is_an_error():
    with pytest.raises(TypeError, match="hidden"):
        ZooConfig.from_dict({"student": {"n_layers": 2, "hidden": 16}})


def test_interrupted_training_leaves_no_checkpoint(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo_module, "train_causal_lm", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_zoo(ZooConfig.from_dict(TINY), tmp_path, torch.device("cpu"))
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_profile_zoo_mirrors_the_papers_setting(profile):
    """Teacher deeper and wider with a non-integer depth ratio; vocabulary over 4x the teacher's width."""
    from lsa_utils.infra.profiles import load_profile
    from lsa_utils.tasks.world import build_world

    config = ZooConfig.from_dict(load_profile(profile)["all"]["zoo"])
    student, teacher = config.student, config.teacher
    assert teacher.n_layers > student.n_layers and teacher.hidden_size > student.hidden_size
    assert teacher.n_layers % student.n_layers != 0
    world = build_world(config.world)
    names = {e.name for e in world.entities} | {i.name for i in world.items} | {f.name for f in world.functions}
    assert len(names) > 4 * teacher.hidden_size


def test_training_is_reproducible(tmp_path):
    """Same config, fresh caches: bit-identical models (initialisation and data order are seeded)."""
    config = ZooConfig.from_dict({**TINY, "code_continuation": {**TINY["code_continuation"], "tokens": 128}})
    first = load_zoo(config, tmp_path / "a", torch.device("cpu"))[1]["student"].state_dict()
    torch.rand(3)  # whatever ran before must not matter
    second = load_zoo(config, tmp_path / "b", torch.device("cpu"))[1]["student"].state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_frequency_terciles_split_items_that_share_a_subject():
    from datasets import Dataset, DatasetDict

    tasks = {"code_complete": DatasetDict({"test": Dataset.from_dict({"frequency": [1.0, 1.0, 1.0, 1.0, 9.0, 9.0]})})}
    items = pd.DataFrame({"model": "m", "task": "code_complete", "item": range(6), "correct": [0, 0, 1, 1, 1, 1]})
    table = zoo_module.scores_by_frequency(items, tasks).set_index("frequency")["score"]
    assert table.to_dict() == {"rare": 0.0, "middle": 100.0, "common": 100.0}


def test_another_world_seed_is_another_world_and_leaves_the_profile_alone():
    """Notebook 00's `world_seeds` (the smoke run trains them: tests/test_notebooks.py) reseed only the world."""
    from lsa_utils.study.world_seeds import seed_zoo

    reseeded = seed_zoo(TINY, 1)
    assert world_key(ZooConfig.from_dict(reseeded)) != world_key(ZooConfig.from_dict(TINY))
    assert reseeded["world"]["seed"] == 1 and TINY["world"]["seed"] == 0  # a copy: the profile is untouched
    assert {k: v for k, v in reseeded.items() if k != "world"} == {k: v for k, v in TINY.items() if k != "world"}