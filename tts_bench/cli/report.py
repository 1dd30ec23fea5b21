"""`tts-bench report RUN [RUN...]`: rebuild metrics, tables and plots from graded samples.

With several runs it also compares them: comparison.html on the problems
all runs share, and a paired difference (with a bootstrap 95% CI) of every
metric of each run against the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import console, user_errors


@app.command()
def report(
    run_dirs: List[Path] = typer.Argument(..., help="One or more run directories"),
    bootstrap: Optional[int] = typer.Option(
        None, min=0, help="Bootstrap resamples for the 95% CIs (default: each run's own bootstrap setting)"),
    html: bool = typer.Option(True, "--html/--no-html",
                              help="Write report.html (and comparison.html for several runs)"),
    compare_out: Path = typer.Option(Path("results/comparisons/latest"),
                                     help="Folder for comparison.html when several runs are given"),
) -> None:
    """Recompute every metric from each run's graded samples (samples.parquet) and redraw plots."""
    import pandas as pd

    from ..config import ConfigError
    from ..report import metrics_table
    from ..runner import read_manifest
    from ..runner.pipeline import measure_and_report

    for run_dir in run_dirs:
        with user_errors():
            read_manifest(run_dir)  # a clear error if this is not a run directory
            path = run_dir / "samples.parquet"
            if not path.is_file():
                raise ConfigError(f"{run_dir} has no graded samples yet; run: tts-bench grade {run_dir}")
            curves = measure_and_report(run_dir, pd.read_parquet(path), n_boot=bootstrap,
                                        plot=None if html else False)
        console.print(metrics_table(curves, title=run_dir.name))
        page = run_dir / "report.html"
        console.print(f"files: {run_dir}/" + (f"  report: {page}" if html and page.is_file() else ""))
    if len(run_dirs) > 1:
        if bootstrap is None:  # the paired differences follow the baseline run's setting
            bootstrap = int(read_manifest(run_dirs[0])["config"].get("bootstrap", 1000))
            if bootstrap == 0:
                bootstrap = 1000
                console.print("paired differences need resamples and the baseline run has bootstrap=0: "
                              "using 1000 (choose with --bootstrap)")
        _compare(run_dirs, compare_out, bootstrap, html)


def _compare(run_dirs: list[Path], out: Path, n_boot: int, html: bool) -> None:
    import pandas as pd

    from ..config import ConfigError
    from ..metrics import compare_runs, summarize_comparison
    from ..store import atomic_write_bytes

    with user_errors():
        frames = []
        for d in run_dirs:
            p = d / "per_problem_metrics.parquet"
            if not p.is_file():
                raise ConfigError(f"{d} has no per_problem_metrics.parquet; run: tts-bench grade {d}")
            frames.append(pd.read_parquet(p))
        tables = []
        for d, cand in zip(run_dirs[1:], frames[1:]):
            try:
                result = compare_runs(frames[0], cand, n_boot=n_boot, seed=0)
            except ValueError as e:
                raise ConfigError(f"cannot compare {run_dirs[0].name} with {d.name}: {e}") from None
            console.print(f"[bold]{d.name}[/] vs baseline [bold]{run_dirs[0].name}[/]")
            console.print(summarize_comparison(result), markup=False, highlight=False)
            tables.append(result.table.assign(baseline_run=run_dirs[0].name, candidate_run=d.name))
        atomic_write_bytes(out / "paired.csv", pd.concat(tables).to_csv(index=False).encode())
        _multi_temperature(run_dirs, out)
        _frontiers(run_dirs, out)
        if html:
            from ..report.html import render_comparison

            page = render_comparison(run_dirs, out)
            console.print(f"comparison: {page}")
        console.print(f"paired differences: {out / 'paired.csv'}")


def _multi_temperature(run_dirs: list[Path], out: Path) -> None:
    """Runs of one model and dataset at several temperatures: union coverage."""
    import pandas as pd

    from ..metrics.selection import multi_temperature_coverage
    from ..runner import read_manifest
    from ..runner.pipeline import cfg_ks
    from ..store import atomic_write_bytes

    manifests = [read_manifest(d) for d in run_dirs]
    same = {(m["model"]["fingerprint"], m["config"]["dataset"]["name"]) for m in manifests}
    temps = [float(m["config"]["strategy"]["temperature"]) for m in manifests]
    if len(same) != 1 or len(set(temps)) < 2 or len(set(temps)) != len(temps):
        return
    pools = {t: pd.read_parquet(d / "per_problem.parquet") for t, d in zip(temps, run_dirs)}
    ks = sorted(set.intersection(*(set(cfg_ks(m["config"])) for m in manifests)))
    table = multi_temperature_coverage(pools, ks)
    if table.empty:
        return
    atomic_write_bytes(out / "multi_temperature.csv", table.to_csv(index=False).encode())
    console.print(f"multi-temperature union coverage (k samples at each of T={temps}):")
    console.print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"), markup=False)


def _frontiers(run_dirs: list[Path], out: Path) -> None:
    """Pareto frontier across the runs' strategies and budgets, and the Kinetics frontier."""
    import pandas as pd

    from ..metrics.analyze import SELECTION_STRATEGIES
    from ..metrics.pareto import cross_run_frontiers
    from ..store import atomic_write_bytes

    runs = {}
    names = set(SELECTION_STRATEGIES)
    for d in run_dirs:
        cost = d / "analysis" / "cost.csv"
        if not cost.is_file():
            return
        pp = pd.read_parquet(d / "per_problem.parquet")
        curves, costs = pd.read_csv(d / "metrics.csv"), pd.read_csv(cost)
        own = d / "analysis" / "strategy_cost.csv"
        if own.is_file():  # a strategy's levels (budgets, depths) as points: metric = strategy, k = level
            sc = pd.read_csv(own)
            pts = sc.rename(columns={"strategy": "metric", "level": "k", "accuracy": "value"})
            curves = pd.concat([curves, pts[["metric", "k", "value"]]], ignore_index=True)
            costs = pd.concat([costs, pts[[c for c in ("metric", "k", "tokens", "flops") if c in pts]]],
                              ignore_index=True)
            names |= set(pts["metric"])
        runs[d.name] = {
            "curves": curves,
            "cost": costs,
            "per_problem": pd.read_parquet(d / "per_problem_metrics.parquet"),
            "tokens": pp.set_index("problem_id")["completion_tokens_mean"],
        }
    points, kinetics = cross_run_frontiers(runs, strategies=sorted(names))
    atomic_write_bytes(out / "frontier.csv", points.to_csv(index=False).encode())
    if not kinetics.empty:
        atomic_write_bytes(out / "kinetics_frontier.csv", kinetics.to_csv(index=False).encode())
    best = points[points["on_frontier"]]
    console.print("Pareto frontier across runs (accuracy vs expected completion tokens):")
    console.print(best[["run", "metric", "k", "tokens", "value"]].to_string(
        index=False, float_format=lambda v: f"{v:.4g}"), markup=False)
    console.print(f"frontiers: {out / 'frontier.csv'}, {out / 'kinetics_frontier.csv'}")
