"""`tts-bench list`: the models, datasets, strategies, budgets and engines available."""

from __future__ import annotations

from . import app
from ._common import console


@app.command("list")
def list_cmd() -> None:
    """List the config options of every group, the tasks and the engines."""
    from rich.table import Table

    from ..config import GROUPS, group_options
    from ..dataset import list_tasks, load_task
    from ..engines import ENGINES

    table = Table(title="tts-bench components", show_lines=False)
    table.add_column("group")
    table.add_column("options (use as group=option)")
    for g in GROUPS:
        table.add_row(g, ", ".join(group_options(g)))
    console.print(table)
    tasks = Table(title="tasks (tasks/*.yaml)")
    tasks.add_column("task")
    tasks.add_column("grader")
    tasks.add_column("description")
    for name in list_tasks():
        t = load_task(name)
        tasks.add_row(name, t.grader, t.description)
    console.print(tasks)
    engines = Table(title="engines")
    engines.add_column("engine")
    engines.add_column("what")
    for name, (_, what) in sorted(ENGINES.items()):
        engines.add_row(name, what)
    console.print(engines)
