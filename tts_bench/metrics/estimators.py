"""Per-problem estimators over one pool of n graded samples: pass@k and maj@k.

Both answer "what would a budget of k samples have scored on this problem?"
from the n >= k samples actually drawn, averaging over every k-subset of the
pool instead of looking at one arbitrary subset:

    pass_at_k(n=10, c=3, k=2)                                  # 0.5333...
    pass_at_k(np.array([10, 10]), np.array([0, 3]), 2)         # vectorised
    maj_at_k({"A": 2, "B": 1, "C": 1}, "A", n=4, k=3).value    # 0.6666...

pass@k is the unbiased estimator of Chen et al. (2021). maj@k is the
probability that a majority vote over a uniformly random k-subset (drawn
without replacement) of the pool picks the correct answer class, under these
rules (the exact and the Monte Carlo paths implement the same ones):

* Abstentions: a sample without an extracted answer (answer_class None) takes
  one of the k slots but casts no vote. If every chosen sample abstains, or
  none of the chosen samples is correct, the vote fails (credit 0).
* Ties: when the correct class shares the top count with t other classes, the
  tie is broken uniformly at random, counted as fractional credit 1/(1 + t).

Exact method. Give every class an independent Binomial(m_j, pi) draw with
pi = k/n; conditioned on the total being k, these are exactly the
multivariate-hypergeometric counts of a k-subset. So

    maj@k = E[credit * 1{total = k}] / P(total = k),

and the numerator is a sum over x = the correct class's count of
b(x; a, pi) * [coefficient of z^(k-x) in prod_j K_j(z) * free(z)], where K_j
holds class j's binomial probabilities truncated to counts <= x (a class
above x beats the correct one) and free(z) is the pool that cannot compete
(abstentions, classes smaller than x). Every array is a probability in [0, 1]
(nothing overflows; log-factorials from math.lgamma) and merging a class is a
plain convolution. The 1/(1 + t) credit is the integral over u in [0, 1] of
u^t (u = the correct class's random tie-break priority); a class's count
equal to x carries a factor u, so the product is a polynomial in u of degree
<= the largest possible t, which Gauss-Legendre quadrature integrates exactly.
Work is saved only where a bound proves it negligible, so "exact" means
absolute error <= ``tol`` (default 1e-12) plus float rounding (about 1e-11
for pools of 10^4, from the log-factorials):

* classes that cannot reach the correct class's count join the free pool;
* classes that beat the correct class with probability below tol/(2C) by the
  Chernoff bound (1 - (sqrt(p0) - sqrt(pj))^2)^k join the free pool (that
  bound holds for sampling without replacement, Hoeffding 1963, thm. 4);
* count windows drop binomial tails below a share of tol (Bernstein bound).

Monte Carlo method: ``mc_replicates`` seeded k-subsets (default 1000, so the
standard error of one problem's estimate is at most 0.5/sqrt(1000) = 0.016,
and much less on a mean over problems), drawn one of two equivalent ways,
whichever is cheaper: k distinct sample indices (whole draws with a repeated
index are redrawn; used while k(k-1) <= 2n), or the class counts one class at
a time with Generator.hypergeometric, biggest class first, stopping as soon as
no remaining class can reach the correct class's count.

``method="auto"`` runs the exact method when its work estimate (multiply-adds
of the convolutions) is at most ``exact_work_cap`` (default 2e5, about a
millisecond) and Monte Carlo otherwise. In practice: exact for small k (up to
~8 with hundreds of answer classes, more with few) and for large k when at
most one wrong class can compete; Monte Carlo in between. The method used is
returned with every estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, NamedTuple, Optional, Union

import numpy as np

DEFAULT_MC_REPLICATES = 1000
DEFAULT_TOL = 1e-12
DEFAULT_EXACT_WORK_CAP = 2e5
METHODS = ("auto", "exact", "mc")

# Cost model for choosing a Monte Carlo sampler, in the same unit as the exact
# work estimate (roughly numpy element operations); measured on one CPU core.
_MC_INDEX_COST = 12.0  # per sampled label: draw, sort, vote
_MC_MARGINAL_COST = 120.0  # per Generator.hypergeometric variate
# Elements per numpy block: keeps the exact convolutions and the sampled label
# arrays near 32 MiB however many problems are batched together.
_BLOCK_ELEMENTS = 4_000_000

IntArray = np.ndarray
FloatArray = np.ndarray


# ---------------------------------------------------------------- pass@k


def pass_at_k(n, c, k) -> Union[float, FloatArray]:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k) (Chen et al. 2021, eq. 1).

    ``n``, ``c`` and ``k`` broadcast against each other (ints or int arrays);
    a float comes back when all three are scalars. Computed in the stable
    product form 1 - prod_{i=n-c+1..n} (1 - k/i), which is 1 when n - c < k.
    Raises ValueError when k > n, k < 1, c < 0 or c > n.
    """
    n_arr, c_arr, k_arr = (np.asarray(v) for v in (n, c, k))
    scalar = n_arr.ndim == 0 and c_arr.ndim == 0 and k_arr.ndim == 0
    n_b, c_b, k_b = (a.astype(np.int64) for a in np.broadcast_arrays(n_arr, c_arr, k_arr))
    _check_counts(n_b, c_b, k_b)
    out = np.empty(n_b.shape, dtype=np.float64)
    for kv in np.unique(k_b):
        sel = k_b == kv
        out[sel] = _pass_at_one_k(n_b[sel], c_b[sel], int(kv))
    return float(out) if scalar else out


