"""Where each benchmark's rows come from (hub id, configuration, revision) and how they load.

Every part of a benchmark is one `datasets.load_dataset` call: from the hub (or its local cache), or, with
``data_files``, from local JSON-lines / Parquet files in the benchmark's own schema. A part that cannot be
loaded stops with one `BenchmarkUnavailable` naming it and the ways to provide it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset
from datasets import config as datasets_config
from huggingface_hub import HfApi
from huggingface_hub import constants as hub_constants

from lsa_utils.infra.records import SourceUnavailable
from lsa_utils.tasks.benchmarks import gsm8k, humaneval, mbpp, mmlu


@dataclass(frozen=True)
class Part:
    """One split of one hub data set."""

    dataset: str
    config: str | None
    split: str


@dataclass(frozen=True)
class BenchmarkSource:
    """A benchmark's parts and the function that makes its item splits from them.

    revision: the hub revision loaded when a profile does not pin another. ``main`` until a machine with
        network pins a commit: run records state what was requested and each part's fingerprint.
    """

    name: str
    parts: dict[str, Part]
    build: Callable[[Mapping[str, Dataset], int], DatasetDict]
    revision: str = "main"


_MBPP = "google-research-datasets/mbpp"
BENCHMARKS: dict[str, BenchmarkSource] = {
    "mmlu": BenchmarkSource("mmlu", {split: Part("cais/mmlu", "all", split) for split in ("dev", "validation", "test")},
                            mmlu.build_splits),
    "gsm8k": BenchmarkSource("gsm8k", {split: Part("openai/gsm8k", "main", split) for split in ("train", "test")},
                             gsm8k.build_splits),
    # HumanEval has no training split: transfer reads code-instruction items made from MBPP's non-test rows
    "humaneval": BenchmarkSource("humaneval", {"test": Part("openai/openai_humaneval", None, "test"),
                                               **{s: Part(_MBPP, "full", s) for s in ("train", "validation", "prompt")}},
                                 humaneval.build_splits),
    "mbpp": BenchmarkSource("mbpp", {s: Part(_MBPP, "full", s) for s in ("train", "validation", "prompt", "test")},
                            mbpp.build_splits),
}


class BenchmarkUnavailable(SourceUnavailable):
    """A benchmark part is neither reachable on the hub nor in the local cache nor given as files."""


_HOW = ("For a benchmark: run once with network access to fill the cache, point HF_HOME at a machine's copy, "
        "or give the benchmark data_files: {part: path} with local JSON-lines / Parquet files in its own schema")


def _cached(dataset: str) -> bool:
    """Whether the hub cache or datasets' own cache holds anything of ``dataset``."""
    return ((Path(hub_constants.HF_HUB_CACHE) / f"datasets--{dataset.replace('/', '--')}").is_dir()
            or (Path(datasets_config.HF_DATASETS_CACHE) / dataset.replace("/", "___")).is_dir())


def check_available(name: str, revision: str | None = None, data_files: Mapping[str, str | Path] | None = None,
                    seed: int = 0, timeout_s: float = 10.0) -> None:
    """Raise `BenchmarkUnavailable` unless every part is a local file, cached, or on a reachable hub.

    Cheap: file checks, or one metadata request per data set with a timeout; loading itself may still
    find a cache incomplete, and then says so in the same words.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    source = BENCHMARKS[name]
    if data_files is not None:
        problems = []
        if missing := sorted(set(source.parts) - set(data_files)):
            problems.append(f"data_files lacks {', '.join(missing)} (one file per part: {', '.join(source.parts)})")
        if absent := sorted(str(path) for path in data_files.values() if not Path(path).is_file()):
            problems.append(f"no such file: {', '.join(absent)}")
        if problems:
            raise BenchmarkUnavailable(f"benchmark {name}: {'; '.join(problems)}")
        return
    for dataset in dict.fromkeys(part.dataset for part in source.parts.values()):
        if _cached(dataset):
            continue
        if hub_constants.HF_HUB_OFFLINE or datasets_config.HF_HUB_OFFLINE:
            raise BenchmarkUnavailable(f"cannot load benchmark {name} ({dataset}): not in the cache, and the hub "
                                       "is switched off (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)", _HOW)
        try:
            HfApi().dataset_info(dataset, revision=revision or source.revision, timeout=timeout_s)
        except Exception as error:  # any failure to reach the hub means the same thing here
            raise BenchmarkUnavailable(f"cannot load benchmark {name} ({dataset}): not in the cache, and the hub "
                                       f"did not answer ({type(error).__name__})", _HOW) from None


def _local(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.exists():
        raise BenchmarkUnavailable(f"no such file: {path}")
    builder = "parquet" if path.suffix == ".parquet" else "json"
    return load_dataset(builder, data_files=str(path), split="train")


def _hub(part: Part, revision: str) -> Dataset:
    try:
        return load_dataset(part.dataset, part.config, split=part.split, revision=revision)
    except Exception as error:  # datasets and the hub raise a dozen types for "not here"; one message for all
        raise BenchmarkUnavailable(
            f"cannot load {part.dataset} ({part.config or 'default'}, split {part.split}, revision {revision}): "
            f"{type(error).__name__}", _HOW) from error


def load_benchmark(name: str, revision: str | None = None, data_files: Mapping[str, str | Path] | None = None,
                   seed: int = 0) -> DatasetDict:
    """The benchmark's splits (train / align / extract / test) as task items, split as the paper does."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    source = BENCHMARKS[name]
    if data_files is not None:
        missing = set(source.parts) - set(data_files)
        if missing:
            raise BenchmarkUnavailable(f"data_files for {name} lacks {', '.join(sorted(missing))}; "
                                       f"it needs one file per part: {', '.join(source.parts)}")
        raw = {part: _local(data_files[part]) for part in source.parts}
    else:
        raw = {key: _hub(part, revision or source.revision) for key, part in source.parts.items()}
    return source.build(raw, seed)


def source_record(name: str, splits: DatasetDict, revision: str | None = None,
                  data_files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a run record states about a benchmark: ids, configurations, revision (or the local files that
    replaced the hub's), split sizes and fingerprints."""
    source = BENCHMARKS[name]
    hub = {key: f"{p.dataset}/{p.config or 'default'}/{p.split}" for key, p in source.parts.items()}
    parts = {key: f"local file {data_files[key]}" if data_files and key in data_files else where
             for key, where in hub.items()}
    return {"benchmark": name, "revision": None if data_files else revision or source.revision, "parts": parts,
            "splits": {split: {"rows": len(data), "fingerprint": data._fingerprint} for split, data in splits.items()}}
