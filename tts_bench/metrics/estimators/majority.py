"""maj@k for one problem or a batch: exact where the bounds and work allow, Monte Carlo otherwise."""

from __future__ import annotations

from typing import Mapping, NamedTuple, Optional, Union

import numpy as np

from tts_bench.metrics.estimators._common import (
    _NS_EXACT_WORK,
    DEFAULT_EXACT_WORK_CAP,
    DEFAULT_MC_REPLICATES,
    DEFAULT_TOL,
    METHODS,
    AnswerPools,
    FloatArray,
)
from tts_bench.metrics.estimators.exact import _plan_exact, _run_exact
from tts_bench.metrics.estimators.monte_carlo import _mc_cost, _run_mc


class MajEstimate(NamedTuple):
    """maj@k for one problem, with how it was computed."""

    value: float
    method: str  # "exact" (error <= tol) or "mc"
    replicates: int  # Monte Carlo subsets drawn; 0 for exact
    stderr: float  # Monte Carlo standard error; 0.0 for exact


def maj_at_k(
    class_counts: Mapping[str, int],
    correct_class: Optional[str],
    n: int,
    k: int,
    *,
    seed: Union[int, np.random.Generator] = 0,
    method: str = "auto",
    mc_replicates: int = DEFAULT_MC_REPLICATES,
    tol: float = DEFAULT_TOL,
    exact_work_cap: float = DEFAULT_EXACT_WORK_CAP,
) -> MajEstimate:
    """Probability that majority vote over a random k-subset of the pool is correct.

    ``class_counts`` maps answer class -> samples (abstentions excluded);
    ``n`` counts every sample, so n - sum(class_counts) samples abstain.
    ``correct_class`` None means no sample is correct (maj@k = 0). Rules,
    methods and the auto choice are described in the module docstring.
    """
    pools = AnswerPools.from_counts([class_counts], [correct_class], [n])
    rng = seed if isinstance(seed, np.random.Generator) else mc_rng(seed, k)
    res = maj_at_k_batch(
        pools, k, rng=rng, method=method, mc_replicates=mc_replicates, tol=tol,
        exact_work_cap=exact_work_cap,
    )
    mc = bool(res.is_mc[0])
    return MajEstimate(
        value=float(res.value[0]),
        method="mc" if mc else "exact",
        replicates=mc_replicates if mc else 0,
        stderr=float(res.stderr[0]),
    )


def mc_rng(seed: int, k: int) -> np.random.Generator:
    """The Monte Carlo stream for maj@k at k: one per (seed, k), so adding a k
    to a curve leaves the estimates at the other ks unchanged."""
    return np.random.default_rng([seed, 1, k])


class MajBatch(NamedTuple):
    """maj@k for P problems at one k: values, which used Monte Carlo, MC stderr."""

    value: FloatArray
    is_mc: np.ndarray
    stderr: FloatArray


def maj_at_k_batch(
    pools: AnswerPools,
    k: int,
    *,
    rng: np.random.Generator,
    method: str = "auto",
    mc_replicates: int = DEFAULT_MC_REPLICATES,
    tol: float = DEFAULT_TOL,
    exact_work_cap: float = DEFAULT_EXACT_WORK_CAP,
) -> MajBatch:
    """maj@k at one k for every problem in ``pools``, vectorised across problems."""
    if method not in METHODS:
        raise ValueError(f"maj@k method must be one of {METHODS}; got {method!r}")
    if mc_replicates < 2:
        raise ValueError(f"mc_replicates must be >= 2; got {mc_replicates}")
    if k < 1 or (pools.n < k).any():
        bad = int(np.flatnonzero(pools.n < k)[0]) if k >= 1 else 0
        raise ValueError(
            f"maj@k needs 1 <= k <= n (k samples drawn from a pool of n); "
            f"got k={k}, n={int(pools.n[bad])}"
        )
    P = len(pools.n)
    value = np.zeros(P)
    is_mc = np.zeros(P, dtype=bool)
    stderr = np.zeros(P)

    # Settled without sampling: nothing correct (0), one voter (a/n), or the
    # whole pool votes.
    whole = (pools.a > 0) & (pools.n == k)
    if whole.any():
        value[whole] = _vote_whole_pool(pools.take(np.flatnonzero(whole)))
    if k == 1:
        value[~whole] = pools.a[~whole] / pools.n[~whole]
        return MajBatch(value, is_mc, stderr)
    open_ = np.flatnonzero((pools.a > 0) & (pools.n > k))
    if open_.size == 0:
        return MajBatch(value, is_mc, stderr)

    plan = _plan_exact(pools.take(open_), k, tol)
    sub = pools.take(open_)
    t_index, t_marginal = _mc_cost(sub, plan.n_contend, k, mc_replicates)
    if method == "exact":
        use_exact = np.ones(open_.size, dtype=bool)
    elif method == "mc":
        use_exact = plan.settled
    else:
        t_exact = plan.work * _NS_EXACT_WORK
        use_exact = (
            plan.settled
            | (plan.work <= exact_work_cap)
            | (t_exact <= np.minimum(t_index, t_marginal))
        )

    value[open_[plan.settled]] = 0.0
    run = use_exact & ~plan.settled
    if run.any():
        value[open_[run]] = _run_exact(plan, np.flatnonzero(run), k)
    mc = np.flatnonzero(~use_exact)
    if mc.size:
        by_index = t_index[mc] <= t_marginal[mc]
        v, se = _run_mc(sub.take(mc), plan.n_rel[mc], by_index, k, rng, mc_replicates)
        value[open_[mc]] = v
        stderr[open_[mc]] = se
        is_mc[open_[mc]] = True
    return MajBatch(value, is_mc, stderr)


def _vote_whole_pool(pools: AnswerPools) -> FloatArray:
    """k = n: one subset, the pool itself."""
    top = pools.others.max(axis=1)
    ties = (pools.others == pools.a[:, None]).sum(axis=1)
    return np.where(pools.a > top, 1.0, np.where(pools.a == top, 1.0 / (1 + ties), 0.0))


