"""Per-problem estimators over one pool of n graded samples: pass@k and maj@k.

Both answer "what would a budget of k samples have scored on this problem?"
from the n >= k samples actually drawn, averaging over every k-subset of the
pool instead of looking at one arbitrary subset:

    pass_at_k(n=10, c=3, k=2)                                  # 0.5333...
    pass_at_k(np.array([10, 10]), np.array([0, 3]), 2)         # vectorised
    maj_at_k({"A": 2, "B": 1, "C": 1}, "A", n=4, k=3).value    # 0.6666...
    maj_at_k_batch(AnswerPools.from_counts(...), k, rng=mc_rng(0, k))  # many problems

pass@k is the unbiased estimator of Chen et al. (2021). maj@k is the
probability that a majority vote over a uniformly random k-subset (drawn
without replacement) of the pool picks the correct answer class, under these
rules (the exact and the Monte Carlo paths implement the same ones):

* Abstentions: a sample without an extracted answer (answer_class None) takes
  one of the k slots but casts no vote. If every chosen sample abstains, or
  none of the chosen samples is correct, the vote fails (credit 0).
* Ties: when the correct class shares the top count with t other classes, the
  tie is broken uniformly at random, counted as fractional credit 1/(1 + t)
  (the expected score of the random tie-break, so no extra noise).

Exact method. Give every class an independent Binomial(m_j, pi) count with
pi = k/n; conditioned on their total being k, the counts are exactly those of
a uniform k-subset (multivariate hypergeometric). So

    maj@k = E[credit * 1{total = k}] / P(total = k),

and the numerator is a sum over x = the correct class's count of
b(x; a, pi) * [coefficient of z^(k-x) in prod_j K_j(z) * free(z)], where K_j
holds wrong class j's binomial probabilities truncated to counts <= x (a
class above x beats the correct one) and free(z) is the pool that cannot
compete (abstentions, classes too small). This is the DP over classes of
the hypergeometric formulation, conditioned on x, but every array is a
probability in [0, 1] (nothing overflows) and merging a class is a plain
convolution, done for all classes at once as a product of Fourier
transforms. The 1/(1 + t) credit is the integral over u in [0, 1] of u^t
(u = the correct class's tie-break priority): a class with count exactly x
carries a factor u, so the product is a polynomial in u of degree <= the
largest possible number of ties, which Gauss-Legendre quadrature integrates
exactly. Binomial probabilities use Loader's saddle-point form (as in R's
dbinom; ~1e-16 relative, where log-gamma differences lose ~1e-11 at n=10^4).
Work is skipped only where a bound proves it negligible, so "exact" means
absolute error <= ``tol`` (default 1e-12) plus rounding (~1e-14 measured):

* classes smaller than the smallest plausible x join the free pool (no error);
* classes that reach the correct class's count with probability below
  tol/(2C) by the Chernoff bound (1 - (sqrt(p0) - sqrt(pj))^2)^k join the
  free pool; a class that the same bound shows dominating settles maj@k = 0
  (the bound holds for sampling without replacement: Hoeffding 1963, thm. 4);
* binomial tails and FFT wrap-around below a share of tol are dropped
  (Bernstein bound).

Monte Carlo method: ``mc_replicates`` seeded random k-subsets per problem;
the estimate's standard error is at most 0.5/sqrt(replicates) (0.016 at the
default 1000 of maj_at_k; curves use fewer, see curves.py) and is returned.
Subsets are drawn whichever of two equivalent ways is cheaper: k distinct
sample indices (repeats redrawn; used while k <= n/2), or the class counts
one class at a time with Generator.hypergeometric, biggest class first,
stopping once no remaining class can reach the correct class's count.

``method="auto"`` (default) runs the exact method when its work estimate is
at most ``exact_work_cap`` (default 2e4, about a millisecond) or below the
Monte Carlo cost, and Monte Carlo otherwise. On a 10^4-sample pool with
~100 answer classes that is exact for k <= 4 and every problem the bounds
settle, Monte Carlo for most contested problems from k = 8 to a few
thousand. The method used is returned with every estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, NamedTuple, Optional, Union

import numpy as np

DEFAULT_MC_REPLICATES = 1000
DEFAULT_TOL = 1e-12
DEFAULT_EXACT_WORK_CAP = 2e4
METHODS = ("auto", "exact", "mc")

# Cost model (nanoseconds, measured with numpy 2 on one x86 core) used to pick
# the cheaper computation per problem; only the ratios matter.
_NS_EXACT_WORK = 40.0  # per unit of the exact work estimate
_NS_INDEX_LABEL = 25.0  # index sampler: per sampled label (draw, sort, look up)
_NS_INDEX_DRAW = 250.0  # index sampler: per replicate (runs, vote)
_NS_MARGINAL = 250.0  # class-by-class sampler: per hypergeometric variate
# Elements per numpy block for the exact method's arrays (~64 MiB of complex).
_BLOCK_ELEMENTS = 4_000_000
# Sampled labels per Monte Carlo block: small enough to stay in cache.
_MC_BLOCK_LABELS = 1 << 18

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
        # A table read back from disk may hold NaN where None was written.
        correct_class = [None if _missing(g) else g for g in correct_class]
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


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


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


# ---------------------------------------------------------------- exact


# Stirling-series error log(n!) - log(sqrt(2 pi n) (n/e)^n) for n = 0..15;
# beyond 15 the asymptotic series below is exact to double precision.
_STIRLERR_SMALL = np.array(
    [0.0]
    + [math.lgamma(i + 1.0) - (i + 0.5) * math.log(i) + i - 0.5 * math.log(2 * math.pi)
       for i in range(1, 16)]
)


def _stirlerr(n: IntArray) -> FloatArray:
    nf = np.maximum(n, 1).astype(np.float64)
    nn = nf * nf
    series = (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - 1 / (1188 * nn)) / nn) / nn) / nn) / nf
    return np.where(n <= 15, _STIRLERR_SMALL[np.clip(n, 0, 15)], series)


def _bd0(x: FloatArray, mean: FloatArray) -> FloatArray:
    """x log(x / mean) + mean - x, without cancellation when x ~ mean (x, mean > 0)."""
    out = x * np.log(x / mean) + mean - x
    d = x - mean
    close = np.flatnonzero(np.abs(d) < 0.1 * (x + mean))
    if close.size:
        xc, dc = x[close], d[close]
        v = dc / (xc + mean[close])
        series = dc * v
        term = 2.0 * xc * v
        v2 = v * v
        for j in range(1, 12):  # |v| < 0.1: 11 terms reach 1e-22 relative
            term *= v2
            series += term / (2 * j + 1)
        out[close] = series
    return out


def _log_binom(y: IntArray, m: IntArray, p: FloatArray) -> FloatArray:
    """log Binomial(m, p) pmf at y (broadcasting); -inf outside 0..m; 0 < p < 1.

    Loader's saddle-point form (as in R's dbinom): relative error ~1e-15,
    where differences of log-factorials lose ~1e-11 at m = 10^4.
    """
    y, m, p = (np.ascontiguousarray(v) for v in np.broadcast_arrays(y, m, p))
    out = np.full(y.shape, -np.inf)
    edge0 = y == 0
    out[edge0] = m[edge0] * np.log1p(-p[edge0])
    edge1 = (y == m) & (m > 0)
    out[edge1] = m[edge1] * np.log(p[edge1])
    inner = np.flatnonzero((y > 0) & (y < m))
    if inner.size:
        yi, mi, pi = y.flat[inner], m.flat[inner], p.flat[inner]
        yf, mf = yi.astype(np.float64), mi.astype(np.float64)
        out.flat[inner] = (
            _stirlerr(mi) - _stirlerr(yi) - _stirlerr(mi - yi)
            - _bd0(yf, mf * pi) - _bd0(mf - yf, mf * (1.0 - pi))
            + 0.5 * np.log(mf / (2.0 * math.pi * yf * (mf - yf)))
        )
    return out


@lru_cache(maxsize=256)
def _gauss_legendre01(q: int) -> "tuple[FloatArray, FloatArray]":
    x, w = np.polynomial.legendre.leggauss(q)
    return (x + 1.0) / 2.0, w / 2.0


def _tail_halfwidth(var: FloatArray, log_inv_delta: FloatArray) -> FloatArray:
    """t with P(|Y - EY| >= t) <= 2 delta for a sum of [0,1] variables (Bernstein)."""
    # tol = 0 gives L = inf: a huge finite L keeps every window whole.
    L = np.minimum(log_inv_delta, 1e30)
    return np.minimum(L / 3.0 + np.sqrt(L * L / 9.0 + 2.0 * L * var), 1e15)


def _fft_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast sizes for numpy's FFT)."""
    best = 1 << max(0, int(n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            size = p35
            while size < n:
                size *= 2
            best = min(best, size)
            p35 *= 3
        p5 *= 5
    return best


def _nodes_per_x(k: int, x: IntArray, n_rel: IntArray) -> IntArray:
    # At most min(n_rel, (k - x) // x) wrong classes can tie at count x; a
    # polynomial of degree t in u needs t // 2 + 1 Gauss-Legendre nodes.
    ties = np.minimum(n_rel, (k - x) // np.maximum(x, 1))
    return np.maximum(ties, 0) // 2 + 1


@dataclass(frozen=True)
class _ExactPlan:
    """Per-problem windows, pruning and work for the exact method at one k.

    Wrong classes that can still beat the correct one are grouped by size
    (equal sizes have equal kernels, merged as one power): group_m, group_g
    (multiplicity), and count windows group_lo..group_hi, [P, U], 0-padded.
    """

    settled: np.ndarray  # maj@k <= tol proven: a wrong class dominates, or no x window
    a: IntArray
    n: IntArray
    x_lo: IntArray
    x_hi: IntArray
    n_rel: IntArray  # wrong classes kept (largest first)
    n_contend: IntArray  # of those, classes at least the correct class's expected count
    group_m: IntArray
    group_g: IntArray
    group_lo: IntArray
    group_hi: IntArray
    free: IntArray  # samples that cannot compete: abstentions + classes dropped
    s_off: IntArray  # sum of window starts: index 0 of the merged distribution
    n_fft: IntArray  # merged-distribution length for the FFT (no aliasing beyond tol)
    log_norm: FloatArray  # log P(total = k) under the binomial tilt
    work: FloatArray  # estimated element operations


def _plan_exact(pools: AnswerPools, k: int, tol: float) -> _ExactPlan:
    a, n, others = pools.a, pools.n, pools.others
    pi = k / n
    log_norm = _log_binom(np.full_like(n, k), n, pi)
    n_wrong = np.maximum(1, (others > 0).sum(axis=1))
    with np.errstate(divide="ignore"):
        log_tol = np.log(tol) if tol > 0 else -np.inf

    # Chernoff: P(count_j >= count_0) <= (1 - (sqrt p0 - sqrt pj)^2)^k.
    gap = (np.sqrt(a / n)[:, None] - np.sqrt(others / n[:, None])) ** 2
    with np.errstate(divide="ignore"):  # gap 1 (a = n): bound 0, log -inf
        log_bound = k * np.log1p(-gap)
    beats = (others > a[:, None]) & (log_bound <= log_tol - np.log(2.0))
    prunable = (others < a[:, None]) & (log_bound <= log_tol - np.log(2.0 * n_wrong)[:, None])
    # Rows are sorted descending and the bound grows with pj, so the classes
    # kept form a prefix of each row.
    n_keep = (~prunable & (others > 0)).sum(axis=1)

    # Tails: tol/2 of the error budget, shared by the x window, every class
    # window and the FFT's wrap-around.
    log_delta = log_tol + np.log(0.25) + log_norm - np.log(n_keep + 2.0)
    t_x = _tail_halfwidth(a * pi * (1 - pi), -log_delta)
    x_lo = np.maximum(1, np.floor(a * pi - t_x)).astype(np.int64)
    x_hi = np.minimum(np.minimum(a, k), np.ceil(a * pi + t_x)).astype(np.int64)

    # A class smaller than the smallest x considered can never catch up.
    col = np.arange(others.shape[1])[None, :]
    keep = (col < n_keep[:, None]) & (others >= x_lo[:, None])
    n_rel = keep.sum(axis=1)
    rel = np.where(keep, others, 0)
    n_contend = (rel >= (a * pi)[:, None]).sum(axis=1)
    free = n - a - rel.sum(axis=1)

    # Group equal sizes: first of a run of equal values in each sorted row.
    first = keep.copy()
    first[:, 1:] &= rel[:, 1:] != rel[:, :-1]
    gid = np.cumsum(first, axis=1) - 1
    U = max(1, int(first.sum(axis=1).max()))
    P = len(n)
    group_m = np.zeros((P, U), dtype=np.int64)
    pr, cr = np.nonzero(first)
    group_m[pr, gid[pr, cr]] = rel[pr, cr]
    group_g = np.zeros((P, U), dtype=np.int64)
    pk, ck = np.nonzero(keep)
    np.add.at(group_g, (pk, gid[pk, ck]), 1)

    is_grp = group_g > 0
    mu = group_m * pi[:, None]
    t_y = _tail_halfwidth(mu * (1 - pi[:, None]), -log_delta[:, None])
    group_lo = np.where(is_grp, np.maximum(0, np.floor(mu - t_y)), 0).astype(np.int64)
    group_hi = np.minimum(np.minimum(group_m, x_hi[:, None]), np.ceil(mu + t_y))
    group_hi = np.where(is_grp, group_hi, 0).astype(np.int64)
    # A class whose window lies above every x considered beats the correct one.
    empty = (is_grp & (group_lo > group_hi)).any(axis=1)

    s_off = (group_g * group_lo).sum(axis=1)
    s_cap = k - x_lo - s_off + 1  # merged indices that can matter: 0..s_cap-1
    full = (group_g * np.maximum(group_hi - group_lo, 0)).sum(axis=1) + 1
    mu_s = pi * rel.sum(axis=1)
    t_s = _tail_halfwidth(mu_s * (1 - pi), -log_delta)
    wrap_free = np.ceil(mu_s + t_s) - s_off + 1  # beyond it, mass <= delta
    # Length `full` never wraps; a shorter one must hold the indices that
    # matter (s_cap) and leave at most delta of mass beyond it.
    n_fft = np.minimum(full, np.maximum(np.maximum(s_cap, 1), wrap_free)).astype(np.int64)

    settled = beats.any(axis=1) | (x_lo > x_hi) | empty | (s_cap < 1)
    rows = _rows_per_problem(k, x_lo, x_hi, n_rel)
    n_groups = is_grp.sum(axis=1)
    width = np.where(is_grp, group_hi - group_lo + 1, 1).max(axis=1)
    freq = n_fft // 2 + 1
    work = rows * freq * (n_groups + 4) + n_groups * width * freq + rows * n_fft
    return _ExactPlan(
        settled=settled, a=a, n=n, x_lo=x_lo, x_hi=x_hi, n_rel=n_rel, n_contend=n_contend,
        group_m=group_m, group_g=group_g, group_lo=group_lo, group_hi=group_hi,
        free=free, s_off=s_off, n_fft=n_fft, log_norm=log_norm, work=work.astype(float),
    )


def _rows_per_problem(k: int, x_lo: IntArray, x_hi: IntArray, n_rel: IntArray) -> FloatArray:
    """Number of (x, quadrature node) rows of each problem's computation."""
    span = np.maximum(0, x_hi - x_lo + 1)
    rows = np.zeros(len(x_lo))
    top = int(span.max(initial=0))
    for start in range(0, top, 4096):
        x = x_lo[:, None] + start + np.arange(min(4096, top - start))[None, :]
        inside = x <= x_hi[:, None]
        rows += np.where(inside, _nodes_per_x(k, x, n_rel[:, None]), 0).sum(axis=1)
    return rows


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
    """Largest array of an exact block, in elements."""
    span = int((plan.x_hi[sel] - plan.x_lo[sel]).max()) + 1
    rows = span * int(_nodes_per_x(k, np.array([1]), plan.n_rel[sel].max())[0])
    grp = plan.group_g[sel] > 0
    U = max(1, int(grp.sum(axis=1).max()))
    W = int(np.where(grp, plan.group_hi[sel] - plan.group_lo[sel] + 1, 1).max())
    N = int(plan.n_fft[sel].max())
    F = N // 2 + 1
    return sel.size * max(U * rows * F, U * (W + 1) * F, rows * N)


def _exact_block(plan: _ExactPlan, sel: IntArray, k: int) -> FloatArray:
    """Exact maj@k for problems ``sel`` (see the module docstring).

    Rows are (x, quadrature node) pairs; per row, every competing class's
    count distribution is truncated at x (u-weighted at x) and the classes
    are merged. Merging is convolution, a product in the Fourier domain, so
    all classes merge in one vectorised step (equal-size classes as one
    power) instead of a Python loop over classes. Everything is a
    probability, so the FFT's rounding is absolute (~1e-16 per entry).
    """
    a, n, x_lo, x_hi = plan.a[sel], plan.n[sel], plan.x_lo[sel], plan.x_hi[sel]
    n_rel, free, s_off = plan.n_rel[sel], plan.free[sel], plan.s_off[sel]
    U = max(1, int((plan.group_g[sel] > 0).sum(axis=1).max()))
    g_m, g_g = plan.group_m[sel, :U], plan.group_g[sel, :U]
    g_lo, g_hi = plan.group_lo[sel, :U], plan.group_hi[sel, :U]
    pi = k / n

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

    # Class count distributions on their windows, indexed from the window start.
    W = int(np.where(g_g > 0, g_hi - g_lo + 1, 1).max())
    y = g_lo[:, :, None] + np.arange(W)[None, None, :]  # [P, U, W]
    pmf = np.exp(_log_binom(y, g_m[:, :, None], pi[:, None, None]))
    pmf = np.where((y <= g_hi[:, :, None]) & (g_g[:, :, None] > 0), pmf, 0.0)
    pmf[:, :, 0] = np.where(g_g > 0, pmf[:, :, 0], 1.0)  # padding: the unit distribution
    j = x_abs[:, None, :] - g_lo[:, :, None]  # [P, U, rows]: window index of x
    at = np.clip(j, 0, W - 1)
    tie = np.take_along_axis(pmf, at, axis=2) * ((j >= 0) & (j < W)) * (g_g[:, :, None] > 0)
    tie = tie * row_u[None, None, :]  # u * P(count == x)

    merged = _merge_fft(pmf, j, at, tie, g_g, _fft_len(int(plan.n_fft[sel].max())))
    S = merged.shape[2]

    # The pool that cannot compete fills the k - x - s slots left; its pmf
    # depends on x + s only, so compute it once per value and slide.
    t = x_lo[:, None] + s_off[:, None] + np.arange(span + S - 1)[None, :]
    fill = np.exp(_log_binom(k - t, free[:, None], pi[:, None]))  # [P, span + S - 1]
    f = np.lib.stride_tricks.sliding_window_view(fill, S, axis=1)[:, row_x, :]
    num = np.einsum("prs,prs->pr", merged, f)
    bx = np.exp(_log_binom(x_abs, a[:, None], pi[:, None]))
    total = (np.where(x_abs <= x_hi[:, None], bx * num, 0.0) * row_w[None, :]).sum(axis=1)
    return np.clip(total * np.exp(-plan.log_norm[sel]), 0.0, 1.0)


def _merge_fft(pmf, j, at, tie, g_g, N: int) -> FloatArray:
    """Merged distribution [P, rows, N] via a product of transforms."""
    P, U, W = pmf.shape
    F = N // 2 + 1
    phase = np.exp(-2j * np.pi * np.outer(np.arange(W), np.arange(F)) / N)  # [W, F]
    # prefix[i] = transform of the window's counts below index i.
    prefix = np.zeros((P, U, W + 1, F), dtype=np.complex128)
    np.cumsum(pmf[..., None] * phase[None, None], axis=2, out=prefix[:, :, 1:])
    below = np.take_along_axis(prefix, np.clip(j, 0, W)[..., None], axis=2)
    kern = below + tie[..., None] * phase[at]  # [P, U, rows, F]
    kern = np.where(g_g[:, :, None, None] > 1, kern ** g_g[:, :, None, None], kern)
    return np.fft.irfft(np.prod(kern, axis=1), n=N, axis=-1)


# ---------------------------------------------------------------- Monte Carlo


def _mc_cost(
    pools: AnswerPools, n_contend: IntArray, k: int, reps: int
) -> "tuple[FloatArray, FloatArray]":
    """Estimated nanoseconds of each Monte Carlo sampler per problem."""
    # Index draws repeat an index more often as k nears n; past n/2 they stop.
    redraw = 1.0 / np.maximum(1e-9, 1.0 - k / pools.n)
    t_index = reps * (k * _NS_INDEX_LABEL * redraw + _NS_INDEX_DRAW)
    t_index = np.where(2 * k <= pools.n, t_index, np.inf)
    # The class-by-class sampler stops at the first class smaller than the
    # correct count: about the classes at least that big, plus x0 and one more.
    t_marginal = reps * (2.0 + n_contend) * _NS_MARGINAL
    return t_index, t_marginal


def _run_mc(
    pools: AnswerPools,
    n_rel: IntArray,
    by_index: np.ndarray,
    k: int,
    rng: np.random.Generator,
    reps: int,
) -> "tuple[FloatArray, FloatArray]":
    """Monte Carlo maj@k: credits of ``reps`` random k-subsets per problem."""
    value = np.empty(len(pools.n))
    stderr = np.empty(len(pools.n))
    for mask, index in ((by_index, True), (~by_index, False)):
        idx = np.flatnonzero(mask)
        per_block = max(1, _MC_BLOCK_LABELS // (reps * (k if index else 4)))
        for s in range(0, idx.size, per_block):
            part = idx[s:s + per_block]
            if index:
                credit = _mc_credits_index(pools.take(part), k, rng, reps)
            else:
                credit = _mc_credits_marginal(pools.take(part), n_rel[part], k, rng, reps)
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
    code_type = np.int16 if counts.shape[1] < 2**15 else np.int32
    codes = np.tile(np.arange(counts.shape[1], dtype=code_type), P)
    labels = np.repeat(codes, counts.ravel())
    start = np.concatenate([[0], np.cumsum(pools.n)[:-1]])
    n_rows = np.repeat(pools.n, reps)

    idx = distinct_subsets(rng, n_rows, k)
    idx += np.repeat(start, reps)[:, None]
    lab = np.take(labels, idx)  # sorted within each draw, as the pool is
    del idx

    # Runs of equal labels in the flattened draws; every draw starts a run.
    flat = lab.ravel()
    new_run = np.empty(flat.size, dtype=bool)
    new_run[0] = True
    np.not_equal(flat[1:], flat[:-1], out=new_run[1:])
    new_run[::k] = True
    starts = np.flatnonzero(new_run)
    lengths = np.diff(np.append(starts, flat.size))
    run_lab = flat[starts]
    draw_first = np.flatnonzero(starts % k == 0)  # first run of each draw
    runs_per_draw = np.diff(np.append(draw_first, starts.size))
    # The correct class (code 0) sorts first, so it is the draw's first run if present.
    x0 = np.where(run_lab[draw_first] == 0, lengths[draw_first], 0)
    wrong_len = np.where(run_lab >= 2, lengths, 0)
    top = np.maximum.reduceat(wrong_len, draw_first)
    ties = np.add.reduceat(wrong_len == np.repeat(x0, runs_per_draw), draw_first)
    credit = np.where((x0 >= 1) & (top <= x0), 1.0 / (1 + ties), 0.0)
    return credit.reshape(P, reps)


def distinct_subsets(rng: np.random.Generator, n_rows: IntArray, k: int) -> IntArray:
    """[rows x k] sorted indices, row r a uniform k-subset of range(n_rows[r]).

    Draws k indices, then redraws repeated ones (the first of each stays)
    until all k differ. The rule never looks at which sample an index is, so
    the final set's distribution is invariant under relabelling the pool:
    uniform over k-subsets. Few redraws while k is well below n.
    """
    idx = _uniform_ints(rng, n_rows, k)
    idx.sort(axis=1)
    while k > 1:
        dup = np.zeros(idx.shape, dtype=bool)
        np.equal(idx[:, 1:], idx[:, :-1], out=dup[:, 1:])
        redo = np.flatnonzero(dup.any(axis=1))
        if redo.size == 0:
            break
        part, d = idx[redo], dup[redo]
        part[d] = _uniform_ints(rng, n_rows[redo], k)[d]
        part.sort(axis=1)
        idx[redo] = part
    return idx


def _uniform_ints(rng: np.random.Generator, high: IntArray, k: int) -> IntArray:
    """[len(high), k] uniform ints in [0, high) per row.

    floor(U * high) with a double U: its bias is below high / 2^53, and it is
    several times faster than Generator.integers with an array bound.
    """
    u = rng.random((len(high), k))
    u *= high[:, None]
    return u.astype(np.int64)


def _mc_credits_marginal(
    pools: AnswerPools, n_rel: IntArray, k: int, rng: np.random.Generator, reps: int
) -> FloatArray:
    """Credits [P, reps] from class counts drawn one class at a time.

    Only the ``n_rel`` largest wrong classes are drawn; the rest are the ones
    the exact plan proved cannot reach the correct class's count (<= tol).
    """
    P = len(pools.n)
    a = np.repeat(pools.a, reps)
    x0 = rng.hypergeometric(a, np.repeat(pools.n, reps) - a, k)
    credit = np.zeros(P * reps)
    width = int(n_rel.max(initial=0))
    others = np.where(np.arange(width)[None, :] < n_rel[:, None], pools.others[:, :width], 0)
    # Replicates still undecided, compacted as they finish.
    act = np.flatnonzero(x0 >= 1)
    prob = act // reps
    xa = x0[act]
    left = k - xa  # draws not yet given to a class
    pool = pools.n[prob] - pools.a[prob]  # samples of classes not yet drawn, abstain incl.
    ties = np.zeros_like(xa)
    for r in range(width):
        m = others[prob, r]
        # Biggest first: once a class is smaller than x0, or fewer than x0
        # draws are left, no later class can reach the correct one.
        done = (m < xa) | (left < xa)
        if done.any():
            credit[act[done]] = 1.0 / (1 + ties[done])
            keep = ~done
            act, prob, xa, left, pool, ties, m = (
                v[keep] for v in (act, prob, xa, left, pool, ties, m)
            )
        if act.size == 0:
            break
        got = rng.hypergeometric(m, pool - m, left)
        pool -= m
        left -= got
        ties += got == xa
        keep = got <= xa  # a class above x0 wins: credit 0
        act, prob, xa, left, pool, ties = (v[keep] for v in (act, prob, xa, left, pool, ties))
    credit[act] = 1.0 / (1 + ties)
    return credit.reshape(P, reps)
