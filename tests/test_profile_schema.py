"""A profile is checked against the notebooks' typed parameters before anything runs: one line per problem,
naming the key path as written, the bad value and what is valid."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lsa_utils.infra.paths import NOTEBOOKS_DIR, REPO_ROOT
from lsa_utils.infra.profiles import available_profiles, load_profile
from lsa_utils.infra.runner import run_notebook
from lsa_utils.infra.schema import ProfileError, declared_parameters
from lsa_utils.semalign import PAIRINGS
from lsa_utils.semalign.losses import LAYER_LOSSES
from lsa_utils.study.methods import BASES, METHODS
from lsa_utils.study.profile_schema import PARAMETER_TYPES, check_profile
from lsa_utils.tasks.spec import TASKS, WORLD_TASKS, check_split_counts
from lsa_utils.training.trainer import TrainSpec

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
TINY = """\
all:
  profile: tiny
  device: cpu
  cache_dir: ../.cache
  zoo:
    world: {n_entities: 40, split_scale: 0.02}
03_latent_alignment:
  transfer: &transfer
    train: {epochs: 1, lr: 0.001, batch_size: 8}
    lora: {rank: 4}
04_transfer:
  methods: [student, sft]
  families: [facts]
  seeds: [0]
  n_test: 4
  transfer: *transfer
05_ablations:
  families: [arith]
  ablations: {basis: [output], pairing: [floor], layer_loss: [cosine], n_trained_layers: [1, all]}
"""


def problems(tmp_path: Path, text: str, name: str = "tiny") -> list[str]:
    """The lines of the `ProfileError` that profile ``text`` raises (none: it is valid)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    try:
        check_profile(load_profile(path), NOTEBOOKS_DIR, path.name)
    except ProfileError as error:
        return str(error).splitlines()
    return []


def edited(old: str, new: str, text: str = TINY) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


@pytest.mark.parametrize("name", available_profiles())
def test_every_shipped_profile_fits_the_notebooks(name: str) -> None:
    check_profile(load_profile(name), NOTEBOOKS_DIR, f"{name}.yaml")


def test_the_tiny_profile_fits(tmp_path: Path) -> None:
    assert problems(tmp_path, TINY) == []


def test_every_notebook_parameter_has_a_type() -> None:
    """A parameter added to a notebook without a type here would take anything."""
    declared = {name for notebook in NOTEBOOKS for name in declared_parameters(notebook)}
    assert declared == set(PARAMETER_TYPES)


BAD = [  # (edit of TINY, the key path as written, what the one line must say)
    (("n_test: 4", "n_test: '4'"), "04_transfer.n_test", "'4' is a str, expected an integer"),
    (("epochs: 1,", 'epochs: "1",'), "03_latent_alignment.transfer.train.epochs", "'1' is a str, expected an integer"),
    (("lr: 0.001", "lr: 1e-3"), "03_latent_alignment.transfer.train.lr",
     "'1e-3' is a str, expected a number (YAML reads 1e-3 as a string: write 1.0e-3)"),
    (("epochs: 1,", "epoch: 1,"), "03_latent_alignment.transfer.train.epoch",
     f"unknown key; valid keys: {', '.join(f.name for f in dataclasses.fields(TrainSpec))}"),
    (("families: [facts]", "families: [mmlux]"), "04_transfer.families[0]",
     f"'mmlux' is not a task; valid: {', '.join(TASKS)}"),
    (("families: [arith]", "families: [gsm8k]"), "05_ablations.families[0]",
     f"'gsm8k' is not a task of this profile's models; valid: {', '.join(WORLD_TASKS)}"),
    (("methods: [student, sft]", "methods: [student, sfft]"), "04_transfer.methods[1]",
     f"'sfft' is not a method; valid: {', '.join(METHODS)}"),
    (("basis: [output]", "basis: [outptu]"), "05_ablations.ablations.basis[0]",
     f"'outptu' is not a basis; valid: {', '.join(BASES)}"),
    (("pairing: [floor]", "pairing: [flor]"), "05_ablations.ablations.pairing[0]",
     f"'flor' is not a pairing; valid: {', '.join(PAIRINGS)}"),
    (("layer_loss: [cosine]", "layer_loss: [cosin]"), "05_ablations.ablations.layer_loss[0]",
     f"'cosin' is not a layer loss; valid: {', '.join(LAYER_LOSSES)}"),
    (("n_trained_layers: [1, all]", "n_trained_layers: [1, al]"), "05_ablations.ablations.n_trained_layers[1]",
     "'al' is not a number of layers or 'all'"),
    (("lora: {rank: 4}", "lora: {rank: 4, modules: [up]}"), "03_latent_alignment.transfer.lora.modules[0]",
     "'up' is not a projection"),
    (("n_test: 4", "n_tset: 4"), "04_transfer.n_tset", "unknown key; valid keys: benchmarks, cache_dir"),
    (("n_entities: 40", "n_entities: '40'"), "all.zoo.world.n_entities", "'40' is a str, expected an integer"),
    (("split_scale: 0.02", "split_scal: 0.02"), "all.zoo.world.split_scal",
     "unknown key; valid keys: seed, n_entities"),
    (("  device: cpu\n", "  device: cpu\n  n_items: 3\n"), "all.n_items",
     "every notebook gets the keys of all, but only 01_semantic_bases, 03_latent_alignment declare it: move it to "
     "each section"),
    (("03_latent_alignment:\n", "03_latent_alignment:\n  sites: [block_delta, blok]\n"),
     "03_latent_alignment.sites[1]", "'blok' is not a site; valid: block_output, block_delta, mlp_output"),
    (("04_transfer:\n", "04_transfer:\n  evaluation: {n_samples: 4}\n"), "04_transfer.evaluation",
     "n_samples=4 at temperature 0 repeats one greedy answer"),
]


