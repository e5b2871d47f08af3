"""Every notebook runs end to end on the smoke profile through the same runner as `make reproduce`."""

from __future__ import annotations

import json
import os

import nbformat
import pandas as pd
import pytest

from lsa_utils.infra.numerics import cpu_name
from lsa_utils.infra.paths import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def results(smoke_results):
    return smoke_results


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_and_leaves_a_run_record(results, notebook):
    executed = nbformat.read(results / "executed" / notebook.name, as_version=4)
    assert all("ename" not in out for cell in executed.cells for out in cell.get("outputs", []))
    record = json.loads((results / "runs" / f"{notebook.stem}.json").read_text())
    assert record["profile"] == "smoke" and record["device"] == "cpu"
    numerics = record["numerics"]
    assert numerics["ATEN_CPU_CAPABILITY"] == os.environ.get("ATEN_CPU_CAPABILITY")
    assert numerics["deterministic"] is True and numerics["threads"] == int(os.environ["LSA_NUM_THREADS"])
    assert numerics["cpu"] == cpu_name()  # MKL's products depend on the CPU's vendor
    if notebook.stem != "06_report":  # every notebook that loads models says which
        sources = record["sources"]
        assert sources["kind"] == "world" and set(sources["models"]) == {"student", "teacher", "code_teacher"}
        assert sources["world"]


MAX_STREAMS = 6  # a few printed summary lines; progress and warnings go elsewhere
NOISE = ("%|", "it/s", "s/it", "Warning", "warn(")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_notebook_is_quiet_and_machine_free(results, notebook):
    """No progress bars or warnings in the executed copy, and no path of the machine that ran it."""
    import sys

    from lsa_utils.infra.paths import REPO_ROOT

    outputs = [out for cell in nbformat.read(results / "executed" / notebook.name, as_version=4).cells
               for out in cell.get("outputs", [])]
    streams = [out for out in outputs if out["output_type"] == "stream"]
    assert len(streams) <= MAX_STREAMS, [out["text"][:200] for out in streams]
    assert not [out["text"][:200] for out in streams if out["name"] == "stderr" or any(n in out["text"] for n in NOISE)]
    text = json.dumps([{k: v for k, v in out.get("data", {}).items() if not k.startswith("image/")}  # base64
                       | {"text": out.get("text", ""), "traceback": out.get("traceback", [])} for out in outputs])
    for path in {str(REPO_ROOT), sys.prefix, str(results.parent), os.path.expanduser("~")} - {"/"}:
        assert path not in text, f"{notebook.name} shows the machine path {path}"


def test_html_index_links_every_notebook_report_and_figure(results):
    import re

    from lsa_utils.infra.html import export_html

    index = export_html(results)
    targets = {(index.parent / link).resolve() for link in re.findall(r'(?:href|src)="([^"]+)"', index.read_text())}
    assert all(target.is_file() for target in targets)
    expected = ({index.parent / f"{nb.stem}.html" for nb in (results / "executed").glob("*.ipynb")}
                | {figure.resolve() for figure in (results / "figures").glob("*.png")}
                | {index.parent / "REPORT.html"})
    assert len(expected) > 10 and expected <= targets
    assert "<h2>Transfer" in (index.parent / "REPORT.html").read_text()  # Markdown rendered, not copied
    assert "cell" in (index.parent / "04_transfer.html").read_text()
    theme = re.compile(r"--jp-layout-color0\s*:")  # a JupyterLab theme variable's definition
    assert theme.search((index.parent / "notebook.css").read_text())  # the lab CSS, written once
    for notebook in (results / "executed").glob("*.ipynb"):
        page = (index.parent / f"{notebook.stem}.html").read_text()
        assert '<link rel="stylesheet" href="notebook.css">' in page and not theme.search(page)


def test_html_notebook_pages_link_only_the_leading_head_css_common_to_all(tmp_path):
    from lsa_utils.infra.html import _share_css

    page = ('<head><style type="text/css">a</style>\n<style>{}</style><script></script><style>c</style></head>'
            "<body><style>c</style></body>")
    pages = _share_css([page.format("b1"), page.format("b2")], tmp_path / "notebook.css")
    assert (tmp_path / "notebook.css").read_text() == "a"
    assert pages[0] == ('<head><link rel="stylesheet" href="notebook.css">\n<style>b1</style><script></script>'
                        "<style>c</style></head><body><style>c</style></body>")


