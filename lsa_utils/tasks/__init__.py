"""Stage 2, tasks: what a task is (`spec`), the chat format (`prompts`), and the built-in world (`world/`).

Importing this package loads neither torch nor datasets: the registry is plain Python, so reports and
profile checks can read it cheaply. The world's generator and zoo live in `lsa_utils.tasks.world`.
"""

from lsa_utils.tasks.spec import TASKS, WORLD_TASKS, TaskItem, TaskSpec, UnknownTask, get_task

__all__ = ["TASKS", "WORLD_TASKS", "TaskItem", "TaskSpec", "UnknownTask", "get_task"]
