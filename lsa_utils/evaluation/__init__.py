"""Stage 7, evaluation: one evaluator for every model and task, scored as each task's `TaskSpec` says.

`generation` asks a model for its choice or its continuation, `scoring` turns those into correctness
and scores (and caches them), and `sandbox` runs generated code, which is untrusted, in isolation.
"""
