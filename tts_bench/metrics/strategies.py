"""Metrics of strategies with scaling levels: budgets, revision depth, adaptive stopping.

    tables = strategy_tables("budget-forcing", graded, config, n_boot=1000)

``graded`` has one row per trajectory with ``level``, ``correct``,
``answer_class`` and the token columns. Every accuracy is a mean over
problems with a bootstrap 95% CI over problems (seeded).

- ``levels``: per level, accuracy (mean over a problem's trajectories, then
  over problems), majority vote over a problem's trajectories, and mean
  tokens (completion, thinking, answer, extension) per trajectory.
- ``s1`` (budget-forcing): Control, the share of trajectories whose thinking
  stays within its budget (a capped run may end early, so the floor is 0,
  not the smallest budget: with capping only, s1's [a_min, a_max] window
  over per-budget means would count an early end at the smallest budget as
  out of control); Scaling (mean slope of accuracy over budget pairs, points
  per 1,000 thinking tokens, with the mean thinking tokens per budget as x)
  and Performance (best accuracy), via ``scaling.s1_metrics``.
- ``revise_depth``: per depth, the last answer's accuracy and the majority
  over the chain so far; ``revise_split``: Snell's split of a fixed number of
  samples, chains x depth, majority over the chains' answers at that depth
  (unbiased maj@k over the n chains).
- ``adaptive``: accuracy of majority vote over the samples the rule kept,
  mean samples per problem, share of the budget saved, and fixed-n majority
  vote at the same mean budget (the first ceil(mean) samples everywhere).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd

from .curves import bootstrap_ci
from .estimators import maj_at_k
from .scaling import s1_metrics


def _boot_ci(per_problem: np.ndarray, n_boot: int, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap CI of a per-problem mean (the curves' bootstrap)."""
    x = np.asarray(per_problem, dtype=np.float64)
    if x.size == 0 or n_boot <= 0:
        return float("nan"), float("nan")
    lo, hi = bootstrap_ci(x[:, None], n_boot=n_boot, seed=seed)
    return float(lo[0]), float(hi[0])


def maj_of_pool(classes, correct, k: int) -> float:
    """maj@k of one problem's pool, by the estimator every maj@k uses (``estimators.maj_at_k``).

    Fractional credit for tied leaders; answers with no class (nothing
    extracted) do not vote; the correct class is the class of the correct rows.
    """
    cls = [None if c is None or (isinstance(c, float) and math.isnan(c)) else c for c in classes]
    if not cls:
        return 0.0
    right = next((c for c, ok in zip(cls, correct) if ok and c is not None), None)
    counts = Counter(c for c in cls if c is not None)
    return maj_at_k(counts, right, len(cls), min(int(k), len(cls))).value


def majority_credit(classes, correct) -> float:
    """Majority vote over the whole pool (maj@n)."""
    classes = list(classes)
    return maj_of_pool(classes, list(correct), len(classes))


