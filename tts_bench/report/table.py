"""The terminal table: pass@k and maj@k per budget with 95% CIs."""

from __future__ import annotations

import pandas as pd


def metrics_table(curves: pd.DataFrame, title: str = ""):
    from rich.table import Table

    table = Table(title=title or None, show_lines=False)
    table.add_column("k", justify="right")
    # The terminal shows coverage, majority and verifier selection; every
    # other curve (rpc@k, ffs@k, costs, fits) is in report.html and metrics.csv.
    order = ("pass@k", "maj@k", "bon@k")
    metrics = [m for m in order if m in set(curves["metric"])]
    for m in metrics:
        table.add_column(m, justify="right")
    if "tokens@k" in set(curves["metric"]):
        table.add_column("completion tokens", justify="right")
    for k in sorted(curves["k"].unique()):
        row = [str(int(k))]
        for m in metrics:
            r = curves[(curves["metric"] == m) & (curves["k"] == k)]
            row.append(_fmt(r.iloc[0]) if len(r) else "")
        r = curves[(curves["metric"] == "tokens@k") & (curves["k"] == k)]
        if len(r):
            row.append(f"{r.iloc[0]['value']:.0f}")
        table.add_row(*row)
    return table


def _fmt(r) -> str:
    return f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
