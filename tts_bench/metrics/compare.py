"""Paired comparison of two runs on the same problems, with a paired bootstrap CI.

    base = per_problem_estimates(reduce_per_problem(graded_a), ks)
    cand = per_problem_estimates(reduce_per_problem(graded_b), ks)
    cmp = compare_runs(base, cand, n_boot=1000, seed=0)
    cmp.table       # metric k baseline candidate delta ci_low ci_high n_problems wins losses ties
                    # verdict better
    print(summarize_comparison(cmp))

Pairing: only problems present in both runs are compared (the others are
listed in ``only_baseline`` / ``only_candidate``), and only (metric, k)
pairs present in both. delta = mean(candidate) - mean(baseline) over the
common problems; its CI resamples problems with replacement and applies
the same multiplicities to both runs (the bootstrap of the per-problem
differences; every (metric, k) column shares the resamples, as in
:func:`tts_bench.metrics.bootstrap_ci`). Pairing removes the spread of
problem difficulty, which dominates an unpaired CI.

The summary states the difference and its interval and counts problems
where the candidate wins, loses or ties; no p-value. The verdict says
"candidate higher" or "baseline higher" when the whole interval lies on
one side of 0, else "no clear difference"; ``better`` reads that verdict
with the registry's direction of the metric (tokens@k: lower is better):
"candidate", "baseline", or "" (no clear difference, or an unregistered metric).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tts_bench.metrics import registry
from tts_bench.metrics.curves import bootstrap_ci

KEY = ["metric", "k"]


@dataclass(frozen=True)
class PairedComparison:
    """Result of :func:`compare_runs`.

    table           one row per (metric, k): metric, k, baseline, candidate,
                    delta (candidate - baseline), ci_low, ci_high, n_problems,
                    wins, losses, ties (per-problem, candidate vs baseline), verdict
    only_baseline   problem ids dropped because the candidate lacks them
    only_candidate  problem ids dropped because the baseline lacks them
    n_boot, ci, seed the bootstrap settings
    """

    table: pd.DataFrame
    only_baseline: "list"
    only_candidate: "list"
    n_boot: int
    ci: float
    seed: int


def _wide(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in ("problem_id", "metric", "k", "value") if c not in frame]
    if missing:
        raise ValueError(f"{name} estimates lack column(s) {missing}")
    if frame.duplicated(["problem_id", "metric", "k"]).any():
        raise ValueError(f"{name} estimates have duplicate (problem_id, metric, k) rows")
    return frame.set_index(["problem_id", "metric", "k"])["value"].unstack(KEY).astype(np.float64)


def compare_runs(
    baseline: pd.DataFrame,
    candidate: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    tol: float = 1e-12,
) -> PairedComparison:
    """Paired difference candidate - baseline per (metric, k), with a bootstrap CI.

    Inputs are tidy per-problem estimates (problem_id, metric, k, value),
    as :func:`tts_bench.metrics.per_problem_estimates` returns; other
    columns are ignored. Per-problem differences within ``tol`` count as
    ties. Raises ValueError when the runs share no problem or no
    (metric, k), or when a common problem lacks a common (metric, k).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci}")
    base, cand = _wide(baseline, "baseline"), _wide(candidate, "candidate")
    common = base.index.intersection(cand.index).sort_values()
    only_base = sorted(base.index.difference(cand.index).tolist(), key=str)
    only_cand = sorted(cand.index.difference(base.index).tolist(), key=str)
    cols = base.columns.intersection(cand.columns).sort_values()
    if len(common) == 0:
        raise ValueError("the two runs share no problem_id; nothing to pair")
    if len(cols) == 0:
        raise ValueError("the two runs share no (metric, k); nothing to compare")
    b = base.loc[common, cols].to_numpy()
    c = cand.loc[common, cols].to_numpy()
    if np.isnan(b).any() or np.isnan(c).any():
        bad = common[(np.isnan(b) | np.isnan(c)).any(axis=1)][0]
        raise ValueError(f"problem {bad!r} lacks a value for some (metric, k) both runs report")
    diff = c - b
    lo, hi = bootstrap_ci(diff, n_boot=n_boot, seed=seed, ci=ci)
    delta = diff.mean(axis=0)
    # Degenerate resamples (all differences equal) must still contain the point estimate.
    lo, hi = np.minimum(lo, delta), np.maximum(hi, delta)
    verdict = np.where(lo > 0, "candidate higher", np.where(hi < 0, "baseline higher",
                                                            "no clear difference"))
    # +1 where higher is better, -1 where lower is, 0 for a metric the registry does not know.
    sign = np.array([(1.0 if registry.get(m).higher_is_better else -1.0) if registry.is_registered(m) else 0.0
                     for m in cols.get_level_values(0)])
    side = sign * np.where(lo > 0, 1.0, np.where(hi < 0, -1.0, 0.0))
    better = np.where(side > 0, "candidate", np.where(side < 0, "baseline", ""))
    table = pd.DataFrame(
        {
            "metric": cols.get_level_values(0),
            "k": cols.get_level_values(1).astype(np.int64),
            "baseline": b.mean(axis=0),
            "candidate": c.mean(axis=0),
            "delta": delta,
            "ci_low": lo,
            "ci_high": hi,
            "n_problems": len(common),
            "wins": (diff > tol).sum(axis=0),
            "losses": (diff < -tol).sum(axis=0),
            "ties": (np.abs(diff) <= tol).sum(axis=0),
            "verdict": verdict,
            "better": better,
        }
    )
    return PairedComparison(table, only_base, only_cand, n_boot, ci, seed)


def summarize_comparison(result: PairedComparison, *, digits: int = 4) -> str:
    """Plain-text summary: pairing, then one line per (metric, k); no p-values."""
    t = result.table
    lines = [
        f"paired comparison on {int(t['n_problems'].iloc[0])} common problems "
        f"({len(result.only_baseline)} only in baseline, {len(result.only_candidate)} only in "
        f"candidate, dropped); {result.ci:.0%} paired bootstrap CI, {result.n_boot} resamples, "
        f"seed {result.seed}"
    ]
    for row in t.itertuples(index=False):
        lines.append(
            f"{row.metric} k={row.k}: {row.baseline:.{digits}f} -> {row.candidate:.{digits}f}, "
            f"delta {row.delta:+.{digits}f} [{row.ci_low:+.{digits}f}, {row.ci_high:+.{digits}f}]; "
            f"candidate wins {row.wins}, loses {row.losses}, ties {row.ties}: {row.verdict}"
        )
    return "\n".join(lines)