def _check_counts(n: IntArray, c: IntArray, k: IntArray) -> None:
    bad = k > n
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        raise ValueError(
            f"pass@k needs k <= n (k samples drawn from a pool of n); "
            f"got k={int(k.ravel()[i])} > n={int(n.ravel()[i])}"
        )
    if (k < 1).any():
        raise ValueError(f"pass@k needs k >= 1; got k={int(k.min())}")
    if ((c < 0) | (c > n)).any():
        i = np.flatnonzero(((c < 0) | (c > n)).ravel())[0]
        raise ValueError(
            f"pass@k needs 0 <= c <= n; got c={int(c.ravel()[i])}, n={int(n.ravel()[i])}"
        )


def _pass_at_one_k(n: IntArray, c: IntArray, k: int) -> FloatArray:
    sure = n - c < k  # fewer wrong samples than k: every k-subset holds a correct one
    top = int(n.max())
    if top <= k:
        return np.where(c > 0, 1.0, 0.0)
    # log(1 - k/i) for i = k+1..top, summed from the top down so that a pool
    # of the largest size (the usual case: one pool per run) subtracts an
    # exact zero and the product over c terms carries only c roundings.
    terms = np.log1p(-k / np.arange(k + 1, top + 1, dtype=np.float64))
    suffix = np.concatenate([np.cumsum(terms[::-1])[::-1], [0.0]])
    lo = np.clip(n - c + 1 - (k + 1), 0, None)
    hi = n + 1 - (k + 1)
    log_fail = suffix[lo] - suffix[np.clip(hi, 0, None)]
    # 0.0 - expm1: c = 0 gives +0.0, not -0.0.
    return np.where(sure, 1.0, 0.0 - np.expm1(log_fail))


# ---------------------------------------------------------------- pools


