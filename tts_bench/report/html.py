"""Self-contained HTML reports: one file, opens from disk, no network, no JavaScript.

    render_run_report(run_dir)                        # run_dir/report.html + run_dir/plots/*
    render_comparison([run_a, run_b], out_dir)        # out_dir/comparison.html + comparison.csv
    write_html_report(path, title=..., runs=[run_summary(manifest)], tables={...}, figures=[...])

Safety: every table cell, header, title and metadata value goes through
``html.escape``; model outputs in a table stay text. Figures are embedded: SVG
inline (after dropping the XML prolog, metadata and comments, and prefixing its
ids so two figures never share one), PNG as a base64 data URI; an SVG holding
script or event-handler attributes is never inlined (its PNG is used). A
Content-Security-Policy meta tag forbids scripts and every fetch, so even a
mistake in escaping could neither run code nor load anything.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path
from typing import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from ..metrics.registry import ACCURACY_METRICS, SELECTION_STRATEGIES
from ..metrics.registry import names as metric_names
from ..metrics.registry import rank as _metric_rank
from ..store import atomic_write_bytes
from .figures import FigureFiles, cost_figure, curves_figure

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_MAX_IDS_IN_NOTE = 20

_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --border:#d1d9e0; --alt:#f6f8fa; --accent:#0969da; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 15px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial,
        "Noto Sans", "Liberation Sans", "DejaVu Sans", sans-serif; }
header, main { max-width: 1100px; margin: 0 auto; padding: 0 28px; }
header { padding-top: 26px; padding-bottom: 10px; border-bottom: 2px solid var(--border); }
h1 { font-size: 1.65rem; line-height: 1.25; margin: 0 0 4px; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--border); }
h3 { font-size: 0.95rem; margin: 16px 0 6px; color: var(--muted); }
.sub { color: var(--muted); margin: 0 0 14px; font-size: 13px; }
nav { font-size: 13px; margin: 12px 0 0; display: flex; flex-wrap: wrap; gap: 2px 14px; }
nav a { color: var(--accent); text-decoration: none; min-width: 0; overflow-wrap: anywhere; }
nav a:hover { text-decoration: underline; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 6px 0 4px; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 12px; border-bottom: 1px solid var(--border); text-align: left; vertical-align: top; }
thead th { background: var(--alt); font-weight: 600; border-bottom: 2px solid var(--border); }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; white-space: nowrap; }
th.num { text-align: right; }
td.text { max-width: 42em; overflow-wrap: break-word; white-space: pre-wrap; }
td.nowrap { white-space: nowrap; }
td.missing { color: #9aa4ae; }
table.meta th[scope=row] { background: var(--alt); font-weight: 600; white-space: nowrap; width: 1%; }
table.meta th.run { white-space: normal; min-width: 12em; }
table.meta td { overflow-wrap: break-word; }
.versions { font-size: 12px; color: var(--muted); margin: 8px 0 0; overflow-wrap: anywhere; }
.versions b { color: var(--fg); font-weight: 600; }
.notes { background: #fff8c5; border: 1px solid #e3c65f; border-radius: 6px; padding: 8px 14px;
  margin: 18px 0 0; font-size: 14px; }
.notes ul { margin: 4px 0; padding-left: 20px; }
.rows-note { font-size: 12px; color: var(--muted); margin: 2px 0 0; }
figure { margin: 8px 0 0; }
figure svg, figure img { display: block; width: 100%; height: auto; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 2px; }
details { margin: 14px 0; }
details > summary { cursor: pointer; font-weight: 600; font-size: 1.05rem; }
footer { max-width: 1100px; margin: 40px auto 30px; padding: 10px 28px 0; border-top: 1px solid var(--border);
  font-size: 12px; color: var(--muted); }
@media print { nav { display: none; } h2 { break-after: avoid; } figure, tr { break-inside: avoid; } }
"""


# -- formatting -----------------------------------------------------------------