@pytest.mark.parametrize(("edit", "where", "says"), BAD, ids=[where for _, where, _ in BAD])
def test_a_bad_value_is_one_line_naming_its_path_value_and_the_valid_ones(tmp_path: Path, edit, where, says) -> None:
    """One line even where YAML aliases the bad mapping into another notebook's section (transfer)."""
    lines = problems(tmp_path, edited(*edit))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"profile tiny.yaml: {where}: {says}")


def test_a_zoo_setting_without_its_required_fields_names_them(tmp_path: Path) -> None:
    student = "    student: {n_layers: 2, hidden_size: 16, n_heads: 2}\n"
    lines = problems(tmp_path, edited("    world:", f"{student}    world:"))
    assert lines == ["profile tiny.yaml: all.zoo.student.intermediate_size: missing (required: it has no default)"]


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "all:\n", "all: {}\n04_transfer: {}\n"])
def test_an_empty_profile_is_an_error_naming_the_fix(tmp_path: Path, text: str) -> None:
    lines = problems(tmp_path, text)
    assert len(lines) == 1 and "tiny.yaml is empty" in lines[0] and "params/cpu.yaml" in lines[0]


def test_a_profile_without_its_name_is_an_error(tmp_path: Path) -> None:
    assert problems(tmp_path, edited("  profile: tiny\n", "")) == [
        "profile tiny.yaml: all.profile: missing; name the profile there (it labels every table), e.g. "
        "all: {profile: mine}"]


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = edited("n_test: 4", "n_test: '4'", edited("methods: [student, sft]", "methods: [sfft]"))
    assert [line.split(": ")[1] for line in problems(tmp_path, text)] == ["04_transfer.methods[0]",
                                                                          "04_transfer.n_test"]


PAIR = """\
all:
  profile: pair
  pair:
    teacher: {id: org/teacher}
    student: {id: org/student, dtype: bfloat16}
  benchmarks: {gsm8k: {}, mmlu: {revision: abc}}
04_transfer:
  families: [gsm8k, mmlu]
"""


def test_a_pair_profile_checks_its_models_benchmarks_and_tasks(tmp_path: Path) -> None:
    assert problems(tmp_path, PAIR, "pair") == []
    assert problems(tmp_path, edited("gsm8k: {}", "gsm8kk: {}", PAIR), "pair") == [
        "profile pair.yaml: all.benchmarks.gsm8kk: 'gsm8kk' is not a benchmark; valid: mmlu, gsm8k, humaneval, mbpp"]
    assert problems(tmp_path, edited("dtype: bfloat16", "dtype: bf16", PAIR), "pair") == [
        "profile pair.yaml: all.pair.student.dtype: 'bf16' is not a dtype; valid: auto, bfloat16, float16, float32"]
    assert problems(tmp_path, edited("    teacher: {id: org/teacher}\n", "", PAIR), "pair") == [
        "profile pair.yaml: all.pair: names no teacher; a pair needs teacher and student (any further model is a "
        "code teacher)"]
    assert problems(tmp_path, edited("families: [gsm8k, mmlu]", "families: [gsm8k, facts]", PAIR), "pair") == [
        "profile pair.yaml: 04_transfer.families[1]: 'facts' is not a task of this profile's models; "
        "valid: gsm8k, mmlu"]
    both = problems(tmp_path, edited("  pair:\n", "  zoo: {split_seed: 1}\n  pair:\n", PAIR), "pair")
    assert len(both) == 1 and "set either zoo" in both[0]


def test_run_notebook_checks_before_papermill_starts(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(edited("n_test: 4", "n_test: '4'"))
    with pytest.raises(ProfileError, match=r"04_transfer\.n_test: '4' is a str"):
        run_notebook(NOTEBOOKS_DIR / "04_transfer.ipynb", path, results_dir=tmp_path / "results",
                     check_profile=check_profile)
    assert not (tmp_path / "results").exists()


def test_the_command_line_stops_at_once_and_writes_nothing(tmp_path: Path) -> None:
    """`python -m lsa_utils` on a bad profile: the error lines, no traceback, no results, no cache."""
    profile = tmp_path / "bad.yaml"
    profile.write_text(edited("cache_dir: ../.cache", f"cache_dir: {tmp_path / 'cache'}",
                              edited("epochs: 1,", "epoch: 1,")))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lsa_utils", "--profile", str(profile), "--results-dir",
                           str(tmp_path / "results")], cwd=REPO_ROOT, capture_output=True, text=True, env=env,
                          timeout=120)
    assert time.monotonic() - start < 60  # imports; the check itself takes a fraction of a second
    assert done.returncode == 1
    assert done.stderr.startswith("STOPPED before any notebook ran")
    assert "profile bad.yaml: 03_latent_alignment.transfer.train.epoch: unknown key; valid keys: epochs" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_the_profiles_module_stays_cheap_to_import() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys, lsa_utils.infra.profiles; "
                           "print(sorted({'torch', 'pydantic', 'papermill'} & set(sys.modules)))"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_split_counts_are_checked_where_the_splits_are_known() -> None:
    tasks = {"facts": {"train": range(5), "test": range(3)}}
    check_split_counts(tasks, ["facts"], n_test=3, n_fit=5)
    check_split_counts(tasks, ["facts"], n_test=None)
    with pytest.raises(ValueError) as info:
        check_split_counts(tasks, ["facts", "mmlu"], n_test=4, n_fit=6)
    assert str(info.value).splitlines() == [
        "n_test: 4 is more than the 3 items of the test split of facts; lower n_test (null: the whole split)",
        "n_fit: 6 is more than the 5 items of the train split of facts; lower n_fit",
        "families: 'mmlu' is not a task of these models; valid: facts"]