@dataclass(frozen=True)
class AnswerPools:
    """The answer-class make-up of P problems' pools, as arrays.

    a: correct-class count per problem (0 when no sample is correct);
    z: abstentions (samples without an answer class); n: pool sizes;
    others: wrong classes' counts, each row sorted descending, 0-padded.
    """

    a: IntArray
    z: IntArray
    n: IntArray
    others: IntArray

    @classmethod
    def from_counts(
        cls,
        class_counts: "list[Mapping[str, int]]",
        correct_class: "list[Optional[str]]",
        n: "list[int] | IntArray",
    ) -> "AnswerPools":
        """Build from per-problem class-count dicts, correct classes and pool sizes."""
        n_arr = np.asarray(n, dtype=np.int64)
        wrong = [
            sorted((int(v) for cl, v in cc.items() if cl != good and v > 0), reverse=True)
            for cc, good in zip(class_counts, correct_class)
        ]
        width = max([1] + [len(w) for w in wrong])
        others = np.zeros((len(wrong), width), dtype=np.int64)
        for i, w in enumerate(wrong):
            others[i, : len(w)] = w
        a = np.array(
            [int(cc.get(good, 0)) if good is not None else 0
             for cc, good in zip(class_counts, correct_class)],
            dtype=np.int64,
        )
        z = n_arr - a - others.sum(axis=1)
        if (z < 0).any():
            i = int(np.flatnonzero(z < 0)[0])
            raise ValueError(
                f"class counts add up to {int(n_arr[i] - z[i])} > n={int(n_arr[i])} "
                f"(problem #{i}); n must count every sample, abstentions included"
            )
        return cls(a=a, z=z, n=n_arr, others=others)

    def take(self, idx: IntArray) -> "AnswerPools":
        return AnswerPools(self.a[idx], self.z[idx], self.n[idx], self.others[idx])


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

    # Settled without sampling: nothing correct, or the whole pool votes.
    whole = (pools.a > 0) & (pools.n == k)
    if whole.any():
        value[whole] = _vote_whole_pool(pools.take(np.flatnonzero(whole)))
    open_ = np.flatnonzero((pools.a > 0) & (pools.n > k))
    if open_.size == 0:
        return MajBatch(value, is_mc, stderr)

    plan = _plan_exact(pools.take(open_), k, tol)
    if method == "exact":
        use_exact = np.ones(open_.size, dtype=bool)
    elif method == "mc":
        use_exact = plan.settled
    else:
        use_exact = plan.settled | (plan.work <= exact_work_cap)

    value[open_[plan.settled]] = 0.0
    run = use_exact & ~plan.settled
    if run.any():
        value[open_[run]] = _run_exact(plan, np.flatnonzero(run), k)
    mc = ~use_exact
    if mc.any():
        v, se = _run_mc(pools.take(open_[mc]), plan.n_rel[mc], k, rng, mc_replicates)
        value[open_[mc]] = v
        stderr[open_[mc]] = se
        is_mc[open_[mc]] = True
    return MajBatch(value, is_mc, stderr)


def _vote_whole_pool(pools: AnswerPools) -> FloatArray:
    """k = n: one subset, the pool itself."""
    top = pools.others.max(axis=1)
    ties = (pools.others == pools.a[:, None]).sum(axis=1)
    return np.where(pools.a > top, 1.0, np.where(pools.a == top, 1.0 / (1 + ties), 0.0))


# ---------------------------------------------------------------- exact


@lru_cache(maxsize=4)
def _lf_table(size: int) -> FloatArray:
    table = np.array([math.lgamma(i + 1.0) for i in range(size + 1)])
    table.flags.writeable = False
    return table


def _log_factorials(n_max: int) -> FloatArray:
    # Rounded up to a power of two so repeated calls share one cached table.
    return _lf_table(1 << max(10, int(n_max).bit_length()))


def _log_binom(y: IntArray, m: IntArray, log_pi, log_q, lf: FloatArray) -> FloatArray:
    """log Binomial(m, pi) pmf at y (broadcasting); -inf outside 0..m."""
    y, m = np.broadcast_arrays(y, m)
    ok = (y >= 0) & (y <= m)
    yc = np.where(ok, y, 0)
    mc = np.where(ok, m, 0)
    out = lf[mc] - lf[yc] - lf[mc - yc] + yc * log_pi + (mc - yc) * log_q
    return np.where(ok, out, -np.inf)


