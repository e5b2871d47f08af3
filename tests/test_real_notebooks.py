"""The hub / local model path end to end: notebooks 00-06 on the `real-smoke` profile (tiny random Qwen2
models saved as checkpoints, benchmark fixtures in each benchmark's schema), and the offline stop of
`make reproduce` on a real profile whose models and data sets are not there."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from real_smoke import build

from lsa_utils.infra.paths import NOTEBOOKS_DIR, REPO_ROOT
from lsa_utils.infra.profiles import load_profile, notebook_parameters
from lsa_utils.infra.runner import run_notebook

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
PROFILE_ROOT = "../.cache/real-smoke"  # where params/real-smoke.yaml expects the files, relative to notebooks/


def _moved(value: Any, root: Path) -> Any:
    """The profile's paths under ``PROFILE_ROOT`` moved to ``root``, in any nested mapping."""
    if isinstance(value, dict):
        return {key: _moved(item, root) for key, item in value.items()}
    return value.replace(PROFILE_ROOT, str(root)) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Write the tiny pair and the fixtures, then run every notebook on them, in order, like `make real-smoke`."""
    root = tmp_path_factory.mktemp("real-smoke")
    build(root)
    common = notebook_parameters(load_profile("real-smoke"), "00_world_and_models")
    overrides = {"cache_dir": str(root / "cache"), "pair": _moved(common["pair"], root),
                 "benchmarks": _moved(common["benchmarks"], root)}
    for notebook in NOTEBOOKS:
        run_notebook(notebook, "real-smoke", results_dir=root / "results", device="cpu", overrides=overrides)
    return root / "results"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_pair_and_records_its_sources(results, notebook):
    executed = nbformat.read(results / "executed" / notebook.name, as_version=4)
    assert all("ename" not in out for cell in executed.cells for out in cell.get("outputs", []))
    sources = json.loads((results / "runs" / f"{notebook.stem}.json").read_text())["sources"]
    if notebook.stem == "06_report":  # reads tables only: it loads no model
        return
    assert sources["kind"] == "pair"
    models = sources["models"]
    assert set(models) == {"teacher", "student", "code_teacher"}
    assert models["teacher"]["dtype"] == "bfloat16" and models["student"]["dtype"] == "float32"
    assert all(m["placement"] == "cpu" and m["id"].endswith(f"models/{name}") for name, m in models.items())
    benchmarks = sources["benchmarks"]
    assert set(benchmarks) == {"mmlu", "gsm8k", "humaneval", "mbpp"}
    gsm8k = benchmarks["gsm8k"]
    assert gsm8k["parts"]["test"].startswith("local file ") and gsm8k["revision"] is None
    assert all(split["rows"] > 0 and split["fingerprint"] for split in gsm8k["splits"].values())


def test_tables_cover_the_benchmarks_and_both_teachers(results):
    models = pd.read_csv(results / "tables" / "models.csv")
    assert set(models["task"]) == {"mmlu", "gsm8k", "humaneval", "mbpp"}
    assert set(models["model"]) == {"teacher", "student", "code_teacher"}
    transfer = pd.read_csv(results / "tables" / "transfer.csv")
    assert set(transfer["teacher"]) == {"teacher", "code_teacher"}
    assert set(transfer.loc[transfer["teacher"] == "code_teacher", "task"]) == {"humaneval", "mbpp"}
    assert transfer["score"].between(0, 100).all()
    quality = pd.read_csv(results / "tables" / "03_alignment_quality.csv")
    assert set(quality["task"]) == {"mmlu", "gsm8k", "humaneval", "mbpp"}
    report = (results / "REPORT.md").read_text()
    assert "### Table 1: teacher -> student" in report and "### Table 2: code teacher -> student" in report
    assert "nan" not in report  # a task where teacher and student tie has no gap to close, said in words


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_offline_a_real_profile_stops_at_once_and_writes_nothing(tmp_path):
    """`make reproduce` on the Qwen profile with an empty hub cache and no network: one message, fast."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    before = _tree(REPO_ROOT / "results")
    start = time.monotonic()
    done = subprocess.run(["make", "-s", "reproduce", "PROFILE=qwen2.5-1.5b-0.5b", f"RESULTS={tmp_path / 'out'}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert time.monotonic() - start < 60
    assert done.returncode != 0
    message = done.stderr
    assert "STOPPED before any notebook ran" in message and "Traceback" not in message + done.stdout
    for missing in ("Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-Coder-1.5B-Instruct",
                    "openai/gsm8k", "cais/mmlu", "openai/openai_humaneval", "google-research-datasets/mbpp"):
        assert missing in message
    assert "HF_HOME" in message and "local folder" in message and "data_files" in message
    assert not (tmp_path / "out").exists() and _tree(REPO_ROOT / "results") == before
