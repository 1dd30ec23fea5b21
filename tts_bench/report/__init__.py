"""Reports: the terminal table, the run directory's files and the plot.

    write_report(run_dir, graded, per_problem, curves)
    console.print(metrics_table(curves))
"""

from .files import write_report
from .table import metrics_table

__all__ = ["metrics_table", "write_report"]
