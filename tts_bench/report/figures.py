"""Report figures: each builder draws one matplotlib figure and saves it as PNG and SVG.

    fig = curves_figure(curves, run_dir / "plots" / "curves")        # -> FigureFiles | None
    fig = curves_figure(combined, out / "curves", by="run")           # one line per run x metric
    fig = cost_figure(points, out / "cost", cost_col="tokens")        # accuracy vs cost, frontier
    fig = fit_figure(measured, fitted, {"a": -1.2, "b": -0.4, "r2": 0.99}, out / "fit")
    fig = difficulty_figure(bins, out / "difficulty")                 # grouped bars per bin
    fig.png, fig.svg, fig.title

``out`` is a path stem: ``out.png`` and ``out.svg`` are written atomically.
Every builder returns None, and writes nothing, when its table is None or
has no rows to draw, so a report can call all of them unconditionally.

The builders read tidy tables (one row per observation, structure in columns):

    curves_figure      metric, k, value [, ci_low, ci_high] [, <by>]
    cost_figure        <cost_col>, <acc_col> [, <frontier_col> (bool)] [, <hue>] [, <label_cols>...]
    fit_figure         measured: k, value [, ci_low, ci_high]; fitted: k, value (or None:
                       drawn from params); params: a, b [, r2 | R2 | r_squared]
    difficulty_figure  <bin_col>, <group_col> (metric or strategy), value [, ci_low, ci_high]
                       [, n_problems]

Figures are built on ``matplotlib.figure.Figure`` directly, never pyplot:
no global backend switch and no figure registry to leak or share across threads.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..metrics.registry import ACCURACY_METRICS
from ..metrics.registry import label as metric_label
from ..store import atomic_write_bytes

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", "-.", ":")
_DPI = 120


class FigureFiles(NamedTuple):
    """The files of one figure; ``title`` heads its section in the HTML report."""

    png: Path
    svg: Path
    title: str


# -- helpers ------------------------------------------------------------------


def _new_figure(size=(8.0, 4.6)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI, layout="constrained")
    return fig, fig.add_subplot()


def _colors() -> list:
    from matplotlib import colormaps

    return list(colormaps["tab10"].colors)


def _save(fig, out: Path, title: str) -> FigureFiles:
    out = Path(out)
    png, svg = out.with_suffix(".png"), out.with_suffix(".svg")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    atomic_write_bytes(png, buf.getvalue())
    buf = io.BytesIO()
    # No date: the same data gives the same SVG bytes.
    fig.savefig(buf, format="svg", metadata={"Date": None})
    atomic_write_bytes(svg, buf.getvalue())
    return FigureFiles(png, svg, title)


def _empty(df) -> bool:
    return df is None or len(df) == 0


def _k_axis(ax, ks) -> None:
    """log2 x axis with the measured k values as plain-integer ticks."""
    from matplotlib.ticker import FixedLocator, NullLocator, StrMethodFormatter

    ks = sorted({int(k) for k in ks if k > 0})
    ax.set_xscale("log", base=2)
    if len(ks) > 10:  # dense grids: label the powers of two only
        ks = [k for k in ks if k & (k - 1) == 0] or ks
    ax.xaxis.set_major_locator(FixedLocator(ks))
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:.0f}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("k (samples per problem)")


def _accuracy_ylim(ax, values) -> None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) and v.min() >= 0 and v.max() <= 1:
        ax.set_ylim(-0.02, 1.02)


def _has_ci(d: pd.DataFrame) -> bool:
    return {"ci_low", "ci_high"} <= set(d.columns) and d[["ci_low", "ci_high"]].notna().any().any()


def _legend(ax, n_entries: int) -> None:
    if n_entries == 0:
        return
    longest = max((len(t) for t in ax.get_legend_handles_labels()[1]), default=0)
    if n_entries > 6 or longest > 28:  # many or long labels: below the axes, off the data
        ax.figure.legend(fontsize=7.5, loc="outside lower center", ncols=1 if longest > 45 else 2,
                         frameon=False)
    else:
        ax.legend(fontsize=8, loc="best")


def _si(x: float, _pos=None) -> str:
    """1500 -> 1.5k, 2e12 -> 2T: readable cost ticks."""
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def _log_cost_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(_si))
    ax.xaxis.set_minor_formatter(NullFormatter())


# -- builders -----------------------------------------------------------------


def curves_figure(
    curves: pd.DataFrame | None,
    out: Path,
    *,
    metrics: Sequence[str] = ACCURACY_METRICS,
    by: str | None = None,
    title: str = "Accuracy vs k",
) -> FigureFiles | None:
    """Accuracy against k (log2 axis) with CI bands, one line per metric present.

    ``metrics`` default: every metric the registry draws on accuracy figures.

    With ``by`` (e.g. "run"), one line per (group, metric): colour is the
    group, marker and line style the metric.
    """
    if _empty(curves):
        return None
    d = curves[curves["metric"].isin(metrics)]
    if d.empty:
        return None
    present = [m for m in metrics if m in set(d["metric"])]
    groups = list(pd.unique(d[by])) if by else [None]
    colors = _colors()
    fig, ax = _new_figure()
    n_lines = 0
    for gi, g in enumerate(groups):
        dg = d if g is None else d[d[by] == g]
        for mi, m in enumerate(present):
            dm = dg[dg["metric"] == m].sort_values("k")
            if dm.empty:
                continue
            color = colors[(gi if by else mi) % len(colors)]
            label = metric_label(m) if g is None else f"{g} · {metric_label(m)}"
            ax.plot(dm["k"], dm["value"], marker=_MARKERS[mi % len(_MARKERS)],
                    linestyle=_LINESTYLES[mi % len(_LINESTYLES)], color=color, label=label,
                    markersize=4.5, linewidth=1.6)
            if _has_ci(dm):
                ax.fill_between(dm["k"], dm["ci_low"], dm["ci_high"], color=color, alpha=0.15,
                                linewidth=0)
            n_lines += 1
    _k_axis(ax, d["k"])
    ax.set_ylabel("accuracy")
    _accuracy_ylim(ax, pd.concat([d["value"], d.get("ci_low", d["value"]), d.get("ci_high", d["value"])]))
    ax.grid(True, alpha=0.3)
    _legend(ax, n_lines)
    if _has_ci(d):
        ax.set_title("shaded: 95% CI over problems", fontsize=8, loc="right", color="0.4")
    return _save(fig, out, title)


def cost_figure(
    points: pd.DataFrame | None,
    out: Path,
    *,
    cost_col: str,
    acc_col: str = "value",
    frontier_col: str = "on_frontier",
    label_cols: Sequence[str] = ("strategy", "k"),
    hue: str | None = None,
    connect: bool = False,
    cost_label: str | None = None,
    title: str = "Accuracy vs cost",
) -> FigureFiles | None:
    """Accuracy against cost (log x when all costs are positive), all points drawn.

    Points with ``frontier_col`` true are highlighted and joined by a step line
    (the best accuracy reachable at each cost). ``label_cols`` present in the
    table name the frontier points (all points when the table has no frontier
    column and at most 12 rows). ``hue`` colours points by a column (e.g. "run");
    ``connect`` joins each colour's points in cost order (a scaling curve in cost).
    """
    if _empty(points) or cost_col not in points or acc_col not in points:
        return None
    d = points[points[cost_col].notna() & points[acc_col].notna()]
    if d.empty:
        return None
    colors = _colors()
    fig, ax = _new_figure()
    groups = list(pd.unique(d[hue])) if hue and hue in d else [None]
    for gi, g in enumerate(groups):
        dg = d if g is None else d[d[hue] == g]
        color = colors[gi % len(colors)]
        ax.scatter(dg[cost_col], dg[acc_col], s=22, color=color, alpha=0.7,
                   label=None if g is None else str(g), zorder=2)
        if connect and len(dg) > 1:
            dg = dg.sort_values(cost_col)
            ax.plot(dg[cost_col], dg[acc_col], "-", color=color, alpha=0.45, linewidth=1.0, zorder=1)
    has_frontier = frontier_col in d and d[frontier_col].fillna(False).astype(bool).any()
    if has_frontier:
        f = d[d[frontier_col].fillna(False).astype(bool)].sort_values(cost_col)
        ax.step(f[cost_col], f[acc_col], where="post", color="black", linewidth=1.4, zorder=3,
                label="Pareto frontier")
        ax.scatter(f[cost_col], f[acc_col], s=46, facecolor="none", edgecolor="black",
                   linewidth=1.4, zorder=4)
        labelled = f
    else:
        labelled = d if len(d) <= 12 else d.iloc[0:0]
    cols = [c for c in label_cols if c in d]
    if cols:
        right_edge = d[cost_col].max()
        for _, r in labelled.iterrows():
            text = ", ".join(f"k={int(r[c])}" if c == "k" else str(r[c]) for c in cols)
            # the costliest points label to their left, so the text stays inside the figure
            left = r[cost_col] >= right_edge
            ax.annotate(text, (r[cost_col], r[acc_col]), textcoords="offset points",
                        xytext=(-5 if left else 5, -11), ha="right" if left else "left", fontsize=6.5,
                        color="0.25")
    if (d[cost_col] > 0).all():
        _log_cost_axis(ax)
    ax.margins(x=0.06)
    ax.set_xlabel(cost_label or cost_col)
    ax.set_ylabel(acc_col if acc_col != "value" else "accuracy")
    _accuracy_ylim(ax, d[acc_col])
    ax.grid(True, alpha=0.3, which="both")
    _legend(ax, len([g for g in groups if g is not None]) + int(has_frontier))
    return _save(fig, out, title)


def _param(params: Mapping, *names):
    for n in names:
        if n in params and params[n] is not None:
            return float(params[n])
    return None


def fit_figure(
    measured: pd.DataFrame | None,
    fitted: pd.DataFrame | None,
    params: Mapping | None,
    out: Path,
    *,
    title: str = "Coverage fit: exp(a k^b)",
) -> FigureFiles | None:
    """Measured coverage (points, CI bars when given) and the fitted curve exp(a k^b).

    ``fitted`` None or empty: the curve is drawn from ``params`` over the
    measured k range. The legend gives a, b and R^2 (``r2``, ``R2`` or ``r_squared``).
    """
    if _empty(measured):
        return None
    params = dict(params or {})
    a, b = _param(params, "a"), _param(params, "b")
    r2 = _param(params, "r2", "R2", "r_squared")
    m = measured.sort_values("k")
    if _empty(fitted) and a is not None and b is not None:
        kk = np.geomspace(max(float(m["k"].min()), 1e-9), float(m["k"].max()), 200)
        fitted = pd.DataFrame({"k": kk, "value": np.exp(a * kk**b)})
    fig, ax = _new_figure()
    c0, c1 = _colors()[:2]
    if _has_ci(m):
        yerr = np.vstack([(m["value"] - m["ci_low"]).clip(lower=0),
                          (m["ci_high"] - m["value"]).clip(lower=0)])
        ax.errorbar(m["k"], m["value"], yerr=yerr, fmt="o", color=c0, markersize=5, capsize=2,
                    label="measured")
    else:
        ax.plot(m["k"], m["value"], "o", color=c0, markersize=5, label="measured")
    if not _empty(fitted):
        f = fitted.sort_values("k")
        parts = [f"{name} = {v:.3g}" for name, v in (("a", a), ("b", b)) if v is not None]
        if r2 is not None:
            parts.append(f"R² = {r2:.3f}")
        ax.plot(f["k"], f["value"], "-", color=c1, linewidth=1.8,
                label=r"fit $\exp(a\,k^{b})$" + (f"\n{', '.join(parts)}" if parts else ""))
    _k_axis(ax, m["k"])
    ax.set_ylabel("coverage (pass@k)")
    _accuracy_ylim(ax, m["value"])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out, title)


def difficulty_figure(
    table: pd.DataFrame | None,
    out: Path,
    *,
    bin_col: str = "bin",
    group_col: str | None = None,
    value_col: str = "value",
    title: str = "Accuracy by difficulty",
) -> FigureFiles | None:
    """Grouped bars: one group per difficulty bin, one bar per metric or strategy.

    ``group_col`` defaults to "strategy" when present, else "metric". Bins keep
    the table's order (sorted when numeric); an ``n_problems`` column is shown
    under each bin label.
    """
    if _empty(table) or bin_col not in table or value_col not in table:
        return None
    if group_col is None:
        group_col = "strategy" if "strategy" in table else "metric" if "metric" in table else None
    d = table[table[value_col].notna()]
    if d.empty:
        return None
    bins = list(pd.unique(d[bin_col]))
    if pd.api.types.is_numeric_dtype(d[bin_col]):
        bins = sorted(bins)
    groups = list(pd.unique(d[group_col])) if group_col else [None]
    colors = _colors()
    width = 0.8 / len(groups)
    x = np.arange(len(bins))
    fig, ax = _new_figure(size=(max(6.0, 1.1 * len(bins) + 2.5), 4.4))
    for gi, g in enumerate(groups):
        dg = d if g is None else d[d[group_col] == g]
        rows = dg.groupby(bin_col, sort=False).first().reindex(bins)
        yerr = None
        if _has_ci(rows):
            yerr = np.vstack([(rows[value_col] - rows["ci_low"]).clip(lower=0).fillna(0),
                              (rows["ci_high"] - rows[value_col]).clip(lower=0).fillna(0)])
        ax.bar(x - 0.4 + width * (gi + 0.5), rows[value_col].fillna(0), width * 0.92, yerr=yerr,
               capsize=2, color=colors[gi % len(colors)], label=None if g is None else str(g),
               error_kw={"linewidth": 0.8, "ecolor": "0.3"})
    labels = [str(b) for b in bins]
    if "n_problems" in d:
        n = d.groupby(bin_col, sort=False)["n_problems"].max().reindex(bins)
        labels = [f"{lab}\n(n={int(v)})" if not math.isnan(v) else lab for lab, v in zip(labels, n)]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_xlabel("difficulty bin" if bin_col == "bin" else bin_col)
    ax.set_ylabel("accuracy" if value_col == "value" else value_col)
    _accuracy_ylim(ax, d[value_col])
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax, len([g for g in groups if g is not None]))
    return _save(fig, out, title)


def levels_figure(levels: pd.DataFrame | None, out: Path, *, x_col: str, x_label: str,
                  title: str) -> FigureFiles | None:
    """A strategy's accuracy (and majority vote) per level against tokens, with 95% CI bars."""
    if _empty(levels) or x_col not in levels.columns:
        return None
    d = levels.sort_values(x_col)
    fig, ax = _new_figure()
    colors = _colors()
    for i, (col, lo, hi, label) in enumerate([
            ("accuracy", "ci_low", "ci_high", "accuracy (mean over samples)"),
            ("majority", "majority_ci_low", "majority_ci_high", "majority vote")]):
        if col not in d.columns:
            continue
        err = [(d[col] - d[lo]).clip(lower=0), (d[hi] - d[col]).clip(lower=0)]
        ax.errorbar(d[x_col], d[col], yerr=err, marker=_MARKERS[i], color=colors[i], capsize=3,
                    linewidth=1.6, markersize=4.5, label=label)
    for _, r in d.iterrows():
        ax.annotate(str(int(r["level"])), (r[x_col], r["accuracy"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=7, color="0.35")
    ax.set_xlabel(x_label)
    ax.set_ylabel("accuracy")
    _accuracy_ylim(ax, pd.concat([d["accuracy"], d["ci_low"], d["ci_high"]]))
    ax.grid(True, alpha=0.3)
    _legend(ax, 2)
    ax.set_title("labels: level; bars: 95% CI over problems", fontsize=8, loc="right", color="0.4")
    return _save(fig, out, title)


def solve_verify_figure(table: pd.DataFrame | None, out: Path) -> FigureFiles | None:
    """Accuracy against compute (solution equivalents): self-consistency and genrm at each V, 95% CIs."""
    if _empty(table):
        return None
    fig, ax = _new_figure()
    colors = _colors()
    for i, (method, d) in enumerate(table.groupby("method", sort=False)):
        d = d.sort_values("compute")
        err = [(d["accuracy"] - d["ci_low"]).clip(lower=0), (d["ci_high"] - d["accuracy"]).clip(lower=0)]
        ax.errorbar(d["compute"], d["accuracy"], yerr=err, marker=_MARKERS[i % len(_MARKERS)],
                    color=colors[i % len(colors)], capsize=3, linewidth=1.6, markersize=4.5, label=method)
    ax.set_xscale("log", base=2)
    lam = table["lambda"].iloc[0]
    ax.set_xlabel(f"compute C = S(1 + lambda V), solution equivalents (lambda = {lam:.3g})")
    ax.set_ylabel("accuracy")
    _accuracy_ylim(ax, pd.concat([table["accuracy"], table["ci_low"], table["ci_high"]]))
    ax.grid(True, alpha=0.3)
    _legend(ax, table["method"].nunique())
    return _save(fig, out, "Solve or verify: self-consistency against generative verification")


def equal_compute_figure(table: pd.DataFrame | None, out: Path) -> FigureFiles | None:
    """Each run's best accuracy within a compute budget: (policy, verifier, strategy) at equal cost."""
    if _empty(table):
        return None
    fig, ax = _new_figure()
    colors = _colors()
    for i, (run, d) in enumerate(table.groupby("run", sort=False)):
        d = d.sort_values("budget")
        lab = d.iloc[0]
        ax.step(d["budget"], d["accuracy"], where="post", color=colors[i % len(colors)], linewidth=1.6,
                marker=_MARKERS[i % len(_MARKERS)], markersize=4,
                label=f"{lab['policy']} + {lab['verifier']} ({run[:40]})")
    ax.set_xscale("log")
    ax.set_xlabel(f"compute budget ({table['unit'].iloc[0]} per problem)")
    ax.set_ylabel("best accuracy within the budget")
    _accuracy_ylim(ax, table["accuracy"])
    ax.grid(True, alpha=0.3)
    _legend(ax, table["run"].nunique())
    return _save(fig, out, "Accuracy at equal compute across runs")