def level_table(graded: pd.DataFrame, *, n_boot: int, seed: int = 0) -> pd.DataFrame:
    rows = []
    tok_cols = [c for c in ("completion_tokens", "thinking_tokens", "answer_tokens", "extension_tokens")
                if c in graded.columns]
    for level, g in graded.groupby("level", sort=True):
        acc = g.groupby("problem_id")["correct"].mean().to_numpy(dtype=float)
        maj = np.array([majority_credit(pg["answer_class"], pg["correct"])
                        for _, pg in g.groupby("problem_id")])
        lo, hi = _boot_ci(acc, n_boot, seed)
        mlo, mhi = _boot_ci(maj, n_boot, seed)
        row = {"level": int(level), "n_problems": int(acc.size),
               "trajectories_per_problem": float(len(g) / max(acc.size, 1)),
               "accuracy": float(acc.mean()), "ci_low": lo, "ci_high": hi,
               "majority": float(maj.mean()), "majority_ci_low": mlo, "majority_ci_high": mhi}
        for c in tok_cols:
            row[f"mean_{c}"] = float(g[c].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def s1_table(levels: pd.DataFrame, graded: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    runs = levels.rename(columns={"level": "budget", "mean_thinking_tokens": "thinking_tokens"})
    m = s1_metrics(runs, x_col="thinking_tokens", accuracy_col="accuracy", budget_col="budget",
                   a_min=0.0, a_max=float(max(budgets)))
    over = int((graded["thinking_tokens"] > max(budgets)).sum())
    within = float(((graded["thinking_tokens"] <= graded["level"])).mean())
    return pd.DataFrame([{
        "control": within, "control_of_budget_means": m.control, "over_max_budget": over,
        "scaling_points_per_1k_tokens": m.scaling, "performance_points": m.performance,
        "n_budgets": m.n_runs, "n_pairs": m.n_pairs,
    }])


def revise_tables(graded: pd.DataFrame, *, n_boot: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    depth_rows = []
    g = graded.sort_values(["problem_id", "trajectory", "level"])
    for d in sorted(g["level"].unique()):
        at = g[g["level"] == d]
        last = at.groupby("problem_id")["correct"].mean().to_numpy(dtype=float)
        upto = g[g["level"] <= d]
        chain_maj = np.array([
            np.mean([majority_credit(cg["answer_class"], cg["correct"])
                     for _, cg in pg.groupby("trajectory")])
            for _, pg in upto.groupby("problem_id")])
        lo, hi = _boot_ci(last, n_boot, seed)
        mlo, mhi = _boot_ci(chain_maj, n_boot, seed)
        depth_rows.append({"depth": int(d), "last_answer": float(last.mean()), "ci_low": lo, "ci_high": hi,
                           "chain_majority": float(chain_maj.mean()), "chain_majority_ci_low": mlo,
                           "chain_majority_ci_high": mhi,
                           "mean_completion_tokens": float(at["completion_tokens"].mean())})
    # Snell's split: w parallel chains of depth d (w * d samples), majority over the
    # chains' answers at depth d: maj@w over the n chains.
    split_rows = []
    n = int(g.groupby("problem_id")["trajectory"].nunique().min())
    depths = sorted(g["level"].unique())
    ws = sorted({2**i for i in range(12) if 2**i <= n} | {n})
    for d in depths:
        at = g[g["level"] == d]
        for w in ws:
            vals = np.array([maj_of_pool(pg["answer_class"].tolist(), pg["correct"].tolist(), w)
                             for _, pg in at.groupby("problem_id")])
            lo, hi = _boot_ci(vals, n_boot, seed)
            split_rows.append({"samples": int(w * d), "chains": int(w), "depth": int(d),
                               "majority": float(vals.mean()), "ci_low": lo, "ci_high": hi})
    return {"revise_depth": pd.DataFrame(depth_rows),
            "revise_split": pd.DataFrame(split_rows).sort_values(["samples", "depth"]).reset_index(drop=True)}


def adaptive_table(graded: pd.DataFrame, budget_n: int, *, n_boot: int, seed: int = 0) -> pd.DataFrame:
    from ..strategies.adaptive import ADAPTIVE_LEVEL, FIXED_LEVEL

    ad = graded[graded["level"] == ADAPTIVE_LEVEL]
    per = ad.groupby("problem_id")
    acc = np.array([majority_credit(pg["answer_class"], pg["correct"]) for _, pg in per])
    used = per.size().to_numpy(dtype=float)
    lo, hi = _boot_ci(acc, n_boot, seed)
    row = {"arm": "adaptive", "accuracy": float(acc.mean()), "ci_low": lo, "ci_high": hi,
           "mean_samples": float(used.mean()), "max_samples": int(budget_n),
           "saved_share": float(1 - used.sum() / (used.size * budget_n)),
           "mean_completion_tokens": float(per["completion_tokens"].sum().mean())}
    rows = [row]
    fx = graded[graded["level"] == FIXED_LEVEL]
    if len(fx):
        fper = fx.groupby("problem_id")
        facc = np.array([majority_credit(pg["answer_class"], pg["correct"]) for _, pg in fper])
        flo, fhi = _boot_ci(facc, n_boot, seed)
        k = int(fper.size().min())
        rows.append({"arm": f"fixed n={k}", "accuracy": float(facc.mean()), "ci_low": flo, "ci_high": fhi,
                     "mean_samples": float(fper.size().mean()), "max_samples": k, "saved_share": 0.0,
                     "mean_completion_tokens": float(fper["completion_tokens"].sum().mean())})
    return pd.DataFrame(rows)


TITLES = {
    "levels": "Accuracy per level (budget, depth or round) with 95% CIs",
    "s1": "s1 budget forcing: Control, Scaling (points per 1k thinking tokens), Performance",
    "revise_depth": "Sequential revisions: accuracy at every depth",
    "revise_split": "Snell's split of samples: parallel chains x sequential depth",
    "adaptive": "Adaptive consistency against fixed-n majority vote at the same mean budget",
    "arise_repeats": "ARISE adaptive repeats per (problem, level): runs used, means, CVs",
    "arise_adaptive": "ARISE over the levels, from the means of the adaptive repeats",
    "strategy_cost": "Cost per level: tokens by phase, FLOPs and eFLOPs with the model's shape "
                     "(a verifier's with its own)",
    "search": "Search per budget N: its answer, majority and weighted vote over its completions (95% CIs), "
              "and the whole tree's cost per problem (policy and verifier calls and tokens)",
    "solve_vs_verify": "Self-consistency against generative verification at matched compute "
                       "C = S(1 + lambda V), 95% CIs",
}


def strategy_cost(graded: pd.DataFrame, strategy: str, model_shape: dict | None,
                  verifier_shape: dict | None = None) -> pd.DataFrame:
    """Per level: accuracy, tokens by phase, the reused prefix, FLOPs and eFLOPs per trajectory.

    Tokens are what a trajectory generated (its calls' completion tokens).
    FLOPs (Large Language Monkeys' per-token model) and Kinetics eFLOPs count
    it as one continuous generation after its first call's input
    (``prompt_tokens``): what an engine with prefix caching pays;
    ``reread_prefix_tokens`` is the prefix re-read by later calls, which
    prefix caching saves. Adaptive consistency answers once per problem from
    all its samples: its accuracy is the majority vote and its costs are per
    problem (samples x per-sample cost; prefill counted per sample).
    """
    from ..models import ModelShape

    rows = []
    shape = ModelShape(**model_shape) if model_shape else None
    pooled = strategy == "adaptive"  # one answer per problem from all its samples: per-problem sums
    for level, g in graded.groupby("level", sort=True):
        per = g.groupby("problem_id")
        if pooled:
            acc = float(np.mean([majority_credit(pg["answer_class"], pg["correct"]) for _, pg in per]))
            scale = float(per.size().mean())  # samples per problem: per-sample means x this
        else:
            acc, scale = float(per["correct"].mean().mean()), 1.0
        row = {"strategy": strategy, "level": int(level), "accuracy": acc,
               "tokens": float(g["completion_tokens"].mean()) * scale}
        for c in ("thinking_tokens", "answer_tokens", "extension_tokens", "prompt_tokens"):
            if c in g.columns:
                row[c] = float(g[c].mean()) * scale
        if "prefix_tokens" in g.columns:
            row["reread_prefix_tokens"] = float(g["prefix_tokens"].mean()) * scale
        if shape is not None:
            from .cost import decode_flops, kinetics_eflops, prefill_flops

            ctx = g["prompt_tokens"].to_numpy(dtype=float)
            gen = g["completion_tokens"].to_numpy(dtype=float)
            row["flops"] = float((prefill_flops(shape, ctx) + decode_flops(shape, ctx, gen)).mean()) * scale
            row["eflops"] = float(kinetics_eflops(shape, ctx, gen, 1).total.mean()) * scale
        if "verifier_input_tokens" in g.columns and g["verifier_input_tokens"].notna().any():
            from .verification import verifier_sample_costs

            vshape = ModelShape(**verifier_shape) if verifier_shape else None
            for col, v in verifier_sample_costs(g, vshape).drop(columns="problem_id").mean().items():
                row[col] = float(v) * scale
        rows.append(row)
    return pd.DataFrame(rows)


def strategy_tables(strategy: str, graded: pd.DataFrame, cfg: dict, *, n_boot: int,
                    seed: int = 0, model_shape: dict | None = None,
                    verifier_shape: dict | None = None) -> dict[str, pd.DataFrame]:
    """The strategy's own tables (empty for parallel)."""
    if strategy in ("parallel", None, "") or "level" not in graded.columns:
        return {}
    out: dict[str, pd.DataFrame] = {"levels": level_table(graded, n_boot=n_boot, seed=seed),
                                    "strategy_cost": strategy_cost(graded, strategy, model_shape,
                                                                   verifier_shape)}
    if strategy == "budget-forcing":
        out["s1"] = s1_table(out["levels"], graded, list(cfg["strategy"]["budgets"]))
    elif strategy == "revise":
        out.update(revise_tables(graded, n_boot=n_boot, seed=seed))
    elif strategy == "adaptive":
        out["adaptive"] = adaptive_table(graded, int(cfg["budget"]["n"]), n_boot=n_boot, seed=seed)
    elif "search_score" in graded.columns:
        from .search import search_cost, search_table

        out["search"] = search_table(graded, n_boot=n_boot, seed=seed)
        out["strategy_cost"] = search_cost(graded, strategy, model_shape, verifier_shape)
    return out