def test_sources_are_output_free():
    for notebook in NOTEBOOKS:
        cells = nbformat.read(notebook, as_version=4).cells
        assert not any(c.get("outputs") or c.get("execution_count") for c in cells if c.cell_type == "code")


def test_models_table_schema(results):
    table = pd.read_csv(results / "tables" / "models.csv")
    assert list(table.columns) == ["profile", "model", "n_params", "n_layers", "hidden_size", "task", "metric", "score"]
    assert set(table["model"]) == {"student", "teacher", "code_teacher"}
    assert set(table["task"]) == {"facts", "arith", "code_complete", "code_write"}
    assert table["score"].between(0, 100).all()
    for figure in ("00_model_scores.png", "00_training_loss.png", "00_scores_by_frequency.png", "00_world_seeds.png"):
        assert (results / "figures" / figure).stat().st_size > 0


def test_world_seed_tables_come_from_workers_and_match_the_studys_own_seed(results):
    """Notebook 00 trains the smoke zoo again on world seeds 0 and 1 in worker processes: seed 0's scores are
    the study's own (models.csv), and the report shows the spread."""
    from lsa_utils.study.report import build_report

    scores = pd.read_csv(results / "tables" / "world_seeds.csv")
    checks = pd.read_csv(results / "tables" / "world_seed_checks.csv")
    assert set(scores["world_seed"]) == set(checks["world_seed"]) == {0, 1}
    models = pd.read_csv(results / "tables" / "models.csv").set_index(["model", "task"])["score"]
    own = scores[scores["world_seed"] == 0].set_index(["model", "task"])["score"]
    pd.testing.assert_series_equal(own.sort_index(), models.sort_index())
    assert "How much the zoo varies with the world seed" in (results / "REPORT.md").read_text()
    assert set(checks["check"]) == {"teacher - student", "student - chance", "code_teacher - teacher"}
    assert "world seed" not in build_report(results, "another profile")  # each profile reports its own zoo


