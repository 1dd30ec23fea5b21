"""`tts-bench submit slurm [OVERRIDES] --shards N ...` and `tts-bench merge --shards N [OVERRIDES]`.

    tts-bench submit slurm dataset=math500 budget.n=64 --shards 8 --partition gpu --gpus-per-task 1 \\
        --time 04:00:00 --array-parallelism 4 [--dry-run] [--wait]
    tts-bench submit slurm -m budget.n=16,64 --shards 4      # one array (and merge job) per config

See ``runner/slurm.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import console, user_errors

submit_app = typer.Typer(help="Submit runs to a batch scheduler", no_args_is_help=True)
app.add_typer(submit_app, name="submit")


@submit_app.command("slurm")
def slurm(
    overrides: Optional[List[str]] = typer.Argument(None, help="Hydra overrides, as for tts-bench run"),
    shards: int = typer.Option(..., "--shards", help="Array tasks, each one shard (shard.count=N)"),
    partition: Optional[str] = typer.Option(None, help="Slurm partition"),
    gpus_per_task: Optional[int] = typer.Option(None, "--gpus-per-task", help="GPUs per array task"),
    time_limit: Optional[str] = typer.Option(None, "--time", help="Time limit per task (Slurm format)"),
    array_parallelism: Optional[int] = typer.Option(None, "--array-parallelism",
                                                    help="At most this many tasks at once (%A)"),
    multirun: bool = typer.Option(False, "-m", "--multirun", help="One array per swept config"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print both scripts; submit nothing"),
    wait: bool = typer.Option(False, "--wait", help="Block until each merge job ends; exit with its code"),
) -> None:
    """Write and submit an sbatch array of shard processes and a merge job after it."""
    from ..config import compose, expand_sweep
    from ..runner.pipeline import worker_overrides
    from ..runner.slurm import slurm_scripts, submit

    overrides = list(overrides or [])
    with user_errors():
        jobs = expand_sweep(overrides) if multirun else [overrides]
        cfgs = [compose(worker_overrides(o) + [f"shard.count={shards}"]) for o in jobs]  # validate first
        scripts = [slurm_scripts(c, o, shards=shards, array_parallelism=array_parallelism,
                                 partition=partition, gpus_per_task=gpus_per_task, time_limit=time_limit)
                   for c, o in zip(cfgs, jobs)]
        if dry_run:
            for s in scripts:
                console.rule(f"{s.run_name}: array.sbatch")
                console.print(s.array, markup=False, highlight=False)
                console.rule(f"{s.run_name}: merge.sbatch (after the array: --dependency=afterany)")
                console.print(s.merge, markup=False, highlight=False)
            return
        worst = 0
        for s in scripts:
            array_id, merge_id, code = submit(s, wait=wait)
            line = f"array {array_id} ({shards} shards) -> merge {merge_id}: {s.run_name} (logs {s.folder})"
            if code is not None:
                line += f"; merge exited {code}"
                worst = max(worst, code)
            console.print(line, markup=False, highlight=False)
    if worst:
        raise typer.Exit(worst)


@app.command()
def merge(
    overrides: Optional[List[str]] = typer.Argument(None, help="The overrides the shards ran with"),
    shards: int = typer.Option(..., "--shards", help="How many shards the run was split into"),
) -> None:
    """Check every shard finished (naming the ones that did not), then grade and report once."""
    from ..config import ConfigError, compose
    from ..report import metrics_table
    from ..runner import evaluate, run_name
    from ..runner.pipeline import worker_overrides
    from ..runner.slurm import missing_shards

    with user_errors():
        cfg = compose(worker_overrides(list(overrides or [])))
        run_dir = Path(cfg.runs_dir) / run_name(cfg)
        missing = missing_shards(run_dir, shards)
        if missing:
            raise ConfigError(f"{len(missing)} of {shards} shards did not finish: "
                              f"{', '.join(map(str, missing))}; rerun them (their logs are under "
                              f"results/slurm/{run_dir.name}/), then merge again")
        result = evaluate(run_dir, cfg=cfg, console=console)
    if not result.complete:
        console.print(f"[red]{result.missing} planned samples are missing from the store[/]")
        raise typer.Exit(1)
    console.print(metrics_table(result.metrics, title=run_dir.name))
    console.print(f"files: {run_dir}/")
