"""`tts-bench grade RUN`: re-grade a run's stored generations; never generates."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from ._common import console, user_errors


@app.command()
def grade(run_dir: Path = typer.Argument(..., help="A run directory under results/runs/")) -> None:
    """Grade the stored samples of RUN and rewrite its metrics, files and plot."""
    from ..report import metrics_table
    from ..runner import evaluate

    with user_errors():
        result = evaluate(run_dir, console=console)
    if not result.complete:
        console.print(f"[yellow]{result.missing} planned samples are missing from the store; "
                      f"rerun the run command to generate them[/]")
        raise typer.Exit(1)
    gs = result.grade_stats
    if gs:
        console.print(f"graded {gs.get('samples')} samples: {gs.get('distinct_pairs')} distinct "
                      f"answers, {gs.get('grader_calls')} grader calls, "
                      f"{gs.get('cache_hits')} cached, {gs.get('timeouts')} timed out")
    console.print(metrics_table(result.metrics, title=run_dir.name))
