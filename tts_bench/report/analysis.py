"""Write a run's analysis tables and figures, and hand them to the HTML report.

    extra_tables, extra_figures = write_analysis(run_dir, analysis)
    render_run_report(run_dir, extra_tables=extra_tables, extra_figures=extra_figures)

Files: analysis/<table>.csv for every table, per_problem_metrics.parquet
(problem_id, metric, k, value: the input of paired comparisons), and
plots/{frontier_tokens,frontier_flops,coverage_fit,difficulty}.png|svg.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from ..store import atomic_write_bytes
from .figures import cost_figure, difficulty_figure, fit_figure

TITLES = {
    "cost": "Cost per strategy and k (tokens, FLOPs, eFLOPs)",
    "frontier": "Pareto frontier: accuracy vs tokens (and FLOPs)",
    "coverage_fit": "Coverage law fit exp(a k^b)",
    "arise": "ARISE over the k levels",
    "difficulty": "Accuracy by difficulty (quantile bins of pass@1, 1 = easiest)",
    "compute_optimal": "Compute-optimal strategy per difficulty bin (2-fold CV)",
}


def write_analysis(run_dir: Path, analysis, *, draw: bool = True) -> tuple[dict, list]:
    run_dir = Path(run_dir)
    for name, table in analysis.tables.items():
        if table is not None and not table.empty:
            atomic_write_bytes(run_dir / "analysis" / f"{name}.csv", table.to_csv(index=False).encode())
    buf = io.BytesIO()
    analysis.per_problem.to_parquet(buf, index=False)
    atomic_write_bytes(run_dir / "per_problem_metrics.parquet", buf.getvalue())
    tables = {TITLES.get(name, name): t for name, t in analysis.tables.items()
              if t is not None and not t.empty}
    if not draw:
        return tables, []
    plots = run_dir / "plots"
    frontier = analysis.tables.get("frontier", pd.DataFrame())
    figures = []
    if not frontier.empty:
        figures.append(cost_figure(frontier, plots / "frontier_tokens", cost_col="tokens",
                                   hue="metric", label_cols=("k",), connect=True,
                                   cost_label="expected completion tokens",
                                   title="Accuracy vs tokens, Pareto frontier ringed"))
        if "flops" in frontier.columns:
            figures.append(cost_figure(frontier, plots / "frontier_flops", cost_col="flops",
                                       frontier_col="on_frontier_flops", hue="metric",
                                       label_cols=("k",), connect=True,
                                       cost_label="FLOPs (Large Language Monkeys model)",
                                       title="Accuracy vs FLOPs, Pareto frontier ringed"))
    if analysis.fit:
        figures.append(fit_figure(analysis.fit["measured"], analysis.fit["fitted"],
                                  analysis.fit["params"], plots / "coverage_fit"))
    diff = analysis.tables.get("difficulty", pd.DataFrame())
    if not diff.empty:
        figures.append(difficulty_figure(diff, plots / "difficulty", group_col="metric",
                                         title=f"Accuracy by difficulty at k={int(diff['k'].iloc[0])}"))
    return tables, [f for f in figures if f is not None]