def test_analysis_tables_schema(results):
    tables = results / "tables"
    recomposition = pd.read_csv(tables / "01_recomposition.csv")
    assert set(recomposition["basis"]) == {"output", "input", "random"}
    assert set(recomposition["model"]) == {"teacher", "student"}
    assert recomposition["cosine"].between(-1e-6, 1 + 1e-6).all()  # S S^T is PSD: never negative
    attribution = pd.read_csv(tables / "02_attribution.csv")
    assert set(attribution["task"]) == {"facts", "arith", "code_complete", "code_write"}
    assert (attribution.groupby("task")["share"].sum() - 1).abs().max() < 1e-3  # 4 digits in the CSV
    pairing = pd.read_csv(tables / "02_pairing.csv")
    assert (pairing.groupby("task")["trains"].sum() >= 1).all()
    quality = pd.read_csv(tables / "03_alignment_quality.csv")
    assert set(quality["map"]) == {"semalign", "random_bases", "least_squares"}
    assert set(quality["site"]) == {"block_delta", "block_output"} and set(quality["pairing"]) == {"semalign plan", "floor"}
    trains = quality[quality["at_training_site"]]
    assert set(trains["site"]) == {"block_delta"} and set(trains["task"]) == set(attribution["task"])
    cka = pd.read_csv(tables / "03_cka.csv")
    assert cka["cka"].between(-1e-6, 1 + 1e-6).all()
    for figure in ("01_recomposition_cosine", "02_attribution", "02_pairing", "03_alignment_quality", "03_cka"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 0


def test_transfer_table_schema_controls_and_verdicts(results):
    from lsa_utils.study.methods import CONTROLS, METHODS

    table = pd.read_csv(results / "tables" / "transfer.csv", dtype={"correct": str})
    assert list(table.columns) == ["profile", "teacher", "student", "task", "kind", "method", "seed", "metric",
                                   "score", "train_score", "correct"]
    table1 = table[table["teacher"] == "teacher"]
    assert set(table1["method"]) == set(METHODS) | set(CONTROLS)
    assert set(table1.loc[table1["kind"] == "control", "method"]) == set(CONTROLS)
    assert set(table1["task"]) == {"facts", "arith", "code_complete", "code_write"}
    trained = table1[~table1["method"].isin(["student", "teacher"])]
    assert (trained.groupby(["method", "task"])["seed"].nunique() >= 2).all()
    table2 = table[table["teacher"] == "code_teacher"]
    assert set(table2["task"]) == {"code_complete", "code_write"} and "teacher" in set(table2["method"])
    assert table["score"].between(0, 100).all() and table["train_score"].between(0, 100).all()
    # the stored item bits are the score: 4 test items per run on the smoke profile
    bits = table["correct"].str
    assert (bits.len() == 4).all()
    assert (100 * bits.count("1") / bits.len() == table["score"]).all()
    verdicts = pd.read_csv(results / "tables" / "04_verdicts.csv")
    assert {"method", "kind", "mean_difference", "low", "high", "mdd", "clusters_for_target",
            "verdict"} <= set(verdicts.columns)
    assert set(verdicts.loc[verdicts["kind"] == "control", "method"]) == set(CONTROLS)
    assert "sft" not in set(verdicts["method"]) and not set(verdicts["method"]) & {"student", "teacher"}


def test_ablations_table_and_report(results):
    table = pd.read_csv(results / "tables" / "ablations.csv")
    assert {"factor", "level", "task", "seed", "score"} <= set(table.columns)
    assert set(table["factor"]) == {"basis", "n_trained_layers"}  # the smoke profile's two factors
    assert (results / "figures" / "05_ablation_basis.png").stat().st_size > 0
    report = (results / "REPORT.md").read_text()
    for heading in ("## Transfer", "### Table 1", "### Table 2", "Can the budget move the score?",
                    "Verdicts: each method against sft", "MDD", "-> for MDD 5 |", "oracle (control)", "## Ablations",
                    "re-checked", "## Figures"):
        assert heading in report
    assert "reported" in report and "52.90" in report  # the paper's teacher MMLU, labelled as reported


def test_every_executor_gives_the_same_table(results, tmp_path):
    """In this process (default threads), local workers (one thread each) and submitit jobs agree exactly."""
    import submitit

    from lsa_utils.infra.profiles import load_profile, notebook_parameters
    from lsa_utils.models.loading import load_models
    from lsa_utils.study.executors import Cluster, Executor, LocalWorkers
    from lsa_utils.study.grid import grid_jobs, run_jobs
    from lsa_utils.study.methods import TransferConfig

    params = notebook_parameters(load_profile("smoke"), "04_transfer")
    models = load_models(params["zoo"], results.parent / "cache", "cpu")
    config = TransferConfig.from_dict(params["transfer"])

    def table(executor, name, methods=("student", "sft", "seeking", "semalign_v1"), families=("facts", "code_write")):
        jobs = grid_jobs(models, "teacher", methods, families, [0, 1], config, tmp_path / name, params["evaluation"],
                         params["n_test"])
        return run_jobs(jobs, executor)

    reference = table(Executor(), "inprocess")
    assert len(reference) == 14 and reference["score"].notna().all()
    with LocalWorkers(n_workers=2) as workers:
        pd.testing.assert_frame_equal(table(workers, "local"), reference)
    cluster = Cluster(tmp_path, executor=submitit.LocalExecutor(folder=tmp_path / "submitit"), timeout_min=10)
    small = reference[reference["method"].isin(["sft", "semalign_v1"]) & (reference["task"] == "facts")]
    pd.testing.assert_frame_equal(table(cluster, "cluster", ("sft", "semalign_v1"), ("facts",)),
                                  small.reset_index(drop=True))

    class NothingToRun(Executor):
        def map_unordered(self, fn, items):
            assert list(items) == []  # every run is in the cache already
            return iter(())

    pd.testing.assert_frame_equal(table(NothingToRun(), "local"), reference)
