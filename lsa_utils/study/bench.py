"""`make bench`: the package's speed and memory, measured as ratios inside one run.

Machines here are shared and noisy, so every comparison times its two sides in turn (A B A B ...),
repeats, and reports the median of the pair-by-pair ratios; absolute rates are medians too. The models
have the profile's shapes and a world of the profile's size but only a short pretraining (timings do
not depend on what a model knows), so a fresh clone needs no zoo first.

Writes ``results/tables/bench.csv`` (``benchmark, variant, value, unit``; fixed names, so releases
compare) and ``results/BENCH.md`` (the same with each target and whether it is met).

    python -m lsa_utils.study.bench --profile cpu
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lsa_utils.baselines import laten, seeking
from lsa_utils.evaluation.generation import generate
from lsa_utils.evaluation.sandbox import SandboxSession, run_tests
from lsa_utils.infra.cache import atomic_write
from lsa_utils.infra.outputs import save_table
from lsa_utils.infra.paths import PARAMS_DIR, REPO_ROOT, RESULTS_DIR
from lsa_utils.infra.profiles import load_profile, merge_parameters, notebook_parameters
from lsa_utils.models import arch
from lsa_utils.models.batches import collate
from lsa_utils.models.capture import capture, record
from lsa_utils.models.loading import ModelSet, load_models
from lsa_utils.semalign import LayerSource, align_hidden, model_bases, pair_alignment_map
from lsa_utils.semalign.targets import response_states, teacher_targets
from lsa_utils.study.executors import Executor, LocalWorkers
from lsa_utils.study.grid import grid_jobs, run_jobs
from lsa_utils.study.methods import TransferConfig
from lsa_utils.tasks.prompts import evaluation_context
from lsa_utils.tasks.world.zoo import TrainingBudget, train_causal_lm
from lsa_utils.training.trainer import LoraSpec, Supervision, _step_loss, attach_lora

TARGETS = {  # benchmark -> (variant, comparison, bound)
    "capture_overhead_ratio": ("teacher, every layer", "<=", 1.10),
    "train_step_ratio": ("semalign_v1 / sft, same LoRA layers", "<=", 1.25),
    "sandbox_ms_per_program": ("one session", "<=", 10.0),
}
BENCH_PRETRAIN_TOKENS = 65_536  # enough for the timings; the profile's models would take minutes to train
Rows = list[dict]


def _median_ratio(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """(median ratio a/b over interleaved pairs, median seconds of a, median seconds of b), after a warm-up."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(_seconds(a))
        times_b.append(_seconds(b))
    ratios = [ta / tb for ta, tb in zip(times_a, times_b)]
    return statistics.median(ratios), statistics.median(times_a), statistics.median(times_b)


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _row(benchmark: str, variant: str, value: float, unit: str) -> dict:
    return {"benchmark": benchmark, "variant": variant, "value": value, "unit": unit}


def _forward_flops_per_token(model: torch.nn.Module, seq_len: int, layers: int | None = None,
                             with_head: bool = True) -> float:
    """Multiply-adds x 2 of a forward pass per token: projections, MLP, attention scores and, optionally, the head."""
    config = arch.unwrap(model).config
    d, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = d * config.num_key_value_heads // config.num_attention_heads
    per_layer = 2 * (2 * d * d + 2 * d * kv + 3 * d * i) + 4 * seq_len * d
    return (layers if layers is not None else config.num_hidden_layers) * per_layer + (2 * d * v if with_head else 0)


# ---------------------------------------------------------------------------------------------------
# The benchmarks


def capture_and_early_stop(models: ModelSet, items: list, repeats: int) -> Rows:
    """Capture of every layer against a plain forward, and stopping after layer k against the full pass."""
    teacher = models["teacher"]
    inputs = collate(models.tokenizer, items).model_inputs()
    n = arch.n_layers(teacher)
    layers = list(range(1, n + 1))
    with torch.no_grad():
        def plain():
            teacher(**inputs)

        def captured():
            with record(teacher, layers, "block_output"):
                teacher(**inputs)

        ratio, _, _ = _median_ratio(captured, plain, repeats)
        rows = [_row("capture_overhead_ratio", "teacher, every layer", ratio, "ratio")]
        seq = inputs["input_ids"].shape[1]
        full = _forward_flops_per_token(teacher, seq)
        for k in range(1, n):
            ratio, _, _ = _median_ratio(lambda k=k: capture(teacher, inputs, [k]), plain, repeats)
            rows += [_row("early_stop_depth_ratio", f"after layer {k} of {n}: time", ratio, "ratio"),
                     _row("early_stop_depth_ratio", f"after layer {k} of {n}: FLOPs",
                          _forward_flops_per_token(teacher, seq, k, with_head=False) / full, "ratio")]
    return rows


