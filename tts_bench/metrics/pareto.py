"""Cost-accuracy frontiers: the Pareto set of configurations, and Kinetics' per-problem frontier.

    points = pd.DataFrame({"model": ..., "strategy": ..., "k": ..., "cost": ..., "accuracy": ...})
    marked = pareto_frontier(points, "cost", "accuracy", group_cols=["dataset"])
    marked[marked.on_frontier].sort_values("cost")       # the frontier, cheapest first

    long = pd.DataFrame({"problem_id": ..., "config": ..., "cost": ..., "accuracy": ...})
    kinetics_frontier(long, cost_grid=50)                # budget, accuracy, ...

Pareto (metrics reference, section 5): a point is on the frontier when no
other point has cost <= and accuracy >= with at least one strict. Ties: two
identical points do not dominate each other, so both stay on the frontier;
of points with equal cost only those with the highest accuracy can be on it,
and of points with equal accuracy only the cheapest. Points come from any mix
of models, strategies and budgets (one row each); ``group_cols`` computes a
separate frontier per group (for instance per dataset).

Kinetics frontier (section 4; Infini-AI-Lab/Kinetics): for each budget C,
each problem takes its best accuracy over the configurations whose cost on
that problem is <= C, and the frontier is the mean over problems. A problem
with no configuration within C scores 0 (nothing was spent on it).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from .registry import names

__all__ = ["kinetics_frontier", "log_cost_grid", "pareto_frontier", "pareto_mask"]


def pareto_mask(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """True where (cost, accuracy) is not dominated (lower cost and higher accuracy are better).

    O(n log n): sort by cost; a point survives when its accuracy is the best
    among points of its own cost and strictly above every cheaper point's.
    """
    cost = np.asarray(cost, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    if cost.shape != acc.shape or cost.ndim != 1:
        raise ValueError("cost and accuracy must be 1-D arrays of one length")
    if np.isnan(cost).any() or np.isnan(acc).any():
        raise ValueError("cost and accuracy must not be NaN; drop or fill those points first")
    if cost.size == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((acc, cost))  # by cost, then accuracy
    c, a = cost[order], acc[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])  # first index of each cost level
    group = np.cumsum(np.r_[True, c[1:] != c[:-1]]) - 1
    best_in_level = np.maximum.reduceat(a, starts)
    # best accuracy among strictly cheaper points
    best_cheaper = np.r_[-np.inf, np.maximum.accumulate(best_in_level)[:-1]]
    keep_sorted = (a == best_in_level[group]) & (a > best_cheaper[group])
    keep = np.empty_like(keep_sorted)
    keep[order] = keep_sorted
    return keep


def pareto_frontier(
    df: pd.DataFrame,
    cost_col: str,
    acc_col: str,
    group_cols: Optional[Sequence[str]] = None,
    out_col: str = "on_frontier",
) -> pd.DataFrame:
    """A copy of ``df`` with a boolean column ``out_col``: the row is on its group's Pareto frontier.

    Lower ``cost_col`` and higher ``acc_col`` are better. Rows are points
    (any mix of models, strategies, budgets); ``group_cols`` gives one
    frontier per group. Ties are described in the module docstring.
    """
    cols = [cost_col, acc_col, *(group_cols or [])]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"points table lacks column(s) {missing}")
    out = df.copy()
    mask = np.zeros(len(df), dtype=bool)
    cost = df[cost_col].to_numpy(dtype=np.float64)
    acc = df[acc_col].to_numpy(dtype=np.float64)
    if group_cols:
        codes = df.groupby(list(group_cols), sort=False, dropna=False).ngroup().to_numpy()
        for g in np.unique(codes):
            idx = np.flatnonzero(codes == g)
            mask[idx] = pareto_mask(cost[idx], acc[idx])
    else:
        mask = pareto_mask(cost, acc)
    out[out_col] = mask
    return out


def log_cost_grid(costs: Union[np.ndarray, pd.Series], num: int = 50) -> np.ndarray:
    """``num`` budgets spaced evenly in log from the smallest positive cost to the largest."""
    c = np.asarray(costs, dtype=np.float64)
    c = c[np.isfinite(c) & (c > 0)]
    if c.size == 0:
        raise ValueError("no positive finite cost to build a log grid from")
    if num < 1:
        raise ValueError(f"num must be >= 1; got {num}")
    lo, hi = c.min(), c.max()
    return np.array([hi]) if num == 1 or lo == hi else np.geomspace(lo, hi, num)


def kinetics_frontier(
    per_problem_points: pd.DataFrame,
    cost_grid: Union[int, Sequence[float], np.ndarray] = 50,
    *,
    problem_col: str = "problem_id",
    config_col: str = "config",
    cost_col: str = "cost",
    acc_col: str = "accuracy",
) -> pd.DataFrame:
    """Mean over problems of each problem's best accuracy within each cost budget.

    ``per_problem_points``: a long table, one row per (problem, config), with
    that configuration's cost and accuracy on that problem (config: any
    hashable label, e.g. "qwen3-8b/n=16"). ``cost_grid``: the budgets, or a
    number of budgets for :func:`log_cost_grid` over the table's costs.
    Returns one row per budget: budget, accuracy (mean over all problems of
    the table; 0 for a problem with nothing affordable), n_problems,
    n_affordable (problems with at least one configuration within budget).
    """
    t = per_problem_points
    missing = [c for c in (problem_col, config_col, cost_col, acc_col) if c not in t.columns]
    if missing:
        raise ValueError(f"per-problem points lack column(s) {missing}")
    if len(t) == 0:
        raise ValueError("no per-problem points to build a frontier from")
    cost = t[cost_col].to_numpy(dtype=np.float64)
    acc = t[acc_col].to_numpy(dtype=np.float64)
    if np.isnan(cost).any() or np.isnan(acc).any():
        raise ValueError("cost and accuracy must not be NaN; drop or fill those points first")
    grid = log_cost_grid(cost, cost_grid) if np.ndim(cost_grid) == 0 else np.asarray(cost_grid, float)
    grid = np.sort(grid)
    pid, _ = pd.factorize(t[problem_col], sort=True)
    P = int(pid.max()) + 1

    # Rank every cost and budget on one scale; then key = problem * R + rank
    # is sorted within problems and one searchsorted answers every (problem, budget).
    scale = np.unique(np.concatenate([cost, grid]))
    R = scale.size + 1
    key = pid.astype(np.int64) * R + np.searchsorted(scale, cost)
    order = np.argsort(key, kind="stable")
    key, acc_sorted, pid_sorted = key[order], acc[order], pid[order]
    # running best accuracy within each problem, cheapest first
    best = pd.Series(acc_sorted).groupby(pid_sorted).cummax().to_numpy()
    q = np.arange(P, dtype=np.int64)[:, None] * R + np.searchsorted(scale, grid)[None, :]
    pos = np.searchsorted(key, q, side="right") - 1  # last point of cost <= budget
    ok = (pos >= 0) & (pid_sorted[np.clip(pos, 0, None)] == np.arange(P)[:, None])
    value = np.where(ok, best[np.clip(pos, 0, None)], 0.0)
    return pd.DataFrame(
        {
            "budget": grid,
            "accuracy": value.mean(axis=0),
            "n_problems": P,
            "n_affordable": ok.sum(axis=0).astype(np.int64),
        }
    )


def cross_run_frontiers(runs: "dict[str, dict]", *, strategies: Sequence[str],
                        cost_grid: int = 40) -> "tuple[pd.DataFrame, pd.DataFrame]":
    """Frontiers across runs (models, strategies, budgets) at equal cost.

    ``runs``: name -> {"curves": metrics table, "cost": the run's cost table
    (metric, k, tokens[, flops]), "per_problem": long per-problem estimates
    (problem_id, metric, k, value), "tokens": problem_id -> mean completion
    tokens}. Returns (points, kinetics): every (run, strategy, k) point with
    its tokens (and FLOPs where every run has them) marked on_frontier; and
    the Kinetics per-problem frontier over expected completion tokens on
    the problems every run shares (each problem's best configuration within
    each budget, averaged over problems).
    """
    pts = []
    for name, r in runs.items():
        acc = r["curves"][r["curves"]["metric"].isin(strategies)][["metric", "k", "value"]]
        pts.append(acc.merge(r["cost"], on=["metric", "k"], how="inner").assign(run=name))
    points = pd.concat(pts, ignore_index=True)
    points = pareto_frontier(points, "tokens", "value")
    if "flops" in points.columns and points["flops"].notna().all():
        points["on_frontier_flops"] = pareto_frontier(points, "flops", "value")["on_frontier"]
    shared = set.intersection(*(set(r["per_problem"]["problem_id"]) for r in runs.values()))
    rows = []
    for name, r in runs.items():
        pp = r["per_problem"]
        pp = pp[pp["problem_id"].isin(shared) & pp["metric"].isin(strategies)
                & ~pp["metric"].isin(names(own_cost=True))]  # e.g. ffs@k: its cost is not k x mean tokens
        rows.append(pd.DataFrame({
            "problem_id": pp["problem_id"].to_numpy(),
            "config": (name + "/" + pp["metric"] + "/k=" + pp["k"].astype(str)).to_numpy(),
            "cost": (pp["k"] * pp["problem_id"].map(r["tokens"])).to_numpy(dtype=float),
            "accuracy": pp["value"].to_numpy(dtype=float),
        }))
    long = pd.concat(rows, ignore_index=True)
    kinetics = kinetics_frontier(long, cost_grid) if len(long) else pd.DataFrame()
    return points.sort_values(["tokens", "run", "metric"]).reset_index(drop=True), kinetics
