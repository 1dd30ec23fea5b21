"""Difficulty bins and compute-optimal strategy selection per bin (Snell et al. 2024).

    levels = oracle_difficulty(problems)                 # from reduce_per_problem: pass@1 = c/n
    levels = predicted_difficulty(scored, "score")       # mean verifier score per problem
    table = compute_optimal_by_difficulty(
        per_problem_long, budget_col="budget", strategy_col="strategy",
        value_col="value", bins=levels, folds=2, seed=0,
    )
    #   bin  budget  n_problems  choice_fold_0  choice_fold_1  cv_value  oracle_strategy  oracle_value

Difficulty levels run from 1 (easiest: highest pass@1 or verifier score)
to ``n_bins`` (hardest), as MATH's levels do. Bins are quantiles of the
score: problems are ranked from the highest score down and a rank r
(0-based, of P problems) goes to level floor((r + 0.5) * n_bins / P) + 1,
so distinct scores give bins whose sizes differ by at most one.

Ties at bin edges, deterministically: with ``ties="together"`` (default)
every problem with the same score takes the level of the group's middle
rank, so the level is a function of the score alone (equal scores are
never told apart); bins may then be unequal or empty, e.g. when many
problems have pass@1 = 0. With ``ties="split"`` tied problems are ordered
by problem_id and bins stay equal-sized.

Compute-optimal selection: for every bin and budget, each fold's strategy
is the one with the best mean value on the other folds' problems of that
bin (ties go to the first strategy in sorted order), scored on the
held-out fold; the folds' scores are averaged with equal weight. Folds are
drawn per bin (stratified) from a seeded permutation, so every fold sees
every bin when the bin has at least ``folds`` problems; a fold without
problems in a bin is left out of that bin's average. The in-sample choice
(best mean over all the bin's problems) is reported beside it: its value
is optimistic, the cross-validated one is not.
"""

from __future__ import annotations

from typing import Mapping, Union

import numpy as np
import pandas as pd

TIES = ("together", "split")


def difficulty_bins(
    scores: Union[pd.Series, Mapping], n_bins: int = 5, *, ties: str = "together"
) -> pd.Series:
    """Quantile difficulty level (1 easiest .. n_bins hardest) per problem.

    ``scores``: a Series (index problem_id) or mapping problem_id -> score,
    higher = easier (pass@1, mean verifier score). NaN scores are rejected.
    Returns an int Series indexed by problem_id, named "difficulty".
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}; got {ties!r}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    s = pd.Series(scores, dtype=np.float64) if not isinstance(scores, pd.Series) else scores
    s = s.astype(np.float64)
    if len(s) == 0:
        raise ValueError("no problems to bin")
    if s.isna().any():
        raise ValueError(f"score is missing for problem {s.index[s.isna()][0]!r}")
    if not s.index.is_unique:
        raise ValueError("problem ids must be unique")
    P = len(s)
    # Descending score, then problem_id: a total, reproducible order.
    id_rank = np.asarray(s.index.astype(str)).argsort(kind="stable").argsort(kind="stable")
    order = np.lexsort((id_rank, -s.to_numpy()))
    rank = np.empty(P, dtype=np.float64)
    rank[order] = np.arange(P)
    if ties == "together":
        rank = pd.Series(rank).groupby(s.to_numpy()).transform("mean").to_numpy()
    level = np.minimum(np.floor((rank + 0.5) * n_bins / P).astype(np.int64), n_bins - 1) + 1
    return pd.Series(level, index=s.index.rename("problem_id"), name="difficulty")


def oracle_difficulty(problems: pd.DataFrame, n_bins: int = 5, *, ties: str = "together") -> pd.Series:
    """Levels from each problem's pass@1 = c / n (a reduce_per_problem table)."""
    pass1 = pd.Series(
        problems["c"].to_numpy(dtype=np.float64) / problems["n"].to_numpy(dtype=np.float64),
        index=problems["problem_id"].to_numpy(),
    )
    return difficulty_bins(pass1, n_bins, ties=ties)


