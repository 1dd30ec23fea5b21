"""`tts-bench report RUN [RUN...]`: rebuild tables, files and plots from graded samples."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from . import app
from ._common import console, user_errors


@app.command()
def report(
    run_dirs: List[Path] = typer.Argument(..., help="One or more run directories"),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the 95% CIs"),
    html: bool = typer.Option(True, "--html/--no-html",
                              help="Write report.html (and comparison.html for several runs)"),
    compare_out: Path = typer.Option(Path("results/comparisons/latest"),
                                     help="Folder for comparison.html when several runs are given"),
) -> None:
    """Recompute metrics from each run's graded samples (samples.parquet) and redraw plots."""
    import pandas as pd

    from ..config import ConfigError
    from ..metrics import compute_curves, reduce_per_problem
    from ..report import metrics_table, write_report
    from ..runner import read_manifest
    from ..runner.pipeline import cfg_ks

    for run_dir in run_dirs:
        with user_errors():
            manifest = read_manifest(run_dir)
            path = run_dir / "samples.parquet"
            if not path.is_file():
                raise ConfigError(f"{run_dir} has no graded samples yet; run: tts-bench grade {run_dir}")
            graded = pd.read_parquet(path)
            per_problem = reduce_per_problem(graded)
            curves = compute_curves(per_problem, cfg_ks(manifest["config"]), n_boot=bootstrap, seed=0)
            write_report(run_dir, graded, per_problem, curves,
                         plot=bool(manifest["config"].get("plot", True)))
            page = None
            if html:
                from ..report.html import render_run_report

                page = render_run_report(run_dir)
        console.print(metrics_table(curves, title=run_dir.name))
        console.print(f"files: {run_dir}/" + (f"  report: {page}" if page else ""))
    if html and len(run_dirs) > 1:
        from ..report.html import render_comparison

        with user_errors():
            page = render_comparison(run_dirs, compare_out)
        console.print(f"comparison: {page}")
