"""Every analysis of one run, from its graded samples: the tables a report shows.

    analysis = analyze_run(graded, per_problem, ks, model_shape=manifest["model_shape"])
    analysis.curves        # metric, k, value, ci_low, ci_high, n_problems, method
    analysis.tables        # name -> DataFrame (cost, frontier, fit, difficulty, arise)

Everything comes from the one pool of samples: pass@k, maj@k and tokens@k
(``curves.py``, estimated once per problem), best-of-N, weighted vote, RPC and first-finish when their
inputs are present (``selection/``), costs in tokens and FLOPs from the
model's own shape (``cost.py``), the Pareto frontier of accuracy against
cost (``pareto.py``), the coverage law exp(a k^b) (``scaling.py``), ARISE
over the k levels, and accuracy by difficulty with the compute-optimal
strategy per bin (``difficulty.py``). Each per-metric curve gets a bootstrap
95% CI over problems from the per-problem estimates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .curves import bootstrap_ci, per_problem_estimates
from .registry import ACCURACY_METRICS, SELECTION_STRATEGIES, names

OWN_COST = names(own_cost=True)  # metrics whose tokens are their own, not k x mean tokens


@dataclass
class Analysis:
    curves: pd.DataFrame
    per_problem: pd.DataFrame  # problem_id, metric, k, value (long)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    fit: dict | None = None
    notes: list[str] = field(default_factory=list)


def analyze_run(graded: pd.DataFrame, problems: pd.DataFrame, ks: Sequence[int], *,
                model_shape: dict | None = None, n_boot: int = 1000, seed: int = 0,
                verifier_shape: dict | None = None) -> Analysis:
    """``problems``: ``reduce_per_problem(graded)``, built once by the caller; every per-problem
    estimate and the cost table read it. ``verifier_shape``: the verifier model's shape, for its
    FLOPs in the cost table."""
    from .selection import selection_curves

    ks = sorted(set(int(k) for k in ks))
    # Every per-problem estimate once (pass@k, maj@k and tokens@k, then the
    # selection metrics); the curves are their means with bootstrap CIs.
    cols = ["problem_id", "metric", "k", "value", "method"]
    sel = selection_curves(graded, ks, problems=problems, seed=seed)
    own_cost = sel[sel["metric"].isin(OWN_COST)][["problem_id", "metric", "k", "tokens"]]
    estimates = pd.concat([per_problem_estimates(problems, ks, seed=seed)[cols], sel[cols]],
                          ignore_index=True)
    curves = _aggregate(estimates, n_boot=n_boot, seed=seed)
    long = estimates[["problem_id", "metric", "k", "value"]]
    analysis = Analysis(curves=curves, per_problem=long)

    from .verification import verifier_cost

    cost = _cost_table(curves, own_cost, problems, ks, model_shape, analysis.notes)
    cost = verifier_cost(cost, graded, verifier_shape)
    analysis.tables["cost"] = cost
    analysis.tables["frontier"] = _frontier(curves, cost)
    analysis.fit, analysis.tables["coverage_fit"] = _coverage_fit(curves)
    analysis.tables["arise"] = _arise(long, problems, ks, own_cost)
    diff, optimal = _difficulty(long, problems, ks, seed)
    analysis.tables["difficulty"] = diff
    analysis.tables["compute_optimal"] = optimal
    return analysis


def _aggregate(per_problem: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Mean over problems with bootstrap CIs, one row per (metric, k).

    bootstrap_ci draws its resamples from (seed, P) alone, so every metric
    gets the same resampled problem sets, as one joint bootstrap would.
    """
    rows = []
    for metric, g in per_problem.groupby("metric", sort=False):
        wide = g.pivot(index="problem_id", columns="k", values="value").sort_index(axis=1)
        mat = wide.to_numpy(dtype=float)
        lo, hi = bootstrap_ci(mat, n_boot=n_boot, seed=seed) if n_boot else (
            np.full(mat.shape[1], np.nan), np.full(mat.shape[1], np.nan))
        methods = g.groupby("k")["method"].agg(lambda m: "+".join(sorted(set(m))))
        for j, k in enumerate(wide.columns):
            rows.append({"metric": metric, "k": int(k), "value": float(mat[:, j].mean()),
                         "ci_low": float(lo[j]), "ci_high": float(hi[j]),
                         "n_problems": int(mat.shape[0]), "method": methods[k]})
    return pd.DataFrame(rows)


def _cost_table(curves, own_cost, problems, ks, model_shape, notes) -> pd.DataFrame:
    """Per (metric, k): expected completion tokens and, with a model shape, FLOPs."""
    tokens = curves[curves["metric"] == "tokens@k"].set_index("k")["value"]
    rows = []
    for metric in ACCURACY_METRICS:
        for k in ks:
            if metric in OWN_COST:  # e.g. ffs@k: all k stop when the first finishes: k * L_min
                t = own_cost[(own_cost["metric"] == metric) & (own_cost["k"] == k)]["tokens"].mean()
            else:
                t = tokens.get(k, np.nan)
            rows.append({"metric": metric, "k": k, "tokens": float(t)})
    cost = pd.DataFrame(rows)
    cost = cost[cost["metric"].isin(set(curves["metric"]))].reset_index(drop=True)
    if model_shape:
        from ..models import ModelShape
        from .cost import cost_at_k

        shape = ModelShape(**model_shape)
        # The per-problem table carries the token moments the cost kinds need.
        flops = cost_at_k(problems, shape, ks, "monkeys").set_index("k")["cost"]
        eflops = cost_at_k(problems, shape, ks, "kinetics").set_index("k")["cost"]
        # FFS decodes k * L_min tokens; scale its FLOPs by its share of the tokens.
        ratio = np.where(cost["metric"].isin(OWN_COST), cost["tokens"] / cost["k"].map(tokens), 1.0)
        cost["flops"] = cost["k"].map(flops) * ratio
        cost["eflops"] = cost["k"].map(eflops) * ratio
    else:
        notes.append("FLOPs not computed: the model's shape could not be read from its files")
    return cost


