"""The terminal table: the registry's terminal metrics (pass@k, maj@k, bon@k) per budget with 95% CIs."""

from __future__ import annotations

import pandas as pd

from ..metrics.registry import label, present


def metrics_table(curves: pd.DataFrame, title: str = ""):
    from rich.table import Table

    table = Table(title=title or None, show_lines=False)
    table.add_column("k", justify="right")
    # The terminal shows the registry's terminal metrics (coverage, majority,
    # verifier selection, tokens); every other curve is in report.html and metrics.csv.
    accuracy = present(curves["metric"], terminal=True, figure="accuracy")
    costs = present(curves["metric"], terminal=True, family="cost")
    for m in accuracy + costs:
        table.add_column(label(m), justify="right")
    for k in sorted(curves["k"].unique()):
        row = [str(int(k))]
        for m in accuracy + costs:
            r = curves[(curves["metric"] == m) & (curves["k"] == k)]
            if m in costs:  # costs have no CI worth a column's width
                row += [f"{r.iloc[0]['value']:.0f}"] if len(r) else []
            else:
                row.append(_fmt(r.iloc[0]) if len(r) else "")
        table.add_row(*row)
    return table


def _fmt(r) -> str:
    return f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
