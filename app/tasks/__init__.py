"""Tasks: what is computed. One folder per task, each with its `TASK`; the registry dispatches through this table.

Adding a task: a folder with a `TASK` (see `app/tasks/base.py` and docs/adding-a-task.md), and one line here.
"""

from app.tasks import classification, embedding, generation
from app.tasks.base import Task

TASKS: dict[str, Task] = {task.name: task for task in (
    classification.TASK,
    generation.TASK,
    embedding.TASK,
)}