def _frontier(curves: pd.DataFrame, cost: pd.DataFrame) -> pd.DataFrame:
    from .pareto import pareto_frontier

    acc = curves[curves["metric"].isin(SELECTION_STRATEGIES)][["metric", "k", "value"]]
    points = acc.merge(cost, on=["metric", "k"], how="left").dropna(subset=["tokens"])
    if points.empty:
        return points
    out = pareto_frontier(points, "tokens", "value", out_col="on_frontier")
    if "flops" in points.columns:
        # Verifier FLOPs count: best-of-N is charged its reward model's forward passes.
        x = "total_flops" if "total_flops" in points.columns else "flops"
        out["on_frontier_flops"] = pareto_frontier(points, x, "value")["on_frontier"]
    return out.sort_values(["tokens", "metric"]).reset_index(drop=True)


def _coverage_fit(curves: pd.DataFrame) -> tuple[dict | None, pd.DataFrame]:
    from .scaling import fit_coverage_law

    pk = curves[curves["metric"] == "pass@k"].sort_values("k")
    usable = pk[(pk["value"] > 0) & (pk["value"] < 1)]
    if len(usable) < 2:
        return None, pd.DataFrame()
    try:
        law = fit_coverage_law(pk["k"].to_numpy(float), pk["value"].to_numpy(float))
    except (ValueError, FloatingPointError):
        return None, pd.DataFrame()
    params = {"a": law.a, "b": law.b, "r2": law.r2, "rmse": law.rmse, "n_used": law.n_used}
    kmax = float(pk["k"].max())
    grid = np.unique(np.geomspace(1, max(kmax * 4, 2), 60))
    fitted = pd.DataFrame({"k": grid, "value": law.predict(grid)})
    params["saturation_k_eps_0.01"] = law.saturation(0.01, int(max(kmax * 1000, 10)))
    table = pd.DataFrame([params])
    return {"params": params, "fitted": fitted, "measured": pk}, table


def _arise(long: pd.DataFrame, problems: pd.DataFrame, ks, own_cost: pd.DataFrame) -> pd.DataFrame:
    """ARISE over the k levels, per strategy: gains discounted by extra tokens."""
    from .scaling import arise

    if len(ks) < 2:
        return pd.DataFrame()
    mean_tokens = problems.set_index("problem_id")["completion_tokens_mean"]
    rows = []
    for metric in SELECTION_STRATEGIES:
        g = long[long["metric"] == metric]
        if g.empty:
            continue
        tokens = g["k"].to_numpy() * g["problem_id"].map(mean_tokens).to_numpy()
        if metric in OWN_COST:  # e.g. ffs@k: all k stop when the first finishes
            own = own_cost[own_cost["metric"] == metric].set_index(["problem_id", "k"])["tokens"]
            tokens = own.reindex(pd.MultiIndex.from_arrays([g["problem_id"], g["k"]])).to_numpy()
        levels = pd.DataFrame({
            "problem_id": g["problem_id"].to_numpy(),
            "level": g["k"].to_numpy(),
            "accuracy": g["value"].to_numpy(),
            "tokens": tokens,
        })
        rows.append({"strategy": metric, "arise": arise(levels), "levels": len(ks),
                     "tokens": "expected completion tokens of the strategy at k"})
    return pd.DataFrame(rows)


def _difficulty(long: pd.DataFrame, problems: pd.DataFrame, ks, seed: int):
    from .difficulty import compute_optimal_by_difficulty, oracle_difficulty

    if len(problems) < 2:
        return pd.DataFrame(), pd.DataFrame()
    n_bins = min(5, len(problems))
    bins = oracle_difficulty(problems, n_bins)  # problem_id -> level (1 = easiest)
    kmax = max(ks)
    top = long[(long["k"] == kmax) & long["metric"].isin(ACCURACY_METRICS)].copy()
    top["bin"] = top["problem_id"].map(bins)
    diff = (top.groupby(["bin", "metric"])["value"].agg(["mean", "size"]).reset_index()
            .rename(columns={"mean": "value", "size": "n_problems"}))
    diff["k"] = kmax
    strat = long[long["metric"].isin(SELECTION_STRATEGIES)]
    if strat["metric"].nunique() < 2 or len(problems) < 4:
        return diff, pd.DataFrame()
    try:
        optimal = compute_optimal_by_difficulty(
            strat, budget_col="k", strategy_col="metric", value_col="value", bins=bins,
            folds=2, seed=seed)
    except ValueError:
        optimal = pd.DataFrame()
    return diff, optimal
