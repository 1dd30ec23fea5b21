"""Scaling curves: pass@k, maj@k and tokens@k against k, with bootstrap CIs.

The aggregate level of scoring: per-problem estimates at every k, all from
the one pool reduced by :func:`reduce_per_problem`, then averaged across
problems with a percentile-bootstrap confidence interval over problems.

    problems = reduce_per_problem(graded)
    curves = compute_curves(problems, ks=[1, 2, 4, 8], n_boot=1000, seed=0)
    #   metric  k  value  ci_low  ci_high  n_problems  method
    per_problem = per_problem_estimates(problems, ks=[1, 8])  # tidy, one row per (problem, metric, k)

Metrics: pass@k (unbiased, Chen et al.), maj@k (majority vote over a random
k-subset; ties earn 1/(1 + tied classes), abstentions occupy slots without
voting; see :mod:`tts_bench.metrics.estimators`), tokens@k = k *
completion_tokens_mean (expected completion tokens spent to draw k samples).

The bootstrap resamples problems with replacement ``n_boot`` times (seeded)
and reuses the [problems x ks] estimate matrix: a resample is a vector of
problem multiplicities, so every resample mean is one matrix product and no
estimator runs twice.

maj@k falls back to Monte Carlo where the exact method is costly (see
estimators/). Curves use CURVE_MC_REPLICATES = 200 subsets per problem: a
problem's standard error is then at most 0.035, but the curve is a mean over
P problems, whose Monte Carlo error is at most 0.035/sqrt(P) (0.0016 for 500
problems), far inside the bootstrap CI, which already counts that noise as
part of each problem's estimate. 1000 replicates, the single-problem
default, takes scripts/bench_metrics.py (500 x 10^4) from 1.7 s to 4.7 s. Seeds:
Monte Carlo at k uses mc_rng(seed, k); the bootstrap its own stream.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from tts_bench.metrics.estimators import (
    DEFAULT_EXACT_WORK_CAP,
    DEFAULT_TOL,
    AnswerPools,
    maj_at_k_batch,
    mc_rng,
    pass_at_k,
)
from tts_bench.metrics.registry import names

METRICS = names(source="problems")  # what the per-problem table alone gives
CURVE_MC_REPLICATES = 200
_BOOT_BLOCK_ELEMENTS = 4_000_000  # resample weights held at once


class EstimateMatrix(NamedTuple):
    """Per-problem estimates: values[metric] and is_mc[metric] are [problems x ks]."""

    problem_id: np.ndarray
    ks: "list[int]"
    values: "dict[str, np.ndarray]"
    is_mc: "dict[str, np.ndarray]"


def estimate_matrix(
    problems: pd.DataFrame,
    ks: Sequence[int],
    *,
    seed: int = 0,
    method: str = "auto",
    mc_replicates: int = CURVE_MC_REPLICATES,
    tol: float = DEFAULT_TOL,
    exact_work_cap: float = DEFAULT_EXACT_WORK_CAP,
) -> EstimateMatrix:
    """Every metric at every k for every problem, as [problems x ks] arrays."""
    ks = _check_ks(problems, ks)
    n = problems["n"].to_numpy(dtype=np.int64)
    c = problems["c"].to_numpy(dtype=np.int64)
    k_row = np.asarray(ks, dtype=np.int64)[None, :]
    values = {
        "pass@k": pass_at_k(n[:, None], c[:, None], k_row),
        "tokens@k": problems["completion_tokens_mean"].to_numpy(dtype=np.float64)[:, None]
        * k_row,
    }
    no_mc = np.zeros((len(n), len(ks)), dtype=bool)
    is_mc = {"pass@k": no_mc, "tokens@k": no_mc}

    pools = AnswerPools.from_counts(
        list(problems["class_counts"]), list(problems["correct_class"]), n
    )
    maj = np.empty((len(n), len(ks)))
    maj_mc = np.zeros((len(n), len(ks)), dtype=bool)

    def one_k(k: int):
        return maj_at_k_batch(
            pools, k, rng=mc_rng(seed, k), method=method, mc_replicates=mc_replicates,
            tol=tol, exact_work_cap=exact_work_cap,
        )

    # Each k has its own seeded stream, so the ks are independent: run them on
    # every core (numpy releases the GIL in its FFTs, sorts and ufuncs).
    # Results do not depend on the thread count or order.
    workers = min(len(ks), os.cpu_count() or 1)
    if workers > 1 and len(n) * len(ks) >= 256:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one_k, ks))
    else:
        results = [one_k(k) for k in ks]
    for j, res in enumerate(results):
        maj[:, j] = res.value
        maj_mc[:, j] = res.is_mc
    values["maj@k"] = maj
    is_mc["maj@k"] = maj_mc
    return EstimateMatrix(problems["problem_id"].to_numpy(), ks, values, is_mc)


def per_problem_estimates(
    problems: pd.DataFrame,
    ks: Sequence[int],
    *,
    seed: int = 0,
    method: str = "auto",
    mc_replicates: int = CURVE_MC_REPLICATES,
    tol: float = DEFAULT_TOL,
    exact_work_cap: float = DEFAULT_EXACT_WORK_CAP,
) -> pd.DataFrame:
    """Tidy per-problem estimates: problem_id, metric, k, value, method ("exact"/"mc")."""
    est = estimate_matrix(
        problems, ks, seed=seed, method=method, mc_replicates=mc_replicates, tol=tol,
        exact_work_cap=exact_work_cap,
    )
    P, K = len(est.problem_id), len(est.ks)
    frames = [
        pd.DataFrame(
            {
                "problem_id": np.repeat(est.problem_id, K),
                "metric": metric,
                "k": np.tile(np.asarray(est.ks, dtype=np.int64), P),
                "value": est.values[metric].ravel(),
                "method": np.where(est.is_mc[metric].ravel(), "mc", "exact"),
            }
        )
        for metric in METRICS
    ]
    return pd.concat(frames, ignore_index=True)


def compute_curves(
    problems: pd.DataFrame,
    ks: Sequence[int],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    method: str = "auto",
    mc_replicates: int = CURVE_MC_REPLICATES,
    tol: float = DEFAULT_TOL,
    exact_work_cap: float = DEFAULT_EXACT_WORK_CAP,
) -> pd.DataFrame:
    """Mean over problems of each metric at each k, with a bootstrap CI.

    One row per (metric, k): metric, k, value, ci_low, ci_high, n_problems,
    method ("exact", "mc" or "exact+mc" when problems differ). n_boot = 0
    skips the bootstrap (CIs are NaN). Raises ValueError when a k exceeds a
    problem's n.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0; got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci}")
    est = estimate_matrix(
        problems, ks, seed=seed, method=method, mc_replicates=mc_replicates, tol=tol,
        exact_work_cap=exact_work_cap,
    )
    stacked = np.concatenate([est.values[m] for m in METRICS], axis=1)  # [P, metrics*K]
    value = stacked.mean(axis=0)
    if n_boot > 0:
        lo, hi = bootstrap_ci(stacked, n_boot=n_boot, seed=seed, ci=ci)
    else:
        lo = hi = np.full(value.shape, np.nan)
    K = len(est.ks)
    methods = []
    for m in METRICS:
        share = est.is_mc[m].mean(axis=0)
        methods += ["mc" if s == 1 else "exact" if s == 0 else "exact+mc" for s in share]
    return pd.DataFrame(
        {
            "metric": np.repeat(METRICS, K),
            "k": np.tile(np.asarray(est.ks, dtype=np.int64), len(METRICS)),
            "value": value,
            "ci_low": lo,
            "ci_high": hi,
            "n_problems": len(est.problem_id),
            "method": methods,
        }
    )