def predicted_difficulty(
    scored: pd.DataFrame, score_col: str = "score", n_bins: int = 5, *, ties: str = "together"
) -> pd.Series:
    """Levels from each problem's mean verifier score over its samples (no ground truth)."""
    mean_score = scored.groupby("problem_id", sort=True)[score_col].mean()
    return difficulty_bins(mean_score, n_bins, ties=ties)


def compute_optimal_by_difficulty(
    per_problem_long: pd.DataFrame,
    budget_col: str,
    strategy_col: str,
    value_col: str,
    bins: Union[pd.Series, Mapping],
    folds: int = 2,
    seed: int = 0,
) -> pd.DataFrame:
    """Cross-validated best strategy per (difficulty bin, budget).

    ``per_problem_long``: one row per (problem_id, budget, strategy) with the
    problem's value (e.g. maj@k or BoN@k accuracy) at that budget; every
    problem must have every (budget, strategy). ``bins``: problem_id ->
    level. Problems without a level are ignored; a problem with a level but
    no rows raises. Returns one row per (bin, budget): bin, budget,
    n_problems, choice_fold_<f> for each fold, cv_value (mean over folds of
    the held-out value of that fold's choice), oracle_strategy and
    oracle_value (in-sample best, for reference).
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2; got {folds}")
    for col in ("problem_id", budget_col, strategy_col, value_col):
        if col not in per_problem_long:
            raise ValueError(f"per-problem table lacks column {col!r}")
    levels = pd.Series(bins) if not isinstance(bins, pd.Series) else bins
    if per_problem_long.duplicated(["problem_id", budget_col, strategy_col]).any():
        raise ValueError("per-problem table has duplicate (problem_id, budget, strategy) rows")
    cube = per_problem_long.set_index(["problem_id", budget_col, strategy_col])[value_col].unstack(
        [budget_col, strategy_col]
    )
    missing_pids = levels.index.difference(cube.index)
    if len(missing_pids):
        raise ValueError(f"problem {missing_pids[0]!r} has a difficulty level but no rows")
    cube = cube.loc[cube.index.intersection(levels.index)].sort_index()
    if cube.isna().to_numpy().any():
        pid = cube.index[cube.isna().any(axis=1).to_numpy()][0]
        raise ValueError(f"problem {pid!r} lacks a value for some (budget, strategy)")
    budgets = sorted(cube.columns.get_level_values(0).unique())
    strategies = sorted(cube.columns.get_level_values(1).unique())
    cube = cube.reindex(columns=pd.MultiIndex.from_product([budgets, strategies]))
    values = cube.to_numpy(dtype=np.float64).reshape(len(cube), len(budgets), len(strategies))
    level_of = levels.loc[cube.index].to_numpy()

    rng = np.random.default_rng([seed, 3])
    rows = []
    for level in sorted(np.unique(level_of)):
        members = np.flatnonzero(level_of == level)
        fold_of = np.empty(members.size, dtype=np.int64)
        fold_of[rng.permutation(members.size)] = np.arange(members.size) % folds
        v = values[members]  # [bin problems, budgets, strategies]
        oracle_mean = v.mean(axis=0)
        oracle_pick = oracle_mean.argmax(axis=1)  # argmax: first maximum = sorted-order tie-break
        choices = np.full((folds, len(budgets)), -1, dtype=np.int64)
        scores = np.full((folds, len(budgets)), np.nan)
        for f in range(folds):
            test, train = fold_of == f, fold_of != f
            if not test.any() or not train.any():
                continue
            pick = v[train].mean(axis=0).argmax(axis=1)
            choices[f] = pick
            scores[f] = v[test].mean(axis=0)[np.arange(len(budgets)), pick]
        for bi, budget in enumerate(budgets):
            row = {"bin": level, "budget": budget, "n_problems": int(members.size)}
            for f in range(folds):
                row[f"choice_fold_{f}"] = strategies[choices[f, bi]] if choices[f, bi] >= 0 else None
            fold_scores = scores[:, bi][~np.isnan(scores[:, bi])]
            row["cv_value"] = float(fold_scores.mean()) if fold_scores.size else float("nan")
            row["oracle_strategy"] = strategies[oracle_pick[bi]]
            row["oracle_value"] = float(oracle_mean[bi, oracle_pick[bi]])
            rows.append(row)
    return pd.DataFrame(rows)
