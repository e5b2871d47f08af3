"""Stage 2, tasks: what a task is (`spec`), the chat format (`prompts`), the built-in world (`world/`)
and the four real benchmarks (`benchmarks/`).

Importing this package loads neither torch nor datasets: the registry is plain Python, so reports and
profile checks can read it cheaply. The world's generator and zoo live in `lsa_utils.tasks.world`, the
benchmark loaders in `lsa_utils.tasks.benchmarks`.
"""

from lsa_utils.tasks.spec import BENCHMARK_TASKS, TASKS, WORLD_TASKS, TaskItem, TaskSpec, UnknownTask, get_task

__all__ = ["BENCHMARK_TASKS", "TASKS", "WORLD_TASKS", "TaskItem", "TaskSpec", "UnknownTask", "get_task"]
