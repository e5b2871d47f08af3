"""Hub or local models for a study: one `ModelSpec` per model, loaded with a pinned revision, a dtype and a
placement, checked as a pair before anything trains.

Example:
    >>> specs = {"teacher": ModelSpec("Qwen/Qwen2.5-1.5B-Instruct", revision="<commit>"),     # doctest: +SKIP
    ...          "student": ModelSpec("Qwen/Qwen2.5-0.5B-Instruct", revision="<commit>")}
    >>> tokenizer, models, records = load_hub_models(specs, torch.device("cuda"))
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from lsa_utils.infra.records import SourceUnavailable
from lsa_utils.models.pair_check import shared_vocabulary

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class ModelSpec:
    """One model of a pair: a hub id or a local folder, and how to load it.

    revision: a hub commit (pin it; a branch name moves). dtype: ``auto`` is bfloat16 on a GPU and float32
    on the CPU. device_map: None puts the model on the study's device; ``auto`` lets accelerate spread a
    model larger than one card over every visible device.
    """

    id: str
    revision: str | None = None
    dtype: str = "auto"
    device_map: str | None = None

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> ModelSpec:
        unknown = set(params) - {"id", "revision", "dtype", "device_map"}
        if unknown or "id" not in params:
            raise ValueError(f"a model needs 'id' and may set revision, dtype, device_map; got {sorted(params)}")
        spec = cls(**params)
        if spec.dtype != "auto" and spec.dtype not in DTYPES:
            raise ValueError(f"dtype {spec.dtype!r} for {spec.id}: choose auto, {', '.join(DTYPES)}")
        return spec

    def torch_dtype(self, device: torch.device) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        return DTYPES[self.dtype]


_HOW = ("For a model: run once with network access to fill the hub cache, point HF_HOME at a machine's copy, "
        "or set the model's id to a local folder saved with save_pretrained")


class ModelUnavailable(SourceUnavailable):
    """A model (or its tokenizer) is neither local nor in the hub cache nor reachable."""


def _unavailable(spec: ModelSpec, reason: Exception | str) -> ModelUnavailable:
    why = reason if isinstance(reason, str) else type(reason).__name__
    return ModelUnavailable(f"cannot load model {spec.id} (revision {spec.revision or 'main'}): {why}", _HOW)


def looks_local(id_or_path: str) -> bool:
    """Whether a model id is meant as a folder (``./m``, ``/abs/m``, ``~/m``, ``a/b/c``) rather than a hub
    id (``org/name``), whether or not that folder exists."""
    return id_or_path.startswith((".", "/", "~")) or id_or_path.count("/") > 1


def check_available(spec: ModelSpec, timeout_s: float = 10.0) -> None:
    """Raise `ModelUnavailable` unless the model is a local folder, in the hub cache, or on a reachable hub.

    Cheap (a file check, or one metadata request with a timeout), so a run can stop within seconds
    instead of after transformers' retries.
    """
    folder = Path(spec.id)
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise _unavailable(spec, "the folder has no config.json (save the model there with save_pretrained)")
        return
    if looks_local(spec.id):
        raise _unavailable(spec, "no such folder")
    if isinstance(try_to_load_from_cache(spec.id, "config.json", revision=spec.revision), str):
        return
    if hub_constants.HF_HUB_OFFLINE:
        raise _unavailable(spec, "not in the hub cache, and HF_HUB_OFFLINE is set")
    try:
        get_hf_file_metadata(hf_hub_url(spec.id, "config.json", revision=spec.revision), timeout=timeout_s)
    except Exception as error:  # any failure to reach the hub means the same thing here
        raise _unavailable(spec, f"not in the hub cache, and the hub did not answer ({type(error).__name__})") from None


def _local_fingerprint(folder: Path) -> str:
    """What identifies a local model's weights in cache keys: names, sizes and modification times of its files."""
    entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    return hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


def load_hub_model(spec: ModelSpec, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The model, in eval mode on ``device`` (or spread by ``device_map``), and its run-record entry."""
    dtype = spec.torch_dtype(device)
    placement = {"device_map": spec.device_map} if spec.device_map else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(spec.id, revision=spec.revision, dtype=dtype, **placement)
    except (OSError, ValueError) as error:  # transformers' "not found / cannot connect" family
        raise _unavailable(spec, error) from error
    if not spec.device_map:
        model.to(device)
    local = Path(spec.id).is_dir()
    commit = getattr(model.config, "_commit_hash", None)
    record = {**asdict(spec), "dtype": str(dtype).removeprefix("torch."), "resolved": commit,
              "key": f"{spec.id}@{_local_fingerprint(Path(spec.id)) if local else commit or spec.revision}",
              "placement": spec.device_map or str(device)}
    return model.eval(), record


def load_tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(spec.id, revision=spec.revision)
    except (OSError, ValueError) as error:
        raise _unavailable(spec, error) from error


def load_hub_models(specs: Mapping[str, ModelSpec], device: torch.device,
                    ) -> tuple[PreTrainedTokenizerBase, dict[str, nn.Module], dict[str, dict[str, Any]]]:
    """(the student's tokenizer, the models by name, their run-record entries), every teacher checked
    against the student (`shared_vocabulary`) before anything else is loaded."""
    if "student" not in specs or len(specs) < 2:
        raise ValueError(f"a pair needs a 'student' and at least one teacher; got {sorted(specs)}")
    tokenizer = load_tokenizer(specs["student"])
    models, records = {}, {}
    for name, spec in specs.items():
        models[name], records[name] = load_hub_model(spec, device)
    for name, spec in specs.items():
        if name != "student":
            shared_vocabulary(models[name], models["student"], tokenizer, load_tokenizer(spec))
    return tokenizer, models, records