@lru_cache(maxsize=256)
def _gauss_legendre01(q: int) -> "tuple[FloatArray, FloatArray]":
    x, w = np.polynomial.legendre.leggauss(q)
    return (x + 1.0) / 2.0, w / 2.0


def _tail_halfwidth(var: FloatArray, log_inv_delta: FloatArray) -> FloatArray:
    """t with P(|Y - EY| >= t) <= 2 delta for a sum of [0,1] variables (Bernstein)."""
    # tol = 0 gives L = inf: a huge finite L keeps every window whole.
    L = np.minimum(log_inv_delta, 1e30)
    return np.minimum(L / 3.0 + np.sqrt(L * L / 9.0 + 2.0 * L * var), 1e15)


@dataclass(frozen=True)
class _ExactPlan:
    """Per-problem windows and pruning for the exact method at one k."""

    settled: np.ndarray  # maj@k <= tol proven (a wrong class dominates / no x window)
    a: IntArray
    n: IntArray
    x_lo: IntArray
    x_hi: IntArray
    n_rel: IntArray  # classes that can still beat the correct one: others[:, :n_rel]
    rel: IntArray  # [P, R] their counts, 0-padded
    lo: IntArray  # [P, R] count windows
    hi: IntArray
    free: IntArray  # pool that cannot compete: abstentions + pruned classes
    log_norm: FloatArray  # log P(total = k) under the binomial tilt
    work: FloatArray  # multiply-adds of the convolutions


def _plan_exact(pools: AnswerPools, k: int, tol: float) -> _ExactPlan:
    a, n, others = pools.a, pools.n, pools.others
    lf = _log_factorials(int(n.max()))
    pi = k / n
    log_pi, log_q = np.log(pi), np.log1p(-pi)
    log_norm = _log_binom(np.full_like(n, k), n, log_pi, log_q, lf)
    n_wrong = np.maximum(1, (others > 0).sum(axis=1))
    with np.errstate(divide="ignore"):
        log_tol = np.log(tol) if tol > 0 else -np.inf

    # Chernoff: P(count_j >= count_0) <= (1 - (sqrt p0 - sqrt pj)^2)^k.
    gap = (np.sqrt(a / n)[:, None] - np.sqrt(others / n[:, None])) ** 2
    with np.errstate(divide="ignore"):  # gap 1 (a = n): bound 0, log -inf
        log_bound = k * np.log1p(-gap)
    beats = (others > a[:, None]) & (log_bound <= log_tol - np.log(2.0))
    prunable = (others < a[:, None]) & (log_bound <= log_tol - np.log(2.0 * n_wrong)[:, None])
    # Classes are sorted descending and the bound grows with pj, so the ones
    # kept form a prefix of each row.
    n_keep = (~prunable & (others > 0)).sum(axis=1)

    # Count windows: spend tol/2 of the error on tails, shared by x and classes.
    log_delta = log_tol + np.log(0.25) + log_norm - np.log1p(n_keep)
    var_x = a * pi * (1 - pi)
    t_x = _tail_halfwidth(var_x, -log_delta)
    x_lo = np.maximum(1, np.floor(a * pi - t_x)).astype(np.int64)
    x_hi = np.minimum(np.minimum(a, k), np.ceil(a * pi + t_x)).astype(np.int64)
    no_x = x_lo > x_hi

    # A class smaller than the smallest x considered can never catch up.
    col = np.arange(others.shape[1])[None, :]
    keep = (col < n_keep[:, None]) & (others >= x_lo[:, None])
    n_rel = keep.sum(axis=1)
    width = max(1, int(n_rel.max()))
    rel = np.where(keep, others, 0)[:, :width]
    t_y = _tail_halfwidth(rel * pi[:, None] * (1 - pi[:, None]), -log_delta[:, None])
    lo = np.maximum(0, np.floor(rel * pi[:, None] - t_y)).astype(np.int64)
    hi = np.minimum(np.minimum(rel, x_hi[:, None]), np.ceil(rel * pi[:, None] + t_y))
    hi = hi.astype(np.int64)
    is_rel = col[:, :width] < n_rel[:, None]
    lo = np.where(is_rel, lo, 0)
    hi = np.where(is_rel, hi, 0)
    # A class whose window lies above every x beats the correct class (<= tol).
    empty = (is_rel & (lo > hi)).any(axis=1)
    free = n - a - rel.sum(axis=1)

    settled = beats.any(axis=1) | no_x | empty
    work = _exact_work(k, x_lo, x_hi, n_rel, lo, hi, is_rel)
    return _ExactPlan(
        settled=settled, a=a, n=n, x_lo=x_lo, x_hi=x_hi, n_rel=n_rel, rel=rel,
        lo=lo, hi=hi, free=free, log_norm=log_norm, work=work,
    )


