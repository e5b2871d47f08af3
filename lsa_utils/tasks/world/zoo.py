"""The model zoo of the built-in world: a student, a teacher and a code teacher trained from scratch.

All three are plain HF ``LlamaForCausalLM`` models built from a config, saved with ``save_pretrained``
and loaded back with ``from_pretrained`` like any hub model. Student and teacher read the same corpus
with the same token budget, so the gap between them comes from scale alone; the code teacher is the
teacher further trained on a code-heavy mix that replays general data.

Every stage is cached on disk under a key of its full configuration and of the zoo's source code
(``stage_digest("zoo")``): the world (tokenizer, task splits, corpus) under ``world/<key>``, each model
under ``models/<name>-<key>``. Entries carry checksums: a damaged one is reported and rebuilt.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import pandas as pd
import torch
import transformers
from datasets import DatasetDict, load_from_disk
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lsa_utils.infra.cache import atomic_dir, config_key, stage_digest, verified
from lsa_utils.infra.numerics import configure_torch
from lsa_utils.infra.progress import progress_bar
from lsa_utils.tasks.spec import WORLD_TASKS, get_task
from lsa_utils.tasks.world import (
    CorpusMix,
    WorldConfig,
    build_task_splits,
    build_tokenizer,
    build_world,
    pretraining_documents,
)

MODEL_NAMES = ("student", "teacher", "code_teacher")
FREQUENCY_TERCILES = ("rare", "middle", "common")  # in order: the x axis of notebook 00's frequency figure
PROGRESS_INTERVAL_S = 5.0  # a zoo trains for minutes: a few updates are enough


@contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """Silence the per-shard progress bars of datasets and transformers while the zoo saves and loads."""
    was_on = datasets.is_progress_bar_enabled(), transformers.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on[0]:
            datasets.enable_progress_bars()
        if was_on[1]:
            transformers.utils.logging.enable_progress_bar()


@dataclass(frozen=True)
class ModelShape:
    n_layers: int
    hidden_size: int
    n_heads: int
    intermediate_size: int


@dataclass(frozen=True)
class TrainingBudget:
    tokens: int
    lr: float = 2e-3
    batch_size: int = 16
    seq_len: int = 128
    warmup_steps: int = 50
    weight_decay: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class ZooConfig:
    """Everything the zoo depends on; its key names the cache entries."""

    world: WorldConfig = field(default_factory=WorldConfig)
    mix: CorpusMix = field(default_factory=CorpusMix)
    student: ModelShape = ModelShape(4, 80, 4, 216)
    teacher: ModelShape = ModelShape(6, 160, 5, 432)
    pretrain: TrainingBudget = TrainingBudget(tokens=1_500_000, lr=4e-3)
    code_mix: CorpusMix = CorpusMix(facts=0.14, arith=0.11, code=0.71, drills=0.04, library_manual=True)
    code_continuation: TrainingBudget = TrainingBudget(tokens=300_000, lr=1e-3, warmup_steps=10)
    split_seed: int = 0

    @classmethod
    def from_dict(cls, params: dict) -> ZooConfig:
        """From a profile's nested ``world`` / ``zoo`` mapping; unknown keys raise ``TypeError``."""
        sub = {"world": WorldConfig, "mix": CorpusMix, "code_mix": CorpusMix, "student": ModelShape,
               "teacher": ModelShape, "pretrain": TrainingBudget, "code_continuation": TrainingBudget}
        return cls(**{k: sub[k](**v) if k in sub else v for k, v in params.items()})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class WorldAssets:
    """What the zoo and the notebooks need of the built-in world: tokenizer, tasks and corpus."""

    tokenizer: PreTrainedTokenizerFast
    tasks: dict[str, DatasetDict]
    corpus_ids: torch.Tensor  # [n_tokens] int64, documents separated by end-of-text


def world_key(config: ZooConfig) -> str:
    return config_key({"world": asdict(config.world), "mix": asdict(config.mix), "code": stage_digest("zoo"),
                       "tokens": config.pretrain.tokens, "split_seed": config.split_seed})


def model_key(config: ZooConfig, name: str) -> str:
    """Key of one model: the world plus its shape and training (the code teacher adds its own)."""
    parts = {"world": world_key(config), "shape": asdict(config.teacher if name != "student" else config.student),
             "pretrain": asdict(config.pretrain)}
    if name == "code_teacher":
        parts |= {"code_mix": asdict(config.code_mix), "continuation": asdict(config.code_continuation)}
    return config_key(parts)


