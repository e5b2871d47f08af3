"""Teacher targets: capture the paired teacher layers, map them into the student's space, cache them.

A `TargetSet` holds, for every student layer SemAlign supervises, the aligned teacher state at every
response position of the transfer items (rows in item order), and optionally the teacher's logits
there: all of them [rows, V] (the world's vocabularies are small) or, with ``top_k``, the teacher's k most
likely ids and their log-probabilities [rows, k] (a hub vocabulary of 152k ids would take about 90 GB for
1000 GSM8K items). It is computed once per (pair, items, pairing, site, map, source code) and stored as
safetensors with its metadata and a checksum, so every seed and every method that needs the same targets
reads them from disk, and a damaged file is recomputed.

`response_states` is the one reader of a model's own activations at response positions; the analyses
of notebooks 01-03 and the least-squares map use it directly, `teacher_targets` maps what it reads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from lsa_utils.infra.cache import atomic_write, config_key, stage_digest, verified
from lsa_utils.models import arch
from lsa_utils.models.batches import iterate_batches
from lsa_utils.models.capture import record
from lsa_utils.semalign.bases import align_hidden
from lsa_utils.semalign.pairing import LayerSource
from lsa_utils.tasks.spec import TaskItem

Pairing = Mapping[int, LayerSource]  # student layer -> its teacher source


@dataclass
class TargetSet:
    """Aligned teacher activations at the response positions of every item, rows in item order."""

    layers: dict[int, Tensor]  # student layer -> [n_rows, D_S]
    offsets: Tensor  # [n_items + 1]: item i owns rows offsets[i]:offsets[i + 1]
    logits: Tensor | None = None  # [n_rows, V] teacher logits, or [n_rows, k] top-k log-probabilities
    logit_ids: Tensor | None = None  # [n_rows, k] the top-k ids (None: ``logits`` covers every id)

    def rows(self, items: Sequence[int]) -> Tensor:
        return torch.cat([torch.arange(self.offsets[i], self.offsets[i + 1]) for i in items])

    def permuted(self, seed: int) -> TargetSet:
        """The same rows in a seeded random order across all items: each response position gets the target
        (and logits) of a random position of the transfer set, so nothing item-specific of the teacher remains."""
        order = torch.randperm(int(self.offsets[-1]), generator=torch.Generator().manual_seed(seed))
        def rows(t: Tensor | None) -> Tensor | None:
            return t[order] if t is not None else None
        return TargetSet({k: v[order] for k, v in self.layers.items()}, self.offsets, rows(self.logits),
                         rows(self.logit_ids))

    def save(self, path: Path, metadata: Mapping[str, object]) -> None:
        extra = {"offsets": self.offsets, "logits": self.logits, "logit_ids": self.logit_ids}
        save_activations(path, {**self.layers, **{k: v for k, v in extra.items() if v is not None}}, metadata)

    @classmethod
    def load(cls, path: Path, expected: Mapping[str, object]) -> TargetSet:
        tensors = load_activations(path, expected)
        return cls({k: v for k, v in tensors.items() if isinstance(k, int)}, tensors["offsets"], tensors.get("logits"),
                   tensors.get("logit_ids"))


def _response_batches(model: nn.Module, tokenizer: PreTrainedTokenizerBase, items: Sequence[TaskItem],
                      layers: Sequence[int], site: str, with_logits: bool, batch_size: int
                      ) -> Iterator[tuple[dict[int, Tensor], Tensor | None, list[int]]]:
    """Per batch: ``{layer: [rows, D]}`` at the response positions, the logits there [rows, V shared] on the
    model's device (or None), and the number of response positions of each item. Stops after the deepest
    layer unless logits are needed."""
    device = arch.input_device(model)
    for _, batch in iterate_batches(tokenizer, items, batch_size):
        batch = batch.to(device)
        with record(model, layers, site, stop_after_last=not with_logits) as acts:
            out = model(**batch.model_inputs())
        mask = batch.response_mask
        logits = out.logits[mask.to(out.logits.device)][:, : len(tokenizer)].float() if with_logits else None
        yield {k: acts[k][mask.to(acts[k].device)] for k in layers}, logits, mask.sum(dim=1).tolist()


def _kept_logits(logits: Tensor, top_k: int | None) -> tuple[Tensor, Tensor | None]:
    """What a target set stores of [rows, V] logits (on CPU): all of them, or the top k log-probabilities
    and their ids."""
    if top_k is None:
        return logits.cpu(), None
    values, ids = torch.log_softmax(logits, dim=-1).topk(min(top_k, logits.shape[-1]), dim=-1)
    return values.cpu(), ids.cpu()


@torch.no_grad()
def response_states(model: nn.Module, tokenizer: PreTrainedTokenizerBase, items: Sequence[TaskItem],
                    layers: Sequence[int] | None = None, site: str = "block_output",
                    batch_size: int = 32) -> dict[int, Tensor]:
    """A model's own activations at every response position: ``{layer: [rows, D]}`` (float32, CPU).

    ``layers`` defaults to every layer; rows are the items' response positions in item order.
    """
    layers = list(range(1, arch.n_layers(model) + 1)) if layers is None else list(layers)
    per_layer: dict[int, list[Tensor]] = {k: [] for k in layers}
    for acts, _, _ in _response_batches(model, tokenizer, items, layers, site, False, batch_size):
        for k in layers:
            per_layer[k].append(acts[k].float().cpu())
    return {k: torch.cat(v) for k, v in per_layer.items()}


@torch.no_grad()
def teacher_targets(teacher: nn.Module, tokenizer: PreTrainedTokenizerBase, items: Sequence[TaskItem],
                    pairing: Pairing, site: str, M: Tensor | None, with_logits: bool = False,
                    batch_size: int = 32, top_k: int | None = None) -> TargetSet:
    """Teacher activations at the paired layers, interpolated if asked, mapped by ``M`` (None: as is), and
    with ``with_logits`` its logits (every one, or the ``top_k`` most likely)."""
    sources = sorted({layer for source in pairing.values() for layer in source.layers})
    per_layer: dict[int, list[Tensor]] = {k: [] for k in pairing}
    all_logits, all_ids, counts = [], [], []
    for acts, logits, item_counts in _response_batches(teacher, tokenizer, items, sources, site, with_logits,
                                                       batch_size):
        counts += item_counts
        for k, source in pairing.items():
            h = source.mix(acts).float()  # [rows, D_T]
            per_layer[k].append((align_hidden(h, M) if M is not None else h).cpu())
        if with_logits:
            kept, ids = _kept_logits(logits, top_k)
            all_logits.append(kept)
            all_ids.append(ids)
    offsets = torch.tensor([0, *counts]).cumsum(0)
    return TargetSet({k: torch.cat(v) for k, v in per_layer.items()}, offsets,
                     torch.cat(all_logits) if with_logits else None,
                     torch.cat(all_ids) if with_logits and top_k is not None else None)


def cached_teacher_targets(cache: Path | None, metadata: Mapping[str, object], teacher: nn.Module,
                           tokenizer: PreTrainedTokenizerBase, items: Sequence[TaskItem], pairing: Pairing,
                           site: str, M: Tensor | None, with_logits: bool = False,
                           top_k: int | None = None) -> TargetSet:
    """:func:`teacher_targets`, stored under ``cache`` (a directory) by a key of ``metadata`` and the items.

    ``metadata`` must identify the teacher and the map (model, revision, basis...); site, pairing, a hash
    of the items' texts and of the code that computes targets are added here and checked again on load.
    """
    if cache is None:
        return teacher_targets(teacher, tokenizer, items, pairing, site, M, with_logits, top_k=top_k)
    texts = [f"{item['prompt']}\x00{item['response']}" for item in items]
    meta = {**metadata, "site": site,
            "pairing": json.dumps({str(k): source.to_json() for k, source in pairing.items()}),
            "data": data_hash(texts), "logits": with_logits, "top_k": top_k, "code": stage_digest("targets")}
    path = Path(cache) / f"targets-{config_key({k: str(v) for k, v in meta.items()})}.safetensors"
    if verified(path):
        return TargetSet.load(path, meta)
    targets = teacher_targets(teacher, tokenizer, items, pairing, site, M, with_logits, top_k=top_k)
    targets.save(path, meta)
    return targets


def cached_tensors(directory: Path | None, kind: str, metadata: Mapping[str, object],
                   compute: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """``compute()``, stored under ``directory`` by a key of ``kind`` and ``metadata``, and read back next time.

    For teacher statistics that no seed changes (attribution, Seeking's sensitivities): ``metadata`` must
    identify the teacher and the data; a hash of the code that computes them is added, and all of it is
    checked again on load.
    """
    if directory is None:
        return compute()
    meta = {"kind": kind, **metadata, "code": stage_digest("statistics")}
    path = Path(directory) / f"{kind}-{config_key({k: str(v) for k, v in meta.items()})}.safetensors"
    if verified(path):
        return load_activations(path, meta)
    tensors = compute()
    save_activations(path, tensors, meta)
    return tensors


def data_hash(texts: Sequence[str]) -> str:
    """A short fingerprint of the texts a cached activation set was computed from."""
    return hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()[:16]


def save_activations(path: Path, tensors: Mapping[int | str, Tensor], metadata: Mapping[str, object]) -> None:
    """Write tensors (int keys are layers) to safetensors with string metadata (model, site, layers, data...)
    and a checksum (see `lsa_utils.infra.cache.verified`)."""
    named = {f"layer.{k}" if isinstance(k, int) else k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    layers = ",".join(str(k) for k in tensors if isinstance(k, int))
    meta = {key: str(value) for key, value in metadata.items()} | {"layers": layers}
    with atomic_write(Path(path), checksum=True) as tmp:
        save_file(named, tmp, metadata=meta)


def load_activations(path: Path, expected: Mapping[str, object] | None = None) -> dict[int | str, Tensor]:
    """Read what :func:`save_activations` wrote; a metadata mismatch with ``expected`` is an error."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    stale = {k: (meta.get(k), str(v)) for k, v in (expected or {}).items() if meta.get(k) != str(v)}
    if stale:
        raise ValueError(f"cached activations {path} were made for other settings {stale} "
                         "(stored, wanted): delete the file or change the cache directory")
    return {int(name.removeprefix("layer.")) if name.startswith("layer.") else name: t
            for name, t in load_file(path).items()}
