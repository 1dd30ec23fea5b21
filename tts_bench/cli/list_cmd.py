"""`tts-bench list`: the models, datasets, strategies, budgets, engines and verifiers available."""

from __future__ import annotations

from . import app
from ._common import console


@app.command("list")
def list_cmd() -> None:
    """List the config options of every group, the tasks and the engines."""
    from rich.table import Table

    from ..config import GROUPS, group_options
    from ..dataset import list_tasks, load_task
    from ..engines import ENGINES, engine_capabilities

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
    from ..strategies import STRATEGIES

    strategies = Table(title="strategies (strategy.name; conf/strategy/*.yaml pick one)")
    strategies.add_column("strategy")
    strategies.add_column("needs from the engine")
    strategies.add_column("what")
    for name, cls in sorted(STRATEGIES.items()):
        needs = ", ".join(cls.needs) or "-"
        if getattr(cls, "uses_verifier", False):
            needs += " (and verifier=...)"
        strategies.add_row(name, needs, cls.summary)
    console.print(strategies)
    engines = Table(title="engines")
    engines.add_column("engine")
    engines.add_column("can")
    engines.add_column("what")
    from ..config import compose

    for name, (_, what) in sorted(ENGINES.items()):
        try:
            caps = engine_capabilities(compose([f"engine={name}"]).engine)
            can = ", ".join(n for n in caps.names() if getattr(caps, n))
        except Exception:  # noqa: BLE001 - listing must not fail on one engine
            can = "?"
        engines.add_row(name, can, what)
    console.print(engines)
    verifiers = Table(title="verifiers (verifier=option; a finished run: tts-bench score RUN verifier=...)")
    for col in ("verifier", "kind", "model", "reads", "aggregate"):
        verifiers.add_column(col)
    for name in group_options("verifier"):
        v = compose([f"verifier={name}"]).verifier
        model = getattr(v, "path", None) or getattr(v, "served_model", None) or \
            (getattr(v, "model_path", None) or "the run's model" if v.kind == "genrm" else "-")
        reads = {"genrm": "P(Yes) after the verification prompt", "none": "-"}.get(
            v.kind, f"{getattr(v, 'readout', '')} at {getattr(v, 'score_at', '')}")
        verifiers.add_row(name, v.kind, str(model), reads, v.aggregate)
    console.print(verifiers)

