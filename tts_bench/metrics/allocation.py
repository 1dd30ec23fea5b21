"""Comparisons across runs at equal compute: "Can 1B surpass 405B" and Snell's compute-optimal choice.

    table = equal_compute_table(points, labels)               # best config per run within each budget
    table = compute_optimal_across_runs(configs, difficulty)  # best family per difficulty bin and budget

``points``: one row per (run, metric or strategy, k or level) with its
accuracy (``value``) and cost (``flops`` where every run has them, else
``tokens``), as ``tts-bench report A B ...`` gathers them (best-of-N and
searches charged their verifier's FLOPs). ``labels``: run -> policy model
and verifier.

Equal compute: on a log grid of budgets, each run's best point whose cost
fits the budget; runs of a small policy with a verifier set against a big
one without, at the same FLOPs.

Compute-optimal by difficulty (Snell et al. 2024): a family is a run's
metric or strategy (``runA/maj@k``, ``runB/beam-search``); at budget b a
problem's value for a family is the value at that family's largest k whose
mean cost fits b (0 when none fits: it cannot answer within b). Problems are
binned by the first run's pass@1 (oracle difficulty); per bin and budget the
family is chosen by 2-fold cross-validation (``difficulty.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .difficulty import compute_optimal_by_difficulty
from .pareto import log_cost_grid
from .registry import names


def cost_column(points: pd.DataFrame) -> str:
    return "flops" if "flops" in points.columns and points["flops"].notna().all() else "tokens"


def equal_compute_table(points: pd.DataFrame, labels: dict[str, dict], num: int = 12) -> pd.DataFrame:
    """Per budget and run: the run's best (metric, k) within the budget and its accuracy."""
    col = cost_column(points)
    pts = points.dropna(subset=[col, "value"])
    rows = []
    for budget in log_cost_grid(pts[col], num):
        for run, g in pts.groupby("run", sort=False):
            fit = g[g[col] <= budget * (1 + 1e-12)]
            if fit.empty:
                continue
            best = fit.sort_values(["value", col], ascending=[False, True]).iloc[0]
            rows.append({"budget": float(budget), "unit": col, "run": run,
                         "policy": labels.get(run, {}).get("policy"),
                         "verifier": labels.get(run, {}).get("verifier"),
                         "strategy": best["metric"], "k": int(best["k"]), "cost": float(best[col]),
                         "accuracy": float(best["value"])})
    return pd.DataFrame(rows)


def compute_optimal_across_runs(configs: pd.DataFrame, difficulty: pd.Series, *, num: int = 8,
                                folds: int = 2, seed: int = 0) -> pd.DataFrame:
    """Snell's compute-optimal family per difficulty bin and budget, cross-validated.

    ``configs``: one row per (family, k, problem_id) with ``value`` and the
    family's mean ``cost`` at that k. ``difficulty``: problem_id -> bin.
    """
    families = sorted(configs["family"].unique())
    # The problems every family answered (runs may cover different subsets) and that have a bin.
    common = set(difficulty.index)
    for fam in families:
        common &= set(configs.loc[configs["family"] == fam, "problem_id"])
    if not common:
        return pd.DataFrame()
    problems = sorted(common)
    configs = configs[configs["problem_id"].isin(common)]
    budgets = log_cost_grid(configs["cost"], num)
    rows = []
    for fam in families:
        f = configs[configs["family"] == fam]
        ks = f.groupby("k")["cost"].first().sort_index()
        wide = f.pivot_table(index="problem_id", columns="k", values="value").reindex(problems)
        for b in budgets:
            fits = ks[ks <= b * (1 + 1e-12)]
            vals = wide[fits.index[-1]].fillna(0.0) if len(fits) else pd.Series(0.0, index=problems)
            rows.append(pd.DataFrame({"problem_id": problems, "budget": float(b), "strategy": fam,
                                      "value": vals.to_numpy(dtype=float)}))
    long = pd.concat(rows, ignore_index=True)
    return compute_optimal_by_difficulty(long, "budget", "strategy", "value", difficulty.loc[problems],
                                         folds=folds, seed=seed)


def family_configs(run: str, per_problem: pd.DataFrame, cost: pd.DataFrame, col: str) -> pd.DataFrame:
    """A run's (family, k, problem_id, value, cost) rows from its per-problem values and cost table.

    ``per_problem``: problem_id, metric, k, value (the run's per-problem
    metrics, and its strategy's levels from :func:`level_values`).
    """
    pp = per_problem.merge(cost[["metric", "k", col]], on=["metric", "k"], how="inner")
    pp = pp[~pp["metric"].isin(names(family="coverage"))]  # the oracle is not a strategy one can run
    return pd.DataFrame({"family": run + "/" + pp["metric"], "k": pp["k"].to_numpy(dtype=np.int64),
                         "problem_id": pp["problem_id"].to_numpy(),
                         "value": pp["value"].to_numpy(dtype=float), "cost": pp[col].to_numpy(dtype=float)})


def level_values(graded: pd.DataFrame, strategy: str) -> pd.DataFrame:
    """Per (problem, level) of a strategy run: the search's answer (searches) or mean correctness."""
    from .search import _search_credit

    rows = []
    search = "search_score" in graded.columns
    for (pid, level), g in graded.groupby(["problem_id", "level"], sort=True):
        if search:
            ok = g[g["completion"].astype(bool)]
            v = _search_credit(ok) if len(ok) else 0.0
        else:
            v = float(g["correct"].astype(float).mean())
        rows.append({"problem_id": pid, "metric": strategy, "k": int(level), "value": v})
    return pd.DataFrame(rows)