def bootstrap_ci(
    estimates: np.ndarray, *, n_boot: int, seed: int, ci: float = 0.95
) -> "tuple[np.ndarray, np.ndarray]":
    """Percentile-bootstrap CI of the column means of a [problems x columns] matrix."""
    means = bootstrap_means(estimates, n_boot=n_boot, seed=seed)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    return lo, hi


def bootstrap_means(estimates: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot x columns] column means of problem resamples (seeded by (seed, P) alone).

    Each resample draws P problems with replacement; its mean is
    (multiplicities @ estimates) / P, so the estimates are never recomputed.
    """
    P = estimates.shape[0]
    if P == 0:
        raise ValueError("bootstrap needs at least one problem")
    rng = np.random.default_rng([seed, 2])
    means = np.empty((n_boot, estimates.shape[1]))
    block = max(1, _BOOT_BLOCK_ELEMENTS // P)
    for s in range(0, n_boot, block):
        b = min(block, n_boot - s)
        draws = rng.integers(0, P, size=(b, P))
        # Multiplicity of each problem in each resample.
        weights = np.bincount(
            (draws + P * np.arange(b)[:, None]).ravel(), minlength=b * P
        ).reshape(b, P)
        means[s:s + b] = weights @ estimates / P
    return means


def _check_ks(problems: pd.DataFrame, ks: Sequence[int]) -> "list[int]":
    if len(problems) == 0:
        raise ValueError("no problems to compute curves over")
    out = sorted({int(k) for k in ks})
    if not out:
        raise ValueError("ks is empty; give at least one k")
    if out[0] < 1 or any(int(k) != k for k in ks):
        raise ValueError(f"every k must be a positive integer; got {list(ks)}")
    n = problems["n"].to_numpy()
    k_max = out[-1]
    short = np.flatnonzero(n < k_max)
    if short.size:
        i = short[np.argmin(n[short])]
        pid = problems["problem_id"].iloc[i]
        raise ValueError(
            f"k={k_max} is larger than the n={int(n[i])} samples of problem {pid!r}; "
            f"every k comes from the one pool of n samples per problem, so set "
            f"budget.n >= {k_max} or drop k={k_max} from budget.ks"
        )
    return out
