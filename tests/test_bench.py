"""The benchmarks' own checks: the vectorised searches agree with their references; BENCH.md marks targets."""

import pandas as pd

from lsa_utils.study import bench


def test_bench_searches_agree_with_their_references_and_the_report_marks_targets():
    (search,) = bench.seeking_search((60, 90), (40, 50))
    (lens,) = bench.laten_attribution(32, 64, 500)
    assert search["value"] > 0 and lens["value"] > 0  # each asserts that both ways choose the same
    table = pd.DataFrame([bench._row("sandbox_ms_per_program", "one session", 4.0, "ms"),
                          bench._row("capture_overhead_ratio", "teacher, every layer", 1.5, "ratio"),
                          bench._row("train_step_ratio", "semalign_v1 / sft, same LoRA layers", 1.0, "ratio"),
                          search, lens])
    assert bench.targets_met(table) == {"capture_overhead_ratio": False, "train_step_ratio": True,
                                        "sandbox_ms_per_program": True}
    text = bench.report(table, "cpu", 60.0)
    assert "| sandbox_ms_per_program | one session | 4 | ms | <= 10: met |" in text and "NOT MET" in text