def format_value(v) -> str:
    """A table cell as text: NaN/None empty, ints plain, floats to 3 decimals (1 from 100, 0 from 1000)."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return ""
        if math.isinf(f):
            return "∞" if f > 0 else "−∞"
        a = abs(f)
        if a >= 1000:
            return f"{f:,.0f}"
        if a >= 100:
            return f"{f:.1f}"
        if a == 0 or a >= 1e-3:
            return f"{f:.3f}"
        return f"{f:.3g}"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    return str(v)


_NUMERIC_TEXT = re.compile(r"^[-+−]?[\d,.]+(e[-+]?\d+)?( \[[^\]]*\])?$")


def _slug(text: str, used: set) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


def table_html(df: pd.DataFrame, *, max_rows: int = 500, nowrap: Collection[str] = ()) -> str:
    """An escaped HTML table; numeric columns right-aligned; at most ``max_rows`` rows.

    Columns named in ``nowrap`` never break their text across lines.
    """
    if df is None or len(df.columns) == 0:
        return '<p class="rows-note">No data.</p>'
    shown = df.iloc[:max_rows]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns]
    head = "".join(f'<th{" class=num" if num else ""} scope="col">{_breakable(html.escape(str(c)))}</th>'
                   for c, num in zip(df.columns, numeric))
    keep = [c in nowrap for c in df.columns]
    rows = []
    for rec in shown.itertuples(index=False, name=None):
        cells = []
        for v, num, nw in zip(rec, numeric, keep):
            text = format_value(v)
            cls = "num" if num or _NUMERIC_TEXT.match(text) else "nowrap" if nw else "text"
            if text == "":
                cls += " missing"
            esc = html.escape(text)
            cells.append(f'<td class="{cls}">{esc if cls.startswith("num") else _breakable(esc)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    out = (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
           f'<tbody>{"".join(rows)}</tbody></table></div>')
    if len(df) == 0:
        out += '<p class="rows-note">No rows.</p>'
    elif len(df) > max_rows:
        out += f'<p class="rows-note">Showing the first {max_rows} of {len(df)} rows.</p>'
    return out


# -- figures --------------------------------------------------------------------

_SVG_UNSAFE = re.compile(r"<script|<foreignObject|<iframe|\son[a-z]+\s*=|javascript:", re.I)


def _inline_svg(text: str, prefix: str, label: str) -> str | None:
    """The SVG ready to sit inside HTML, or None when it should not be inlined."""
    text = re.sub(r"<\?xml.*?\?>", "", text, flags=re.S)
    text = re.sub(r"<!DOCTYPE.*?>", "", text, flags=re.S | re.I)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    if _SVG_UNSAFE.search(text) or "<svg" not in text:
        return None
    # The HTML parser puts <svg> in the SVG namespace itself: the URIs are noise.
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    # Ids are global to the page: matplotlib's hashed ids could repeat across figures.
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)
    if re.search(r'(?:href|src)\s*=\s*"(?!#)', text):  # any non-local reference
        return None
    m = re.search(r"<svg\b([^>]*)>", text)
    attrs = m.group(1)
    width = re.search(r'\swidth="([^"]+)"', attrs)
    attrs = re.sub(r'\s(width|height)="[^"]*"', "", attrs)
    style = f"max-width:{width.group(1)}" if width else ""
    new_open = (f'<svg{attrs} role="img" aria-label="{html.escape(label)}"'
                f'{f" style={chr(34)}{style}{chr(34)}" if style else ""}>')
    return text[: m.start()] + new_open + text[m.end():].strip()


def _figure_html(fig, index: int) -> tuple[str, str]:
    """(title, html) for a FigureFiles or a path to an .svg/.png."""
    if isinstance(fig, FigureFiles):
        title, candidates = fig.title, [Path(fig.svg), Path(fig.png)]
    else:
        p = Path(fig)
        title = p.stem.replace("_", " ").replace("-", " ")
        candidates = [p] if p.suffix.lower() != ".svg" else [p, p.with_suffix(".png")]
    for p in candidates:
        if not p.is_file():
            continue
        if p.suffix.lower() == ".svg":
            svg = _inline_svg(p.read_text(encoding="utf-8", errors="replace"), f"f{index}-", title)
            if svg is not None:
                return title, f"<figure>{svg}<figcaption>{html.escape(p.name)}</figcaption></figure>"
        elif p.suffix.lower() in (".png", ".jpg", ".jpeg"):
            mime = "image/png" if p.suffix.lower() == ".png" else "image/jpeg"
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            return title, (f'<figure><img alt="{html.escape(title)}" src="data:{mime};base64,{data}">'
                           f"<figcaption>{html.escape(p.name)}</figcaption></figure>")
    names = ", ".join(html.escape(p.name) for p in candidates)
    return title, f'<p class="rows-note">Figure not available ({names}).</p>'


# -- run metadata -----------------------------------------------------------------


def run_summary(manifest: Mapping, name: str | None = None) -> dict:
    """The header fields of one run from its manifest.json (missing fields stay empty)."""
    cfg = manifest.get("config") or {}
    model_cfg, ident = cfg.get("model") or {}, manifest.get("model") or {}
    strat = cfg.get("strategy") or {}
    sampling = ", ".join(f"{k}={strat[k]}" for k in ("temperature", "top_p", "max_tokens") if k in strat)
    engine = " ".join(str(x) for x in (ident.get("engine") or (cfg.get("engine") or {}).get("name"),
                                       ident.get("engine_version")) if x)
    totals = manifest.get("totals") or {}
    n = (cfg.get("budget") or {}).get("n", "")
    imported = manifest.get("import") or {}
    if imported.get("n_min") is not None and imported["n_min"] != imported.get("n_max"):
        n = f"{imported['n_min']} to {imported['n_max']} per problem (k ≤ {imported['n_min']})"
    return {
        "name": name or manifest.get("run_name") or "",
        "model": model_cfg.get("name") or ident.get("model_id") or "",
        "model_id": ident.get("model_id") or model_cfg.get("path") or "",
        "dataset": (cfg.get("dataset") or {}).get("name", ""),
        "strategy": (strat.get("name", "") + (f" ({sampling})" if sampling else "")).strip(),
        "n": n,
        "engine": engine,
        "problems": totals.get("problems", ""),
        "created": manifest.get("created_at", ""),
        "commit": (manifest.get("git_commit") or "")[:12],
        "versions": dict(manifest.get("versions") or {}),
    }


_RUN_FIELDS = ("model", "model_id", "dataset", "strategy", "n", "engine", "problems", "created", "commit")


def _breakable(escaped: str) -> str:
    """Allow line breaks after "__" and "/" in already-escaped text (run names, model paths)."""
    return escaped.replace("__", "__<wbr>").replace("/", "/<wbr>")


def _runs_html(runs: Sequence[Mapping]) -> str:
    """Run metadata, one column per run and one row per field; versions listed below."""
    if not runs:
        return ""
    extra = sorted({k for r in runs for k in r} - set(_RUN_FIELDS) - {"name", "versions"})
    fields = [f for f in (*_RUN_FIELDS, *extra) if any(r.get(f) not in (None, "") for r in runs)]
    head = '<th scope="col"></th>' + "".join(
        f'<th scope="col" class="run">{_breakable(html.escape(str(r.get("name", ""))))}</th>' for r in runs)
    rows = []
    for f in fields:
        cells = "".join(f'<td class="text">{_breakable(html.escape(format_value(r.get(f))))}</td>'
                        for r in runs)
        rows.append(f'<tr><th scope="row">{html.escape(f.replace("_", " "))}</th>{cells}</tr>')
    out = (f'<div class="table-wrap"><table class="meta"><thead><tr>{head}</tr></thead>'
           f'<tbody>{"".join(rows)}</tbody></table></div>')
    lines = []
    for r in runs:
        v = r.get("versions") or {}
        if v:
            pkgs = " · ".join(f"{html.escape(str(k))} {html.escape(str(val))}" for k, val in v.items())
            lines.append(f"<div><b>{_breakable(html.escape(str(r.get('name', ''))))}</b>: {pkgs}</div>")
    if lines:
        out += '<div class="versions">' + "".join(lines) + "</div>"
    return out


# -- the page ---------------------------------------------------------------------


def write_html_report(
    out_path: Path,
    *,
    title: str,
    runs: Sequence[Mapping],
    tables: Mapping[str, pd.DataFrame | None],
    figures: Sequence[Path | FigureFiles | None],
    notes: Sequence[str] = (),
    collapsed: Collection[str] = (),
    max_rows: int = 500,
) -> Path:
    """Write one self-contained HTML page and return its path.

    ``runs``: dicts with name, model, dataset, strategy, n, engine, versions
    (see :func:`run_summary`; other keys become extra columns). ``tables``: a
    section per table, in order (None entries skipped); names in ``collapsed``
    go last, folded in a <details>. ``figures``: a section each (None skipped).
    ``notes``: plain-text caveats shown under the header.

    Order: the first figure (the main one), the first table (the summary),
    the other figures, the other tables, the folded ones: a reader sees the
    result before the long tables.
    """
    used: set = set()
    sections, toc = [], []

    def add(name: str, body: str, *, fold: bool = False) -> None:
        sid = _slug(name, used)
        if fold:
            sections.append(f'<section id="{sid}"><details><summary>{html.escape(name)}</summary>'
                            f"{body}</details></section>")
        else:
            sections.append(f'<section id="{sid}"><h2>{html.escape(name)}</h2>{body}</section>')
        toc.append(f'<a href="#{sid}">{html.escape(name)}</a>')

    open_tables = [(k, v) for k, v in tables.items() if v is not None and k not in collapsed]
    folded = {k: v for k, v in tables.items() if v is not None and k in collapsed}
    figs = [_figure_html(f, i) for i, f in enumerate(f for f in figures if f is not None)]
    for fig_title, body in figs[:1]:
        add(fig_title, body)
    for name, df in open_tables[:1]:
        add(name, table_html(df, max_rows=max_rows))
    for fig_title, body in figs[1:]:
        add(fig_title, body)
    for name, df in open_tables[1:]:
        add(name, table_html(df, max_rows=max_rows))
    for name, df in folded.items():
        add(name, table_html(df, max_rows=max_rows), fold=True)

    notes_html = ""
    if notes:
        items = "".join(f"<li>{html.escape(str(n))}</li>" for n in notes)
        notes_html = f'<div class="notes"><b>Notes</b><ul>{items}</ul></div>'
    try:
        from importlib.metadata import version

        made_by = f"tts-bench {version('tts-bench')}"
    except Exception:  # noqa: BLE001 - running from a source tree
        made_by = "tts-bench"
    doc = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
<p class="sub">{len(runs)} run{"s" if len(runs) != 1 else ""} · made by {html.escape(made_by)}</p>
{_runs_html(runs)}
{notes_html}
<nav>{"".join(toc)}</nav>
</header>
<main>
{"".join(sections)}
</main>
<footer>Self-contained report: figures are embedded, nothing is fetched, no scripts run.</footer>
</body>
</html>
"""
    out_path = Path(out_path)
    atomic_write_bytes(out_path, doc.encode("utf-8"))
    return out_path


