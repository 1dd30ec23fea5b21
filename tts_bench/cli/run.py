"""`tts-bench run [-m] [OVERRIDES...]`: compose, generate what is missing, grade, report."""

from __future__ import annotations

from typing import List, Optional

import typer

from . import app
from ._common import console, user_errors


@app.command(context_settings={"allow_extra_args": False})
def run(
    overrides: Optional[List[str]] = typer.Argument(
        None, help="Hydra overrides, e.g. dataset=gsm8k budget.n=16 strategy.temperature=0.8"
    ),
    multirun: bool = typer.Option(
        False, "-m", "--multirun", help="Sweep comma-separated values (cartesian product)"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar"),
    generate_only: bool = typer.Option(False, "--generate-only", help="Generate and stop: no grading "
                                       "or report (what a launcher's workers do)"),
) -> None:
    """Run an experiment (default: the embedded SmolLM2 model on generated arithmetic)."""
    from ..config import compose, expand_sweep
    from ..runner import run_experiment

    overrides = list(overrides or [])
    with user_errors():
        jobs = expand_sweep(overrides) if multirun else [overrides]
        configs = [compose(o) for o in jobs]  # validate every job before running any
    interrupted = False
    for i, (ov, cfg) in enumerate(zip(jobs, configs)):
        if len(configs) > 1:
            console.rule(f"job {i + 1}/{len(configs)}: {' '.join(ov) or '(defaults)'}")
        with user_errors():
            if cfg.launcher.name == "gpus":
                from ..runner.launcher import launch_gpus

                result = launch_gpus(cfg, ov, progress=progress, console=console)
            else:
                result = run_experiment(cfg, progress=progress, console=console,
                                        evaluate_after=not generate_only)
        if generate_only and not result.gen.interrupted:
            g = result.gen
            console.print(f"generated {g.generated} samples, {g.completion_tokens} tokens; not graded "
                          f"(--generate-only)")
            continue
        _print_result(result)
        if cfg.launcher.name == "gpus" and (result.gen.errors and not result.complete):
            raise typer.Exit(1)
        if result.gen.interrupted:
            interrupted = True
            break
    if interrupted:
        raise typer.Exit(130)


def _print_result(result) -> None:
    from ..report import metrics_table

    g = result.gen
    if g.generated:
        tps = g.completion_tokens / g.engine_seconds if g.engine_seconds else 0.0
        console.print(f"generated {g.generated} samples, {g.completion_tokens} tokens "
                      f"in {g.seconds:.1f}s ({tps:.1f} tok/s)")
    if g.interrupted:
        console.print(f"[yellow]interrupted: {g.generated} samples of this run are stored; "
                      f"run the same command again to resume[/]")
        return
    if not result.complete:
        console.print(f"[yellow]{result.missing} planned samples are not in the store yet "
                      f"(other shards still running?). When all shards finish: "
                      f"tts-bench grade {result.run_dir}[/]")
        return
    console.print(metrics_table(result.metrics, title=result.run_dir.name))
    console.print(f"files: {result.run_dir}/ (manifest.json, samples.parquet, per_problem.parquet, "
                  f"metrics.csv, metrics.json, plot.png, report.html)")
