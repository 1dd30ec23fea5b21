"""`tts-bench score RUN verifier=NAME [verifier.KEY=VALUE ...]`: score stored samples; never generates."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import console, user_errors


@app.command()
def score(
    run_dir: Path = typer.Argument(..., help="A run directory under results/runs/"),
    overrides: Optional[List[str]] = typer.Argument(
        None, help="verifier=NAME and verifier.* overrides, e.g. verifier=genrm verifier.verifications=4"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar"),
) -> None:
    """Score RUN's stored samples with a verifier, then regrade and rewrite its metrics and report.

    Scores already in the store (same verifier, same samples) are read, not
    recomputed; bon@k and weighted@k then appear in the run's metrics.
    """
    from ..config import ConfigError, config_from_dict, with_verifier
    from ..report import metrics_table
    from ..runner import evaluate
    from ..runner.rundir import RunDir

    with user_errors():
        if not (run_dir / "manifest.json").is_file():
            raise ConfigError(f"{run_dir} is not a run directory (no manifest.json)")
        overrides = list(overrides or [])
        if not any(o.startswith("verifier=") for o in overrides):
            raise ConfigError("name the verifier: tts-bench score RUN verifier=<name> "
                              "(tts-bench list shows them)")
        cfg = with_verifier(config_from_dict(RunDir(run_dir).manifest().config), overrides)
        result = evaluate(run_dir, cfg=cfg, console=console, progress=progress)
    if not result.complete:
        console.print(f"[yellow]{result.missing} planned samples are missing from the store; "
                      f"rerun the run command to generate them, then score again[/]")
        raise typer.Exit(1)
    console.print(metrics_table(result.metrics, title=run_dir.name))