def _tokenize_documents(tokenizer: PreTrainedTokenizerFast, documents: list[str]) -> torch.Tensor:
    ids = tokenizer(documents, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return torch.tensor([t for doc in ids for t in (*doc, eos)], dtype=torch.int64)


def build_or_load_world(config: ZooConfig, cache_dir: Path) -> WorldAssets:
    """The tokenizer, the four task families and the tokenised pretraining corpus (cached).

    The task splits are read into memory: a ``.map`` of them would otherwise write its cache files into the
    checksummed entry, which would then fail verification and be rebuilt.
    """
    path = Path(cache_dir) / "world" / world_key(config)
    if not verified(path):
        world = build_world(config.world)
        tasks = build_task_splits(world, config.split_seed)
        documents = list(pretraining_documents(world, config.mix, config.pretrain.tokens,
                                               seed=config.world.seed, split_seed=config.split_seed))
        task_texts = [f"{row['prompt']} {row['response']}" for dd in tasks.values()
                      for split in dd.values() for row in split]
        tokenizer = build_tokenizer(documents + task_texts)
        with atomic_dir(path, checksum=True) as tmp:
            tokenizer.save_pretrained(tmp / "tokenizer")
            for family, dd in tasks.items():
                dd.save_to_disk(str(tmp / "tasks" / family))
            save_file({"ids": _tokenize_documents(tokenizer, documents)}, tmp / "corpus.safetensors")
            (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    return WorldAssets(
        tokenizer=PreTrainedTokenizerFast.from_pretrained(path / "tokenizer"),
        tasks={family: load_from_disk(str(path / "tasks" / family), keep_in_memory=True)
               for family in WORLD_TASKS},
        corpus_ids=load_file(path / "corpus.safetensors")["ids"],
    )


def code_corpus(config: ZooConfig, tokenizer: PreTrainedTokenizerFast) -> torch.Tensor:
    """The code teacher's continuation data: code-heavy, replaying general documents."""
    world = build_world(config.world)
    documents = list(pretraining_documents(world, config.code_mix, config.code_continuation.tokens,
                                           seed=config.world.seed + 1, split_seed=config.split_seed))
    return _tokenize_documents(tokenizer, documents)


def new_model(shape: ModelShape, tokenizer: PreTrainedTokenizerFast, max_positions: int,
              seed: int) -> LlamaForCausalLM:
    """A Llama with tied embeddings (untied ones lost the facts gap), initialised from ``seed``."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size, num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads, num_key_value_heads=shape.n_heads,
        max_position_embeddings=max_positions, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def _batches(ids: torch.Tensor, budget: TrainingBudget) -> torch.Tensor:
    """[steps, batch, seq_len] windows: shuffled non-overlapping chunks, epochs as needed."""
    window = budget.seq_len
    n_chunks = len(ids) // window
    chunks = ids[: n_chunks * window].view(n_chunks, window)  # [n_chunks, seq_len]
    steps = max(1, budget.tokens // (budget.batch_size * budget.seq_len))
    generator = torch.Generator().manual_seed(budget.seed)
    order = torch.cat([torch.randperm(n_chunks, generator=generator)
                       for _ in range(math.ceil(steps * budget.batch_size / n_chunks))])
    return chunks[order[: steps * budget.batch_size]].view(steps, budget.batch_size, window)


def train_causal_lm(model: LlamaForCausalLM, ids: torch.Tensor, budget: TrainingBudget,
                    device: torch.device, desc: str) -> list[float]:
    """Next-token training with AdamW and a warm-up + cosine schedule; returns the loss per step."""
    torch.manual_seed(budget.seed)
    model.to(device).train()
    batches = _batches(ids, budget)
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr, betas=(0.9, 0.95),
                                  weight_decay=budget.weight_decay)
    n_steps = len(batches)

    def lr_factor(step: int) -> float:
        if step < budget.warmup_steps:
            return (step + 1) / budget.warmup_steps
        progress = (step - budget.warmup_steps) / max(1, n_steps - budget.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    losses: list[float] = []
    bar = progress_bar(batches, desc=desc, unit="step", mininterval=PROGRESS_INTERVAL_S)
    for batch in bar:
        batch = batch.to(device)
        loss = model(input_ids=batch, labels=batch).loss  # the model shifts the labels
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def _save(model: LlamaForCausalLM, path: Path, losses: list[float], seconds: float, tokens: int) -> None:
    with atomic_dir(path, checksum=True) as tmp:
        model.save_pretrained(tmp)
        log = {"losses": losses, "train_seconds": seconds, "tokens": tokens}
        (tmp / "training_log.json").write_text(json.dumps(log))


def _train_and_save(model: LlamaForCausalLM, ids: torch.Tensor, budget: TrainingBudget,
                    device: torch.device, path: Path, desc: str) -> None:
    start = time.perf_counter()
    losses = train_causal_lm(model, ids, budget, device, desc)
    _save(model.cpu(), path, losses, time.perf_counter() - start, budget.tokens)


def load_zoo(config: ZooConfig, cache_dir: Path,
             device: torch.device) -> tuple[WorldAssets, dict[str, LlamaForCausalLM]]:
    """The world and its three models, training (and caching) whatever is missing."""
    configure_torch()
    with quiet_hf_progress():
        return _load_zoo(config, Path(cache_dir), device)


def _load_zoo(config: ZooConfig, cache_dir: Path, device: torch.device) -> tuple[WorldAssets, dict[str, LlamaForCausalLM]]:
    world = build_or_load_world(config, cache_dir)
    paths = {name: cache_dir / "models" / f"{name}-{model_key(config, name)}" for name in MODEL_NAMES}
    max_positions = 2 * config.pretrain.seq_len
    for name in ("student", "teacher"):
        if not verified(paths[name]):
            shape = config.student if name == "student" else config.teacher
            model = new_model(shape, world.tokenizer, max_positions, config.pretrain.seed)
            _train_and_save(model, world.corpus_ids, config.pretrain, device, paths[name], f"train {name}")
    if not verified(paths["code_teacher"]):
        model = LlamaForCausalLM.from_pretrained(paths["teacher"])
        _train_and_save(model, code_corpus(config, world.tokenizer), config.code_continuation, device,
                        paths["code_teacher"], "train code_teacher")
    models = {name: LlamaForCausalLM.from_pretrained(path).to(device).eval() for name, path in paths.items()}
    return world, models


def training_log(config: ZooConfig, cache_dir: Path, name: str) -> dict:
    """The saved loss curve and training time of one model of the zoo."""
    path = Path(cache_dir) / "models" / f"{name}-{model_key(config, name)}" / "training_log.json"
    return json.loads(path.read_text())


def describe_zoo(config: ZooConfig, cache_dir: Path, models: dict[str, LlamaForCausalLM]) -> pd.DataFrame:
    """One row per model: size, shape, training tokens and time."""
    rows = []
    for name, model in models.items():
        log = training_log(config, cache_dir, name)
        rows.append({
            "model": name,
            "n_params": model.num_parameters(),
            "n_params_non_embedding": model.num_parameters() - model.get_input_embeddings().weight.numel(),
            "n_layers": model.config.num_hidden_layers,
            "hidden_size": model.config.hidden_size,
            "vocab_size": model.config.vocab_size,
            "train_tokens": log["tokens"] + (config.pretrain.tokens if name == "code_teacher" else 0),
            "train_minutes": log["train_seconds"] / 60,
        })
    return pd.DataFrame(rows)


def scores_by_frequency(items: pd.DataFrame, tasks: dict[str, DatasetDict], split: str = "test") -> pd.DataFrame:
    """Score per model, task and tercile of the corpus frequency of the item's rarest subject.

    Terciles split the items ranked by frequency (ties in item order), since many items share a subject.
    """
    frames = []
    for task, frame in items.groupby("task", sort=False):
        rank = pd.Series(tasks[task][split]["frequency"]).rank(method="first")
        tercile = pd.qcut(rank, 3, labels=list(FREQUENCY_TERCILES))
        frames.append(frame.assign(frequency=tercile.to_numpy()[frame["item"].to_numpy()]))
    table = pd.concat(frames).groupby(["model", "task", "frequency"], observed=True, sort=False)["correct"].mean()
    return (100 * table).rename("score").reset_index()


def gap_checks(scores: pd.DataFrame, min_gap: float = 15.0, min_above_chance: float = 5.0,
               min_code_gain: float = 10.0) -> pd.DataFrame:
    """The world's design targets: teacher beats student, student beats chance, code teacher beats teacher."""
    wide = scores.pivot(index="task", columns="model", values="score")
    rows = []
    for task, row in wide.iterrows():
        rows.append({"task": task, "check": "teacher - student", "value": row["teacher"] - row["student"],
                     "target": min_gap})
        rows.append({"task": task, "check": "student - chance", "value": row["student"] - get_task(task).chance,
                     "target": min_above_chance})
        if get_task(task).scoring == "program" and "code_teacher" in row:
            rows.append({"task": task, "check": "code_teacher - teacher",
                         "value": row["code_teacher"] - row["teacher"], "target": min_code_gain})
    table = pd.DataFrame(rows)
    return table.assign(met=table["value"] >= table["target"])