def _nodes_per_x(k: int, x: IntArray, n_rel: IntArray) -> IntArray:
    # At most min(n_rel, (k - x) // x) wrong classes can tie at count x; a
    # polynomial of degree t needs t // 2 + 1 Gauss-Legendre nodes.
    ties = np.minimum(n_rel, (k - x) // np.maximum(x, 1))
    return np.maximum(ties, 0) // 2 + 1


def _exact_work(k, x_lo, x_hi, n_rel, lo, hi, is_rel) -> FloatArray:
    P = len(x_lo)
    span = np.maximum(0, x_hi - x_lo + 1)
    rows = np.zeros(P)
    # Number of (x, node) rows; summed over the x window in slices.
    for start in range(0, int(span.max(initial=0)), 4096):
        x = x_lo[:, None] + start + np.arange(min(4096, int(span.max()) - start))[None, :]
        inside = x <= x_hi[:, None]
        rows += np.where(inside, _nodes_per_x(k, x, n_rel[:, None]), 0).sum(axis=1)
    widths = np.where(is_rel, np.maximum(hi - lo + 1, 1), 1)
    s_cap = np.maximum(1, k - x_lo - lo.sum(axis=1) + 1)
    length = np.minimum(np.cumsum(widths - 1, axis=1) + 1, s_cap[:, None])
    conv = (length[:, :-1] * widths[:, 1:]).sum(axis=1) if widths.shape[1] > 1 else 0.0
    return rows * (conv + 2.0 * length[:, -1] + widths[:, 0])


def _run_exact(plan: _ExactPlan, idx: IntArray, k: int) -> FloatArray:
    """Exact maj@k for plan rows ``idx``, batched in blocks of similar size."""
    out = np.empty(idx.size)
    order = np.argsort(plan.work[idx], kind="stable")
    start = 0
    while start < order.size:
        # Double the block while its padded arrays stay within _BLOCK_ELEMENTS.
        size = 1
        while start + size < order.size and _block_size(
            plan, idx[order[start:start + 2 * size]], k
        ) <= _BLOCK_ELEMENTS:
            size *= 2
        block = order[start:start + size]
        out[block] = _exact_block(plan, idx[block], k)
        start += size
    return out


def _block_size(plan: _ExactPlan, sel: IntArray, k: int) -> int:
    span = int((plan.x_hi[sel] - plan.x_lo[sel]).max()) + 1
    rows = span * (int(_nodes_per_x(k, np.array([1]), plan.n_rel[sel].max())[0]))
    widths = np.where(plan.hi[sel] >= plan.lo[sel], plan.hi[sel] - plan.lo[sel] + 1, 1)
    s_len = min(int(widths.sum(axis=1).max()), k + 1)
    return sel.size * rows * s_len


def _exact_block(plan: _ExactPlan, sel: IntArray, k: int) -> FloatArray:
    a, n = plan.a[sel], plan.n[sel]
    x_lo, x_hi = plan.x_lo[sel], plan.x_hi[sel]
    n_rel = plan.n_rel[sel]
    R = max(1, int(n_rel.max()))
    rel, lo, hi = plan.rel[sel, :R], plan.lo[sel, :R], plan.hi[sel, :R]
    free = plan.free[sel]
    lf = _log_factorials(int(n.max()))
    pi = k / n
    log_pi, log_q = np.log(pi)[:, None, None], np.log1p(-pi)[:, None, None]

    # Rows: one per (x offset, quadrature node); x = x_lo + offset per problem.
    span = int((x_hi - x_lo).max()) + 1
    x_off = np.arange(span)
    x_all = x_lo[:, None] + x_off[None, :]
    q_per_x = np.where(x_all <= x_hi[:, None], _nodes_per_x(k, x_all, n_rel[:, None]), 1)
    q_per_x = q_per_x.max(axis=0)
    row_x = np.repeat(x_off, q_per_x)
    nodes = [_gauss_legendre01(int(q)) for q in q_per_x]
    row_u = np.concatenate([u for u, _ in nodes])
    row_w = np.concatenate([w for _, w in nodes])
    x_abs = x_lo[:, None] + row_x[None, :]  # [P, rows]
    row_ok = x_abs <= x_hi[:, None]
    xa = x_abs[:, :, None]

    s_off = lo.sum(axis=1)
    s_cap = int(np.maximum(1, k - x_lo - s_off + 1).max())

    def kernel(r: int) -> FloatArray:
        y_w = int(np.maximum(hi[:, r] - lo[:, r] + 1, 1).max())
        y = lo[:, r, None, None] + np.arange(y_w)[None, None, :]  # [P, 1, Y]
        pmf = np.exp(_log_binom(y, rel[:, r, None, None], log_pi, log_q, lf))
        pmf = np.where(y <= hi[:, r, None, None], pmf, 0.0)
        below = np.where(y < xa, pmf, 0.0)
        return below + np.where(y == xa, row_u[None, :, None] * pmf, 0.0)

    D = kernel(0)[:, :, :s_cap]
    for r in range(1, R):
        K = kernel(r)
        length = min(D.shape[2] + K.shape[2] - 1, s_cap)
        nxt = np.zeros(D.shape[:2] + (length,))
        for y in range(K.shape[2]):
            m = min(D.shape[2], length - y)
            if m <= 0:
                break
            nxt[:, :, y:y + m] += D[:, :, :m] * K[:, :, y:y + 1]
        D = nxt

    s_abs = s_off[:, None, None] + np.arange(D.shape[2])[None, None, :]
    fill = k - xa - s_abs  # samples left for the pool that cannot compete
    f = np.exp(_log_binom(fill, free[:, None, None], log_pi, log_q, lf))
    num = (D * f).sum(axis=2)
    bx = np.exp(_log_binom(x_abs, a[:, None], log_pi[:, :, 0], log_q[:, :, 0], lf))
    total = (np.where(row_ok, bx * num, 0.0) * row_w[None, :]).sum(axis=1)
    return np.clip(total * np.exp(-plan.log_norm[sel]), 0.0, 1.0)


# ---------------------------------------------------------------- Monte Carlo


def _run_mc(
    pools: AnswerPools, n_rel: IntArray, k: int, rng: np.random.Generator, reps: int
) -> "tuple[FloatArray, FloatArray]":
    """Monte Carlo maj@k; each problem takes the cheaper of the two samplers."""
    index_ok = k * (k - 1) <= 2 * pools.n
    by_index = index_ok & (k * _MC_INDEX_COST <= (1 + n_rel) * _MC_MARGINAL_COST)
    value = np.empty(len(pools.n))
    stderr = np.empty(len(pools.n))
    for mask, sampler in ((by_index, _mc_credits_index), (~by_index, _mc_credits_marginal)):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            continue
        per_block = max(1, _BLOCK_ELEMENTS // (reps * (k if sampler is _mc_credits_index else 8)))
        for s in range(0, idx.size, per_block):
            part = idx[s:s + per_block]
            credit = sampler(pools.take(part), k, rng, reps)
            value[part] = credit.mean(axis=1)
            stderr[part] = credit.std(axis=1, ddof=1) / math.sqrt(reps)
    return value, stderr


def _mc_credits_index(
    pools: AnswerPools, k: int, rng: np.random.Generator, reps: int
) -> FloatArray:
    """Credits [P, reps] from k distinct sample indices per replicate."""
    P = len(pools.n)
    # Labels, each pool sorted by code: 0 correct, 1 abstain, 2.. wrong classes.
    counts = np.concatenate([pools.a[:, None], pools.z[:, None], pools.others], axis=1)
    codes = np.tile(np.arange(counts.shape[1], dtype=np.int32), P)
    labels = np.repeat(codes, counts.ravel())
    start = np.concatenate([[0], np.cumsum(pools.n)[:-1]])
    n_rows = np.repeat(pools.n, reps)

    idx = rng.integers(0, n_rows[:, None], size=(P * reps, k))
    idx.sort(axis=1)
    # Redraw whole draws holding a repeated index: what is left is uniform
    # over k-subsets (k(k-1) <= 2n keeps the acceptance rate above ~1/e).
    while True:
        dup = (idx[:, 1:] == idx[:, :-1]).any(axis=1) if k > 1 else np.zeros(len(idx), bool)
        if not dup.any():
            break
        redo = np.flatnonzero(dup)
        fresh = rng.integers(0, n_rows[redo, None], size=(redo.size, k))
        fresh.sort(axis=1)
        idx[redo] = fresh
    lab = labels[idx + np.repeat(start, reps)[:, None]]  # sorted, as the pool is

    pos = np.arange(k)
    run_start = np.ones(lab.shape, dtype=bool)
    run_start[:, 1:] = lab[:, 1:] != lab[:, :-1]
    run_end = np.ones(lab.shape, dtype=bool)
    run_end[:, :-1] = run_start[:, 1:]
    first = np.maximum.accumulate(np.where(run_start, pos, 0), axis=1)
    run_len = pos - first + 1  # length of the run so far; full at run_end
    x0 = (lab == 0).sum(axis=1)
    wrong = lab >= 2
    top = np.where(wrong, run_len, 0).max(axis=1)
    ties = (run_end & wrong & (run_len == x0[:, None])).sum(axis=1)
    credit = np.where((x0 >= 1) & (top <= x0), 1.0 / (1 + ties), 0.0)
    return credit.reshape(P, reps)


def _mc_credits_marginal(
    pools: AnswerPools, k: int, rng: np.random.Generator, reps: int
) -> FloatArray:
    """Credits [P, reps] from class counts drawn one class at a time."""
    P = len(pools.n)
    a = np.repeat(pools.a, reps)
    x0 = rng.hypergeometric(a, np.repeat(pools.n, reps) - a, k)
    left = k - x0  # draws not yet assigned to a class
    pool = np.repeat(pools.n, reps) - a  # samples of classes not yet drawn (abstain incl.)
    ties = np.zeros_like(x0)
    alive = x0 >= 1
    credit = np.zeros(len(x0))
    others = np.repeat(pools.others, reps, axis=0)
    for r in range(others.shape[1]):
        m = others[:, r]
        # Biggest first: once a class is smaller than x0, or fewer than x0
        # draws are left, no later class can reach the correct one.
        done = alive & ((m < x0) | (left < x0))
        credit[done] = 1.0 / (1 + ties[done])
        alive &= ~done
        act = np.flatnonzero(alive)
        if act.size == 0:
            break
        mm = m[act]
        got = rng.hypergeometric(mm, pool[act] - mm, left[act])
        pool[act] -= mm
        left[act] -= got
        ties[act] += got == x0[act]
        alive[act[got > x0[act]]] = False
    credit[alive] = 1.0 / (1 + ties[alive])
    return credit.reshape(P, reps)