# -- building from run directories ----------------------------------------------------


def _read_manifest(run_dir: Path) -> dict:
    p = Path(run_dir) / "manifest.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def load_metrics(run_dir: Path) -> pd.DataFrame:
    """A run's metrics.csv (tidy: metric, k, value, ci_low, ci_high, n_problems, method)."""
    from ..config import ConfigError

    p = Path(run_dir) / "metrics.csv"
    if not p.is_file():
        raise ConfigError(f"{run_dir} has no metrics.csv yet; run: tts-bench report {run_dir}")
    return pd.read_csv(p)


def metrics_wide(curves: pd.DataFrame) -> pd.DataFrame:
    """k, then one column per metric: "value [ci_low – ci_high]" (text, for reading)."""
    metrics = sorted(curves["metric"].unique(), key=_metric_rank)
    out = pd.DataFrame({"k": sorted(int(k) for k in curves["k"].unique())})
    for m in metrics:
        d = curves[curves["metric"] == m].set_index("k")
        cells = []
        for k in out["k"]:
            if k not in d.index:
                cells.append("")
                continue
            r = d.loc[k]
            cell = format_value(r["value"])
            lo, hi = r.get("ci_low"), r.get("ci_high")
            if lo is not None and hi is not None and not (pd.isna(lo) or pd.isna(hi)):
                cell += f" [{format_value(lo)} – {format_value(hi)}]"
            cells.append(cell)
        out[m] = cells
    return out


