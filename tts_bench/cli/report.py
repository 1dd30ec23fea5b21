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
    import pyarrow.parquet as pq

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
            # Every column but the texts (metrics never read them; millions of them are GiBs).
            cols = [c for c in pq.read_schema(path).names if c != "text"]
            curves = measure_and_report(run_dir, pd.read_parquet(path, columns=cols), n_boot=bootstrap,
                                        plot=None if html else False, samples_written=True)
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


def _levels(run_dir: Path, has_levels: bool):
    """A strategy run's per-problem values per level (None for runs without levels)."""
    import pandas as pd

    from ..metrics.allocation import level_values
    from ..runner import read_manifest

    if not has_levels:
        return None
    return level_values(pd.read_parquet(run_dir / "samples.parquet"), read_manifest(run_dir)["strategy"])


def _equal_compute(run_dirs: list[Path], runs: dict, points, out: Path) -> None:
    """Accuracy at equal compute across (policy, verifier, strategy) runs; Snell's choice by difficulty."""
    import pandas as pd

    from ..metrics.allocation import (
        compute_optimal_across_runs,
        cost_column,
        equal_compute_table,
        family_configs,
    )
    from ..metrics.difficulty import oracle_difficulty
    from ..report.figures import equal_compute_figure
    from ..runner import read_manifest
    from ..store import atomic_write_bytes

    labels = {}
    for d in run_dirs:
        m = read_manifest(d)
        labels[d.name] = {"policy": m["config"]["model"]["name"],
                          "verifier": (m.get("verifier") or {}).get("name", "none")}
    table = equal_compute_table(points, labels)
    if table.empty:
        return
    atomic_write_bytes(out / "equal_compute.csv", table.to_csv(index=False).encode())
    equal_compute_figure(table, out / "equal_compute")
    col = cost_column(points)
    configs = []
    for name, r in runs.items():
        per = r["per_problem"] if r["levels"] is None else pd.concat([r["per_problem"], r["levels"]])
        if col in r["cost"].columns:
            configs.append(family_configs(name, per, r["cost"], col))
    first = pd.read_parquet(run_dirs[0] / "per_problem.parquet")
    if configs:
        optimal = compute_optimal_across_runs(pd.concat(configs, ignore_index=True), oracle_difficulty(first))
        if not optimal.empty:
            atomic_write_bytes(out / "compute_optimal.csv", optimal.to_csv(index=False).encode())
    console.print(f"equal compute ({col}): {out / 'equal_compute.csv'}; compute-optimal by difficulty: "
                  f"{out / 'compute_optimal.csv'}")


def _frontiers(run_dirs: list[Path], out: Path) -> None:
    """Pareto frontier across the runs' strategies and budgets, and the Kinetics frontier."""
    import pandas as pd

    from ..metrics.pareto import cross_run_frontiers
    from ..metrics.registry import SELECTION_STRATEGIES
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
            pts_cost = pts[[c for c in ("metric", "k", "tokens", "flops", "total_flops") if c in pts]]
            costs = pd.concat([costs, pts_cost], ignore_index=True)
            names |= set(pts["metric"])
        if "total_flops" in costs.columns:  # a verifier's FLOPs count where a metric used one
            costs["flops"] = costs["total_flops"].fillna(costs["flops"])
        per_problem = pd.read_parquet(d / "per_problem_metrics.parquet")
        runs[d.name] = {
            "curves": curves,
            "cost": costs,
            "per_problem": per_problem,
            "tokens": pp.set_index("problem_id")["completion_tokens_mean"],
            "levels": _levels(d, own.is_file()),
        }
    points, kinetics = cross_run_frontiers(runs, strategies=sorted(names))
    atomic_write_bytes(out / "frontier.csv", points.to_csv(index=False).encode())
    _equal_compute(run_dirs, runs, points, out)
    if not kinetics.empty:
        atomic_write_bytes(out / "kinetics_frontier.csv", kinetics.to_csv(index=False).encode())
    best = points[points["on_frontier"]]
    console.print("Pareto frontier across runs (accuracy vs expected completion tokens):")
    console.print(best[["run", "metric", "k", "tokens", "value"]].to_string(
        index=False, float_format=lambda v: f"{v:.4g}"), markup=False)
    console.print(f"frontiers: {out / 'frontier.csv'}, {out / 'kinetics_frontier.csv'}")
