"""Reports: the terminal table, the run directory's files, plots and HTML pages.

    write_report(run_dir, graded, per_problem, curves)   # samples, metrics, plot.png
    render_run_report(run_dir)                          # plots/*.png|svg + report.html
    render_comparison([run_a, run_b], out_dir)          # comparison.html on shared problems
    console.print(metrics_table(curves))
"""

from .figures import FigureFiles, cost_figure, curves_figure, difficulty_figure, fit_figure
from .files import write_report
from .html import render_comparison, render_run_report, write_html_report
from .table import metrics_table

__all__ = [
    "FigureFiles",
    "cost_figure",
    "curves_figure",
    "difficulty_figure",
    "fit_figure",
    "metrics_table",
    "render_comparison",
    "render_run_report",
    "write_html_report",
    "write_report",
]
