"""The runner executes a notebook under a profile and leaves an executed copy and a run record."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from lsa_utils.infra.paths import REPO_ROOT
from lsa_utils.infra.profiles import load_profile
from lsa_utils.infra.runner import (
    KERNEL_NAME, NotebookFailed, _results_dir_parameter, default_notebooks, find_seeds, main, run_notebook,
    sandboxes_used,
)

ECHO = Path(__file__).parent / "fixtures" / "echo.ipynb"
PROFILE = """\
all:
  profile: fixture
  device: cpu
  seed: 7
  world: {n_entities: 3, seed: 11}
echo:
  world: {n_entities: 4}
"""
RECORD_FIELDS = {"notebook", "profile", "parameters", "seeds", "git_commit", "git_dirty", "versions", "device",
                 "started_at", "wall_time_s"}


@pytest.fixture(scope="module", autouse=True)
def kernel() -> None:
    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        pytest.fail(f"Jupyter kernel {KERNEL_NAME!r} is not registered: run `make setup`")


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    path = tmp_path / "fixture.yaml"
    path.write_text(PROFILE.replace("all:\n", f"all:\n  cache_dir: {tmp_path / 'cache'}\n"))
    return path


def test_run_writes_executed_notebook_and_record(tmp_path: Path, profile: Path) -> None:
    results = tmp_path / "results"
    executed = run_notebook(ECHO, profile, results_dir=results)

    assert executed == results / "executed" / "echo.ipynb"
    notebook = json.loads(executed.read_text())
    assert notebook["metadata"]["papermill"]["input_path"] == "tests/fixtures/echo.ipynb"
    echoed = json.loads((results / "echo" / "params.json").read_text())
    assert echoed == {"profile": "fixture", "device": "cpu", "seed": 7, "world": {"n_entities": 4, "seed": 11}}

    record = json.loads((results / "runs" / "echo.json").read_text())
    assert RECORD_FIELDS <= set(record)
    assert record["profile"] == "fixture" and record["device"] == "cpu"
    assert record["parameters"]["results_dir"] == str(results)
    assert record["seeds"] == {"seed": 7, "world.seed": 11}
    assert {"python", "torch", "transformers", "datasets", "peft", "papermill", "numpy"} <= set(record["versions"])
    assert record["wall_time_s"] > 0
    assert sorted(p.name for p in (results / "executed").iterdir()) == ["echo.ipynb"]


def test_failed_run_keeps_the_good_copy_and_everything_the_good_run_wrote(tmp_path: Path, profile: Path) -> None:
    results = tmp_path / "results"
    good = run_notebook(ECHO, profile, results_dir=results).read_bytes()
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    with pytest.raises(NotebookFailed, match="RuntimeError: asked to fail.*echo.failed.ipynb"):
        run_notebook(ECHO, profile, results_dir=results, overrides={"seed": 8, "fail": True})  # fails after writing
    executed = results / "executed"
    assert (executed / "echo.ipynb").read_bytes() == good
    assert sorted(p.name for p in executed.iterdir()) == ["echo.failed.ipynb", "echo.ipynb"]
    after = {p: p.read_bytes() for p in results.rglob("*") if p.is_file() and p.name != "echo.failed.ipynb"}
    assert after == before  # the seed-8 params it wrote never landed
    assert not list(results.glob(".tmp-*"))  # nor is the staging folder left


def test_unknown_parameter_is_named_with_the_valid_ones(tmp_path: Path, profile: Path) -> None:
    with pytest.raises(ValueError, match="n_layers") as info:
        run_notebook(ECHO, profile, results_dir=tmp_path, overrides={"n_layers": 4})
    assert "cache_dir, device, fail, profile, results_dir, seed, world" in str(info.value)
    assert not (tmp_path / "executed").exists()


def test_unknown_profile_section_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("all: {}\nnot_a_notebook: {seed: 1}\n")
    with pytest.raises(ValueError, match="not_a_notebook.*valid sections: all, echo"):
        run_notebook(ECHO, path, results_dir=tmp_path)


def test_cli_prints_one_line_per_notebook(tmp_path: Path, profile: Path, capsys) -> None:
    code = main(["--profile", str(profile), "--device", "cpu", "--results-dir", str(tmp_path), str(ECHO)])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("ok     echo.ipynb [") and "html   " in out
    assert 'href="echo.html"' in (tmp_path / "html" / "index.html").read_text()  # a static copy after every run


def test_results_dir_inside_the_repo_is_passed_relative(tmp_path: Path) -> None:
    assert _results_dir_parameter(REPO_ROOT / "results", REPO_ROOT / "notebooks") == "../results"
    assert _results_dir_parameter(tmp_path, REPO_ROOT / "notebooks") == str(tmp_path)


def test_seeds_are_found_at_any_depth() -> None:
    parameters = {"seed": 1, "zoo": {"pretrain": {"seed": 2, "lr": 0.1}, "split_seed": 3},
                  "seeds": {"world": 4}, "n": 5}
    assert find_seeds(parameters) == {"seed": 1, "zoo.pretrain.seed": 2, "zoo.split_seed": 3, "seeds.world": 4}


@pytest.fixture
def reproduce(profile: Path, tmp_path: Path, capsys):
    """`main` on the echo notebook; returns the first word it printed (ok or skip)."""
    def run(*extra: str, profile_path: Path = profile) -> str:
        assert main(["--profile", str(profile_path), "--device", "cpu", "--results-dir", str(tmp_path),
                     *extra, str(ECHO)]) == 0
        return capsys.readouterr().out.split()[0]
    return run


def test_a_notebook_with_unchanged_inputs_is_skipped(reproduce, tmp_path: Path) -> None:
    assert reproduce() == "ok"
    stamp = json.loads((tmp_path / "cache" / "runs" / "echo.json").read_text())
    assert stamp["outputs"] == ["echo/params.json"]
    assert reproduce() == "skip"
    assert reproduce("--force") == "ok"


def test_without_the_cache_a_notebook_runs_again(reproduce, tmp_path: Path) -> None:
    """The note of a run lives in the cache, so a fresh clone (results, no cache) re-executes."""
    assert reproduce() == "ok"
    shutil.rmtree(tmp_path / "cache")
    assert reproduce() == "ok"


def test_changed_parameters_or_a_lost_output_re_execute(reproduce, tmp_path: Path, profile: Path) -> None:
    assert reproduce() == "ok"
    (tmp_path / "echo" / "params.json").unlink()
    assert reproduce() == "ok"
    changed = tmp_path / "changed.yaml"
    changed.write_text(PROFILE.replace("seed: 7", "seed: 8"))
    assert reproduce(profile_path=changed) == "ok"
    assert json.loads((tmp_path / "echo" / "params.json").read_text())["seed"] == 8


def test_every_notebook_after_one_that_ran_runs_too(tmp_path: Path, capsys) -> None:
    folder, results = tmp_path / "notebooks", tmp_path / "results"
    folder.mkdir()
    for name in ("01_first", "02_second"):
        shutil.copy(ECHO, folder / f"{name}.ipynb")
    profile = tmp_path / "plain.yaml"
    profile.write_text(f"all: {{seed: 1, cache_dir: {tmp_path / 'cache'}}}\n")
    args = ["--profile", str(profile), "--device", "cpu", "--results-dir", str(results),
            *map(str, sorted(folder.glob("*.ipynb")))]

    def first_words() -> list[str]:
        assert main(args) == 0
        return [line.split()[0] for line in capsys.readouterr().out.splitlines()]

    assert first_words() == ["ok", "ok", "html"]
    assert first_words() == ["skip", "skip", "html"]
    (results / "executed" / "01_first.ipynb").unlink()
    assert first_words() == ["ok", "ok", "html"]


def test_the_sandbox_of_each_scoring_notebook_is_what_its_profile_section_says() -> None:
    notebooks = default_notebooks()
    profile = load_profile("smoke", notebooks_dir=notebooks[0].parent)
    assert sandboxes_used(profile, notebooks) == ["bubblewrap"] * 3  # 00, 04 and 05 score models
    profile["04_transfer"]["evaluation"] = {**profile["04_transfer"]["evaluation"], "sandbox": "guard"}
    assert sandboxes_used(profile, notebooks) == ["bubblewrap", "guard", "bubblewrap"]
    assert sandboxes_used(profile, [n for n in notebooks if n.name.startswith(("01", "06"))]) == []


def test_without_bubblewrap_the_run_stops_before_any_notebook_and_names_the_fix(tmp_path: Path) -> None:
    """No `bwrap` on PATH: the preflight stops `python -m lsa_utils` in seconds, before the zoo trains."""
    done = subprocess.run([sys.executable, "-m", "lsa_utils", "--profile", "smoke", "--device", "cpu",
                           "--results-dir", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={"PATH": str(tmp_path), "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("STOPPED before any notebook ran [smoke]:")
    assert "apt-get install bubblewrap" in done.stderr and "sandbox: guard" in done.stderr
    assert not (tmp_path / "out").exists()