def train_step(models: ModelSet, items: list, repeats: int) -> Rows:
    """One optimiser step's forward and backward: SemAlign v1 against sft, LoRA on the same layer."""
    teacher, student, tokenizer = models["teacher"], models["student"], models.tokenizer
    layer = arch.n_layers(student) // 2
    model = attach_lora(student, [layer], LoraSpec())
    model.train()
    batch = collate(tokenizer, items)
    pairing = {layer: LayerSource.single(arch.n_layers(teacher) // 2)}
    targets = teacher_targets(teacher, tokenizer, items, pairing, "block_delta", pair_alignment_map(teacher, student))
    rows = torch.arange(int(batch.response_mask.sum()))
    semalign = Supervision((layer,), "block_delta", "cosine", "cosine_onehot")
    sft = Supervision((), "block_delta", None, "ce")

    def step(supervision: Supervision) -> Callable[[], None]:
        def run() -> None:
            terms = _step_loss(model, batch, rows, targets, supervision, supervision.layers, torch.nn.ModuleDict(),
                               len(tokenizer))
            sum(terms.values()).backward()
            model.zero_grad(set_to_none=True)
        return run

    ratio, t_semalign, t_sft = _median_ratio(step(semalign), step(sft), repeats)
    return [_row("train_step_ratio", "semalign_v1 / sft, same LoRA layers", ratio, "ratio"),
            _row("train_step_ratio", "sft step", 1000 * t_sft, "ms"),
            _row("train_step_ratio", "semalign_v1 step", 1000 * t_semalign, "ms")]


def align_map(models: ModelSet, items: list, repeats: int) -> Rows:
    """The precomputed M against decomposing over the teacher's bases and recomposing over the student's."""
    teacher, student = models["teacher"], models["student"]
    h = response_states(teacher, models.tokenizer, items, [arch.n_layers(teacher)])[arch.n_layers(teacher)]
    s_t, s_s = model_bases(teacher).float(), model_bases(student).float()
    M = s_s @ s_t.T

    def explicit() -> torch.Tensor:
        coefficients = (h / h.norm(dim=-1, keepdim=True)) @ s_t  # [rows, V]
        return coefficients @ s_s.T

    ratio, _, _ = _median_ratio(explicit, lambda: align_hidden(h, M), repeats)
    difference = (explicit() - align_hidden(h, M)).abs().max().item()
    return [_row("align_map_speedup", f"{len(h)} states, V = {s_t.shape[1]}", ratio, "x"),
            _row("align_map_speedup", "max abs difference", difference, "abs")]


def sandbox(models: ModelSet, n_programs: int) -> Rows:
    """Programs per session against a fresh interpreter per program (the reference solutions' tests)."""
    split = models.tasks["code_complete"]["train"]
    pairs = [(row["answer"], row["test_code"]) for row in split.select(range(min(n_programs, len(split))))]
    with SandboxSession() as session:
        session.run(*pairs[0])
        start = time.perf_counter()
        statuses = [session.run(program, tests).status for program, tests in pairs]
        shared = (time.perf_counter() - start) / len(pairs)
    fresh = statistics.median(_seconds(lambda p=p: run_tests(*p)) for p in pairs[:20])
    assert statuses == ["passed"] * len(pairs), "a reference solution failed in the sandbox"
    return [_row("sandbox_ms_per_program", "one session", 1000 * shared, "ms"),
            _row("sandbox_ms_per_program", "a fresh interpreter each", 1000 * fresh, "ms")]


def grid_workers(models: ModelSet, profile: dict, n_workers: int) -> Rows:
    """The same grid slice in this process (default threads) and on local workers (one thread each).

    Both times include everything a notebook pays: the workers' start and their loading of the models.
    """
    params = notebook_parameters(profile, "04_transfer")
    config = TransferConfig.from_dict(params.get("transfer", {}))
    slice_args = (["sft", "kd", "semalign_v1"], ["facts", "arith", "code_write"], [0, 1], config)

    def timed(executor: Executor, folder: str) -> tuple[float, pd.DataFrame]:
        with tempfile.TemporaryDirectory(prefix=f"lsa-bench-{folder}-") as cache:
            jobs = grid_jobs(models, "teacher", *slice_args, Path(cache), params.get("evaluation", {}),
                             params.get("n_test"))
            start = time.perf_counter()
            table = run_jobs(jobs, executor)
            return time.perf_counter() - start, table

    one, reference = timed(Executor(), "inprocess")
    with LocalWorkers(n_workers) as workers:
        many, table = timed(workers, "local")
    pd.testing.assert_frame_equal(table, reference)  # the executor changes the time, not the table
    return [_row("grid_worker_speedup", f"{n_workers} workers x 1 thread vs 1 process, {len(reference)} runs",
                 one / many, "x"),
            _row("grid_worker_speedup", "1 process", one, "s"),
            _row("grid_worker_speedup", f"{n_workers} workers", many, "s")]


def matmul_peak_gflops(size: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    return 2 * size**3 / statistics.median(_seconds(lambda: a @ b) for _ in range(repeats)) / 1e9


def zoo_training(models: ModelSet, profile: dict, steps: int) -> Rows:
    """Pretraining tokens per second at the profile's shapes and batch, against this machine's matmul peak."""
    budget_params = notebook_parameters(profile, "00_world_and_models")["zoo"]["pretrain"]
    budget = TrainingBudget(**{**budget_params, "tokens": steps * budget_params["batch_size"] * budget_params["seq_len"],
                               "warmup_steps": 1})
    ids = torch.randint(0, len(models.tokenizer), (budget.tokens * 2,))
    peak = matmul_peak_gflops()
    rows = [_row("train_matmul_peak_fraction", "measured fp32 matmul peak", peak, "GFLOP/s")]
    for name in ("student", "teacher"):
        model = copy.deepcopy(models[name])
        seconds = _seconds(lambda: train_causal_lm(model, ids, budget, torch.device("cpu"), f"bench {name}"))
        tokens_per_s = budget.tokens / seconds
        achieved = 3 * _forward_flops_per_token(model, budget.seq_len // 2) * tokens_per_s / 1e9
        rows += [_row("train_tokens_per_s", name, tokens_per_s, "tokens/s"),
                 _row("train_matmul_peak_fraction", name, achieved / peak, "fraction")]
    return rows


def generation(models: ModelSet, n_prompts: int, max_new_tokens: int) -> Rows:
    split = models.tasks["arith"]["test"]
    contexts = [evaluation_context(row) for row in split.select(range(min(n_prompts, len(split))))]
    rows = []
    for name in ("student", "teacher"):
        seconds = _seconds(lambda: generate(models[name], models.tokenizer, contexts, max_new_tokens))
        rows.append(_row("generation_tokens_per_s", f"{name}, {len(contexts)} prompts x {max_new_tokens} tokens",
                         len(contexts) * max_new_tokens / seconds, "tokens/s"))
    return rows


def seeking_search(shape: tuple[int, int] = (5120, 13824), block: tuple[int, int] = (4096, 11008)) -> Rows:
    """The vectorised block search against a loop over every offset, on a Llama-2 13B -> 7B MLP matrix.

    Both read the same 2-D prefix sums and keep the first maximum in row-major order, so they must agree.
    """
    h, w = block
    sensitivity = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    found: dict[str, tuple[int, int]] = {}

    def reference() -> tuple[int, int]:
        prefix = torch.zeros(shape[0] + 1, shape[1] + 1, dtype=torch.float64)
        prefix[1:, 1:] = sensitivity.cumsum(0).cumsum(1)
        p = prefix.numpy()
        best, best_at = -math.inf, (0, 0)
        for row in range(shape[0] - h + 1):
            for col in range(shape[1] - w + 1):
                total = p[row + h, col + w] - p[row, col + w] - p[row + h, col] + p[row, col]
                if total > best:
                    best, best_at = total, (row, col)
        return best_at

    t_reference = _seconds(lambda: found.update(reference=reference()))
    t_vectorised = _seconds(lambda: found.update(vectorised=tuple(seeking.best_block(sensitivity, block))))
    assert found["vectorised"] == found["reference"], f"the searches disagree: {found}"
    return [_row("seeking_search_speedup", f"{h}x{w} block in {shape[0]}x{shape[1]}, same choice",
                 t_reference / t_vectorised, "x")]


def laten_attribution(d: int = 512, n_neurons: int = 1408, vocab: int = 32000, rho: float = 0.10) -> Rows:
    """Scoring every FFN neuron at once against one neuron at a time, with the same ranking (float64)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=n_neurons, num_hidden_layers=1,
                         num_attention_heads=8, num_key_value_heads=8)
    model = LlamaForCausalLM(config).double().eval()
    w_down = arch.projection(model, 1, "down_proj").weight  # [D, n_neurons]
    mid, m, h_final = torch.randn(d, dtype=torch.float64), torch.randn(n_neurons, dtype=torch.float64), \
        torch.randn(d, dtype=torch.float64)
    y, k = 7, math.ceil(rho * n_neurons)
    with torch.no_grad():
        start = time.perf_counter()
        vectorised = laten.contribution_scores(model, mid, (w_down * m).T, y, h_final, "rms")
        t_vectorised = time.perf_counter() - start
        start = time.perf_counter()
        looped = torch.stack([laten.contribution_scores(model, mid, w_down[:, i] * m[i], y, h_final, "rms")
                              for i in range(n_neurons)])
        t_loop = time.perf_counter() - start
    same = torch.equal(vectorised.argsort(descending=True)[:k], looped.argsort(descending=True)[:k])
    assert same, "the vectorised and the looped scores rank the top neurons differently"
    return [_row("laten_attribution_speedup", f"{n_neurons} neurons, D = {d}, V = {vocab}, same top {k}",
                 t_loop / t_vectorised, "x")]


_MEMORY_PROBE = """
import json, re, sys
from pathlib import Path
from lsa_utils.models.loading import load_models
from lsa_utils.semalign import LayerSource
from lsa_utils.semalign.targets import teacher_targets
from lsa_utils.study.methods import TransferConfig, transfer_model
zoo, cache, variant, transfer = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
models = load_models(zoo, cache, "cpu")
teacher, student = models["teacher"], models["student"]
Path("/proc/self/clear_refs").write_text("5")  # restart the peak count: the stage, not the loading
if variant == "transfer":
    transfer_model("semalign_v1", teacher, student, models.tokenizer, models.tasks["facts"], "facts",
                   TransferConfig.from_dict(transfer))
else:
    layers = {k: LayerSource.single(k) for k in range(1, teacher.config.num_hidden_layers + 1)}
    teacher_targets(teacher, models.tokenizer, models.tasks["facts"]["train"], layers, "block_output", None,
                    with_logits=True)
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024)
"""


def peak_memory(zoo: dict, cache_dir: Path, transfer: dict) -> Rows:
    """Peak resident memory of a process while it runs one SemAlign transfer (the profile's budget) or extracts
    every teacher layer with logits on a whole train split (its models loaded before the count starts)."""
    rows = []
    for variant in ("transfer", "extraction"):
        done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, json.dumps(zoo), str(cache_dir), variant,
                               json.dumps(transfer)],
                              capture_output=True, text=True, check=True, cwd=REPO_ROOT)
        rows.append(_row("peak_memory_mb", variant, float(done.stdout.strip().splitlines()[-1]), "MB"))
    return rows


# ---------------------------------------------------------------------------------------------------
# The run


def bench_zoo(profile: dict) -> dict:
    """The profile's world and shapes with a short pretraining, so the benchmark trains its models in seconds."""
    zoo = notebook_parameters(profile, "00_world_and_models")["zoo"]
    short = {"pretrain": {"tokens": BENCH_PRETRAIN_TOKENS}, "code_continuation": {"tokens": BENCH_PRETRAIN_TOKENS // 4}}
    return merge_parameters(zoo, short)


def run(profile_name: str, cache_dir: Path, n_workers: int, quick: bool = False) -> pd.DataFrame:
    """Every benchmark, in a fixed order; ``quick`` shrinks the repeats and shapes (for the tests)."""
    torch.manual_seed(0)
    profile = load_profile(profile_name)
    zoo = bench_zoo(profile)
    models = load_models(zoo, cache_dir, "cpu")
    items = list(models.tasks["facts"]["train"].select(range(32)))
    repeats = 3 if quick else 15
    transfer = notebook_parameters(profile, "04_transfer").get("transfer", {})
    stages: list[tuple[str, Callable[[], Rows]]] = [
        ("capture", lambda: capture_and_early_stop(models, items, repeats)),
        ("train step", lambda: train_step(models, items, repeats)),
        ("align map", lambda: align_map(models, items * 4, repeats)),
        ("sandbox", lambda: sandbox(models, 40 if quick else 300)),
        ("grid workers", lambda: grid_workers(models, profile, n_workers)),
        ("zoo training", lambda: zoo_training(models, profile, 3 if quick else 20)),
        ("generation", lambda: generation(models, 8 if quick else 64, 16 if quick else 48)),
        ("seeking search", lambda: seeking_search(*(((300, 500), (200, 300)) if quick else ()))),
        ("laten attribution", lambda: laten_attribution(*((64, 128, 1000) if quick else ()))),
        ("peak memory", lambda: peak_memory(zoo, cache_dir, transfer)),
    ]
    rows: Rows = []
    for name, stage in stages:
        start = time.perf_counter()
        rows += stage()
        print(f"bench  {name:<18} {time.perf_counter() - start:6.1f}s", flush=True)
    return pd.DataFrame(rows, columns=["benchmark", "variant", "value", "unit"])


def report(table: pd.DataFrame, profile: str, seconds: float) -> str:
    """BENCH.md: every measurement, with the target where there is one and whether it is met."""
    lines = [f"# Benchmarks ({profile} profile)", "",
             f"Written by `make bench` in {seconds / 60:.1f} minutes on {torch.get_num_threads()} threads, ATen at "
             f"{torch.backends.cpu.get_cpu_capability()}. Ratios are "
             "medians of interleaved pairs; see `lsa_utils/study/bench.py` for what each one times.", "",
             "| benchmark | variant | value | unit | target |", "|---|---|---|---|---|"]
    for row in table.itertuples():
        target = TARGETS.get(row.benchmark)
        mark = ""
        if target is not None and target[0] == row.variant:
            met = row.value <= target[2] if target[1] == "<=" else row.value >= target[2]
            mark = f"{target[1]} {target[2]:g}: {'met' if met else 'NOT MET'}"
        lines.append(f"| {row.benchmark} | {row.variant} | {row.value:.4g} | {row.unit} | {mark} |")
    return "\n".join(lines) + "\n"


def targets_met(table: pd.DataFrame) -> dict[str, bool]:
    measured = table.set_index(["benchmark", "variant"])["value"]
    return {name: (measured[(name, variant)] <= bound if op == "<=" else measured[(name, variant)] >= bound)
            for name, (variant, op, bound) in TARGETS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsa_utils.study.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu", help=f"a profile in {PARAMS_DIR.name}/ [cpu]")
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache", help="[.cache/]")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="[results/]")
    parser.add_argument("--workers", type=int, default=2, help="local workers for the grid benchmark [2]")
    parser.add_argument("--quick", action="store_true", help="small repeats and shapes (a check, not a measurement)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    table = run(args.profile, args.cache_dir, args.workers, args.quick)
    save_table(table, args.results_dir / "tables" / "bench.csv")
    with atomic_write(args.results_dir / "BENCH.md") as tmp:
        tmp.write_text(report(table, args.profile, time.perf_counter() - start), encoding="utf-8")
    missed = [name for name, met in targets_met(table).items() if not met]
    print(f"bench  done: {len(table)} rows; targets {'all met' if not missed else 'NOT met: ' + ', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