def _token_points(curves: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Accuracy metrics at each k joined with tokens@k at the same k (and run)."""
    keys = ["k"] + (["run"] if "run" in curves else [])
    tokens = curves[curves["metric"] == "tokens@k"][keys + ["value"]].rename(columns={"value": "tokens"})
    acc = curves[curves["metric"].isin(metrics)]
    return acc.merge(tokens, on=keys, how="inner")


def _totals_table(manifest: Mapping) -> pd.DataFrame | None:
    rows = [(k, v) for k, v in (manifest.get("totals") or {}).items()]
    rows += [(f"time: {k}", v) for k, v in (manifest.get("timings") or {}).items()]
    if not rows:
        return None
    return pd.DataFrame({"quantity": [r[0] for r in rows],
                         "value": [format_value(r[1]) for r in rows]})


def render_run_report(
    run_dir: Path,
    *,
    extra_tables: Mapping[str, pd.DataFrame | None] | None = None,
    extra_figures: Sequence[Path | FigureFiles | None] = (),
    out_name: str = "report.html",
) -> Path:
    """Build run_dir/plots/*.png|svg and run_dir/report.html from metrics.csv and manifest.json.

    ``extra_tables`` / ``extra_figures`` (e.g. a Pareto table, fit_figure or
    difficulty_figure output) are added after the standard sections.
    """
    run_dir = Path(run_dir)
    manifest = _read_manifest(run_dir)
    curves = load_metrics(run_dir)
    plots = run_dir / "plots"
    acc_present = [m for m in ACCURACY_METRICS if m in set(curves["metric"])]
    figures = [
        curves_figure(curves, plots / "curves", title="Accuracy vs k"),
        cost_figure(_token_points(curves, acc_present), plots / "cost_tokens", cost_col="tokens",
                    hue="metric", label_cols=("k",), connect=True,
                    cost_label="expected completion tokens (tokens@k)",
                    title="Accuracy vs completion tokens"),
        *extra_figures,
    ]
    tables: dict[str, pd.DataFrame | None] = {"Metrics (value [95% CI])": metrics_wide(curves)}
    tables.update(extra_tables or {})
    tables["Run totals"] = _totals_table(manifest)
    tables["metrics.csv (all rows)"] = curves
    name = manifest.get("run_name") or run_dir.name
    return write_html_report(
        run_dir / out_name,
        title=f"Run report: {name}",
        runs=[run_summary(manifest, name)],
        tables=tables,
        figures=figures,
        collapsed={"Run totals", "metrics.csv (all rows)"},
    )


def _unique_names(run_dirs: Sequence[Path], manifests: Sequence[Mapping]) -> list[str]:
    names, seen = [], {}
    for d, m in zip(run_dirs, manifests):
        base = str(m.get("run_name") or Path(d).name)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base} ({seen[base]})")
    return names


def _read_per_problem(run_dir: Path) -> pd.DataFrame | None:
    p = Path(run_dir) / "per_problem.parquet"
    if not p.is_file():
        return None
    pp = pd.read_parquet(p)
    if "class_counts" in pp:  # stored as JSON text by write_report
        pp["class_counts"] = pp["class_counts"].map(lambda v: json.loads(v) if isinstance(v, str) else v)
    return pp


def render_comparison(
    run_dirs: Sequence[Path],
    out_dir: Path,
    *,
    names: Sequence[str] | None = None,
    n_boot: int | None = None,
    seed: int = 0,
) -> Path:
    """Compare runs on the problems they share; write out_dir/comparison.html and comparison.csv.

    When every run has per_problem.parquet, problems missing from any run are
    dropped and the affected runs' curves are recomputed on the shared set
    (same ks, ``n_boot`` resamples, default the run's configured bootstrap);
    the notes list what was dropped. Otherwise each run's metrics.csv is used
    as recorded and the notes say the problem sets were not checked.
    comparison.csv is tidy (run, metric, k, value, ci_low, ci_high, ...).
    """
    from ..config import ConfigError

    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise ConfigError("render_comparison needs at least one run directory")
    out_dir = Path(out_dir)
    manifests = [_read_manifest(d) for d in run_dirs]
    names = list(names) if names is not None else _unique_names(run_dirs, manifests)
    if len(names) != len(run_dirs) or len(set(names)) != len(names):
        raise ConfigError(f"run names must be unique, one per run directory; got {names}")
    curves = {n: load_metrics(d) for n, d in zip(names, run_dirs)}
    per_problem = {n: _read_per_problem(d) for n, d in zip(names, run_dirs)}

    notes: list[str] = []
    dropped_rows = []
    lacking = [n for n, pp in per_problem.items() if pp is None]
    if lacking:
        notes.append("Problem sets not checked: no per_problem.parquet in " + ", ".join(lacking)
                     + "; each run's curves are over its own problems.")
    else:
        shared = set.intersection(*(set(pp["problem_id"]) for pp in per_problem.values()))
        if not shared:
            raise ConfigError(f"no problem is shared by all runs: {', '.join(names)}")
        any_dropped = False
        for n, m in zip(names, manifests):
            pp = per_problem[n]
            drop = sorted(set(pp["problem_id"]) - shared, key=str)
            if not drop:
                continue
            any_dropped = True
            dropped_rows += [{"run": n, "problem_id": pid} for pid in drop]
            shown = ", ".join(map(str, drop[:_MAX_IDS_IN_NOTE]))
            more = f" and {len(drop) - _MAX_IDS_IN_NOTE} more" if len(drop) > _MAX_IDS_IN_NOTE else ""
            notes.append(f"{n}: dropped {len(drop)} of {len(pp)} problems not in every run "
                         f"({shown}{more}); its curves were recomputed on the shared problems.")
            curves[n], lost = _recompute(curves[n], pp[pp["problem_id"].isin(shared)], m, n_boot, seed)
            if lost:
                notes.append(f"{n}: {', '.join(lost)} left out: recorded over all its problems, "
                             f"and only {_recomputable()} can be recomputed here.")
        notes.insert(0, f"Compared on the {len(shared)} problems shared by all runs"
                     + ("." if any_dropped else " (every run has exactly these)."))

    combined = pd.concat([c.assign(run=n) for n, c in curves.items()], ignore_index=True)
    combined = combined[["run"] + [c for c in combined.columns if c != "run"]]
    atomic_write_bytes(out_dir / "comparison.csv", combined.to_csv(index=False).encode())

    wide = combined.pivot_table(index=["metric", "k"], columns="run", values="value", sort=False)
    wide = wide.reindex(columns=names).reset_index()
    wide.columns.name = None
    order = sorted(range(len(wide)), key=lambda i: (_metric_rank(wide["metric"].iat[i]), wide["k"].iat[i]))
    wide = wide.iloc[order].reset_index(drop=True)

    plots = out_dir / "plots"
    acc_present = [m for m in ACCURACY_METRICS if m in set(combined["metric"])]
    cost_metric = next((m for m in acc_present if m in SELECTION_STRATEGIES),
                       acc_present[0] if acc_present else None)
    points = _token_points(combined, [cost_metric] if cost_metric else [])
    figures = [
        curves_figure(combined, plots / "comparison_curves", by="run", title="Accuracy vs k, by run"),
        cost_figure(points, plots / "comparison_cost", cost_col="tokens", hue="run", label_cols=("k",),
                    connect=True,
                    cost_label="expected completion tokens (tokens@k)",
                    title=f"{cost_metric} vs completion tokens, by run"),
    ]
    tables: dict[str, pd.DataFrame | None] = {"Metrics by run": wide}
    if dropped_rows:
        tables["Dropped problems"] = pd.DataFrame(dropped_rows)
    tables["comparison.csv (all rows)"] = combined
    return write_html_report(
        out_dir / "comparison.html",
        title=f"Comparison of {len(names)} runs",
        runs=[run_summary(m, n) for n, m in zip(names, manifests)],
        tables=tables,
        figures=figures,
        notes=notes,
        collapsed={"Dropped problems", "comparison.csv (all rows)"},
    )


def _recomputable() -> str:
    """The metrics compute_curves redoes from per_problem.parquet: "pass@k, maj@k and tokens@k"."""
    m = metric_names(source="problems")
    return ", ".join(m[:-1]) + " and " + m[-1] if len(m) > 1 else m[0]


def _recompute(curves: pd.DataFrame, per_problem: pd.DataFrame, manifest: Mapping,
               n_boot: int | None, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """compute_curves on the kept problems at the run's ks; also the metrics it cannot redo."""
    from ..metrics import METRICS, compute_curves

    ks = sorted(int(k) for k in curves["k"].unique())
    if n_boot is None:
        n_boot = int((manifest.get("config") or {}).get("bootstrap", 1000))
    lost = sorted(set(curves["metric"]) - set(METRICS), key=_metric_rank)
    return compute_curves(per_problem, ks, n_boot=n_boot, seed=seed), lost
