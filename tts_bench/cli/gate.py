"""`tts-bench baseline RUN -o baseline.json` and `tts-bench check RUN --baseline baseline.json`.

The CI regression gate (``metrics/gate.py``): a baseline holds a run's
per-problem estimates and what identifies the run; `check` compares a new
run with it problem by problem and exits 0 (no regression), 1 (regressed
beyond the margin) or 2 (incomparable: other problem ids).

    tts-bench baseline results/runs/<run> -o baselines/mine.json
    tts-bench check results/runs/<run> --baseline baselines/mine.json --metric pass@k:1 --metric maj@k:8
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from ._common import console, user_errors

BASELINE_FORMAT = 1


def _per_problem(run_dir: Path):
    import pandas as pd

    from ..config import ConfigError

    path = run_dir / "per_problem_metrics.parquet"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no per_problem_metrics.parquet; run: tts-bench grade {run_dir}")
    return pd.read_parquet(path)


@app.command()
def baseline(
    run_dir: Path = typer.Argument(..., help="A graded run directory"),
    out: Path = typer.Option(..., "-o", "--out", help="The baseline JSON to write"),
) -> None:
    """Write RUN's per-problem estimates and identity as a regression baseline."""
    from ..runner import read_manifest
    from ..store import atomic_write_bytes

    with user_errors():
        m = read_manifest(run_dir)
        pp = _per_problem(run_dir)
        data = {
            "format": BASELINE_FORMAT,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "run_name": m.get("run_name", run_dir.name),
            "dataset": m["config"]["dataset"]["name"],
            "strategy": m.get("strategy") or m["config"]["strategy"]["name"],
            "model": {k: m["model"].get(k) for k in ("model_id", "fingerprint", "engine", "engine_version")},
            "config": {k: m["config"][k] for k in ("dataset", "strategy", "budget")},
            "git_commit": m.get("git_commit"),
            "per_problem": [{"problem_id": r.problem_id, "metric": r.metric, "k": int(r.k),
                             "value": float(r.value)} for r in pp.itertuples()],
        }
        atomic_write_bytes(out, json.dumps(data, indent=1).encode())
    console.print(f"baseline of {data['run_name']}: {pp['problem_id'].nunique()} problems, "
                  f"{len(pp)} estimates -> {out}")


@app.command()
def check(
    run_dir: Path = typer.Argument(..., help="A graded run directory"),
    baseline_path: Path = typer.Option(..., "--baseline", help="A baseline from `tts-bench baseline`"),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help="METRIC:K to gate (repeatable); "
                                               "default pass@k:1"),
    margin: float = typer.Option(0.02, help="Allowed drop before it counts as a regression"),
    alpha: float = typer.Option(0.05, help="One-sided level (family-wise over metrics, Holm)"),
    bootstrap: int = typer.Option(10_000, help="Paired bootstrap resamples over problems"),
    seed: int = typer.Option(0, help="Bootstrap seed"),
    markdown: Optional[Path] = typer.Option(None, help="Write a markdown summary here (also appended "
                                            "to $GITHUB_STEP_SUMMARY when set)"),
    junit: Optional[Path] = typer.Option(None, help="Write JUnit XML here"),
) -> None:
    """Compare RUN with a baseline per problem: exit 0 ok, 1 regressed, 2 incomparable."""
    import pandas as pd

    from ..config import ConfigError
    from ..metrics.gate import check_regression, junit_xml, markdown_summary, parse_metric
    from ..runner import read_manifest

    with user_errors():
        if not 0 < alpha < 1 or margin < 0 or bootstrap < 100:
            raise ConfigError("--alpha must be in (0, 1), --margin >= 0 and --bootstrap >= 100")
        try:
            specs = [parse_metric(s) for s in (metric or ["pass@k:1"])]
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if not baseline_path.is_file():
            raise ConfigError(f"{baseline_path} does not exist; write one with: tts-bench baseline RUN -o "
                              f"{baseline_path}")
        try:
            base = json.loads(baseline_path.read_text())
            base_pp = pd.DataFrame(base["per_problem"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{baseline_path} is not a tts-bench baseline (write one with "
                              f"tts-bench baseline RUN -o FILE)") from None
        m = read_manifest(run_dir)
        run_pp = _per_problem(run_dir)
    if base.get("model", {}).get("fingerprint") != m["model"].get("fingerprint"):
        console.print(f"note: the run's model ({m['model'].get('model_id')}) is not the baseline's "
                      f"({base.get('model', {}).get('model_id')}); comparing per problem anyway")
    result = check_regression(run_pp, base_pp, specs, margin=margin, alpha=alpha, n_boot=bootstrap,
                              seed=seed)
    summary = markdown_summary(result, run_dir.name, base.get("run_name", str(baseline_path)), alpha)
    if result.exit_code == 2:
        console.print(f"[bold red]incomparable:[/] {result.reason}")
    else:
        cols = ["metric", "k", "problems", "run", "baseline", "delta", "upper_bound", "p_value", "mde",
                "regressed"]
        console.print(result.table[cols].to_string(index=False, float_format=lambda v: f"{v:+.4f}"),
                      markup=False, highlight=False)
        worst = result.table["mde"].max()
        console.print(f"minimum detectable effect (power 0.8, alpha {alpha}): {worst:.4f} on "
                      f"{int(result.table['problems'].iloc[0])} problems; margin {margin}")
        console.print("[bold red]REGRESSED[/]" if result.exit_code == 1 else "[bold green]no regression[/]")
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(summary)
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step:
        with open(step, "a") as f:
            f.write(summary)
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(junit_xml(result, run_dir.name))
    raise typer.Exit(result.exit_code)
