"""Selection strategies scored from one pool of n samples per problem.

Each estimator answers "what would this strategy have scored with a budget
of k samples?" by averaging over the k-subsets of the pool (exactly, or over
seeded random subsets), one value per problem, so that the bootstrap over
problems of :mod:`tts_bench.metrics.curves` applies unchanged:

    bon_at_k(scores, correct, k)                          # best-of-N with a verifier
    weighted_vote_at_k(classes, scores, "A", k, seed=0)   # argmax_a sum of scores
    aggregate_steps(step_scores, "last")                  # PRM step scores -> one score
    rpc_vote(classes, mean_logprobs)                      # perplexity-consistency vote
    rpc_at_k(classes, mean_logprobs, "A", k, seed=0)
    first_finish(lengths, correct, finish_reasons, k)     # first finish search, with costs
    union_coverage({0.6: (8, 0), 1.2: (8, 2)}, {0.6: 8, 1.2: 8})
    union_vote_at_k({0.6: [...], 1.2: [...]}, "A", {0.6: 4, 1.2: 4}, seed=0)
    selection_curves(graded, ks=[1, 4, 16])               # tidy per-problem frame

Pools. A per-problem argument is one problem's pool (a 1-D sequence) or a
list of pools (one sequence per problem, lengths may differ; a 2-D array is
a list of equal-length pools). One pool gives floats back, a list gives
arrays with one entry per problem.

Shared rules (the same as maj@k in :mod:`tts_bench.metrics.estimators`):
subsets are uniform k-subsets drawn without replacement; a sample without an
answer class (None) takes a slot and casts no vote; when the correct class
ties for first with t other classes it earns 1/(1 + t) (the expected score of
a uniform tie-break); no vote or no correct class scores 0. k > n raises
ValueError naming the problem and the values.

Exact weights. The probability that the sample at 0-based rank i of a
ranking of n (best first) is the best of a uniform k-subset is

    w_i = C(n-i-1, k-1) / C(n, k) = (k/n) * C(n-1-i, k-1) / C(n-1, k-1),

"this sample is drawn and none of the i above it is". The second factor is
1 - pass@(k-1) of a pool of n-1 with i "successes", so it comes from
:func:`pass_at_k`'s stable product form (absolute error ~1e-16, n up to
10^4 and beyond; no factorials). Best-of-N and first finish search are this
order statistic under two rankings; the cost terms of first finish search
are integrals of the same hypergeometric "none drawn" probabilities.

Monte Carlo. Votes whose subsets cannot be enumerated cheaply (weighted vote,
RPC, union vote) average ``replicates`` seeded random k-subsets per problem;
the standard error, at most 0.5/sqrt(replicates), comes back with the value.
Seeds: metric m at budget k draws from ``selection_rng(seed, m, k)``, the
same one-stream-per-(seed, k) convention as :func:`mc_rng`, with a metric
tag so that adding a metric or a k leaves the other estimates unchanged.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import pandas as pd

from tts_bench.metrics.curves import CURVE_MC_REPLICATES, _check_ks
from tts_bench.metrics.estimators import (
    DEFAULT_MC_REPLICATES,
    _missing,
    distinct_subsets,
    pass_at_k,
)
from tts_bench.metrics.problem_table import reduce_per_problem
from tts_bench.metrics.registry import names

IntArray = np.ndarray
FloatArray = np.ndarray

#: Enumerate every k-subset when a problem has at most this many (method="auto").
DEFAULT_EXACT_SUBSETS = 20_000
#: method="exact" refuses problems with more k-subsets than this.
MAX_EXACT_SUBSETS = 2_000_000
#: Vote totals closer than this share of the subset's total |weight| count as tied.
TIE_RTOL = 1e-12
STEP_AGGREGATES = ("min", "prod", "last", "mean")
SELECTION_METRICS = names(source="samples")  # what selection_curves computes
# particle_resample_probs: the resampling step of particle filtering (section 11).
METHODS = ("auto", "exact", "mc")
_METRIC_TAGS = {"weighted": 1, "rpc": 2, "union_vote": 3}
_BLOCK_ELEMENTS = 4_000_000  # sampled labels held at once


def selection_rng(seed: int, metric: str, k: int) -> np.random.Generator:
    """The Monte Carlo stream of ``metric`` ("weighted", "rpc", "union_vote") at k.

    Independent of :func:`mc_rng` (maj@k) and of the bootstrap's stream.
    """
    return np.random.default_rng([seed, 3, _METRIC_TAGS[metric], k])


# ---------------------------------------------------------------- pools


def _is_seq(v) -> bool:
    return isinstance(v, (list, tuple, np.ndarray, pd.Series))


def _is_many(x) -> bool:
    """A list of pools (one per problem) rather than one pool."""
    if isinstance(x, np.ndarray) and x.ndim == 2:
        return True
    if isinstance(x, pd.Series):
        x = x.tolist()
    if isinstance(x, (list, tuple, np.ndarray)):
        return len(x) > 0 and all(_is_seq(v) for v in x)
    return False


def _flatten(x, dtype) -> "tuple[np.ndarray, IntArray]":
    """(all samples concatenated, pool size per problem)."""
    if isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype.kind in "biuf":
        # Equal-size numeric pools: no per-element conversion (5M samples in ms).
        return x.ravel(), np.full(x.shape[0], x.shape[1], dtype=np.int64)
    pools = list(x) if _is_many(x) else [x]
    arrays = [np.asarray(list(p) if isinstance(p, pd.Series) else p, dtype=dtype).ravel()
              for p in pools]
    n = np.array([a.size for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays) if arrays else np.empty(0, dtype=dtype)
    return flat, n


def _pool_args(name: str, *args) -> "tuple[list[np.ndarray], IntArray, bool]":
    """Flatten parallel per-sample arguments; check that the pools line up."""
    single = not _is_many(args[0])
    flats, sizes = [], None
    for arg in args:
        if _is_many(arg) == single:
            raise ValueError(f"{name}: give every per-sample argument as one pool or as a list "
                             f"of pools, not a mix")
        flat, n = _flatten(arg, object)
        if sizes is not None and not np.array_equal(n, sizes):
            raise ValueError(f"{name}: per-sample arguments differ in pool sizes: "
                             f"{sizes.tolist()} vs {n.tolist()}")
        sizes = n
        flats.append(flat)
    return flats, sizes, single


def _floats(values: np.ndarray) -> FloatArray:
    """Per-sample numbers -> float64; None/NaN -> NaN, bools -> 0/1."""
    if values.dtype != object:
        return values.astype(np.float64)
    return pd.Series(values, dtype=object).astype(np.float64).to_numpy()


def _labels(single: bool, n: IntArray) -> "list[str]":
    return ["the pool"] if single else [f"#{i}" for i in range(len(n))]


def _check_k(what: str, k: int, n: IntArray, labels: Sequence) -> None:
    if int(k) != k or k < 1:
        raise ValueError(f"{what} needs an integer k >= 1; got k={k}")
    short = np.flatnonzero(n < k)
    if short.size:
        i = int(short[0])
        raise ValueError(
            f"{what} needs k <= n (k samples drawn from a pool of n); problem {labels[i]} "
            f"has n={int(n[i])} < k={int(k)}"
        )


def _none_drawn(N, e, K: int) -> FloatArray:
    """C(N - e, K) / C(N, K): a uniform K-subset of N avoids e given items.

    1 - pass@K from :func:`pass_at_k`'s stable product (absolute error ~1e-16);
    1 when K = 0.
    """
    N, e = np.broadcast_arrays(np.asarray(N, dtype=np.int64), np.asarray(e, dtype=np.int64))
    if K == 0:
        return np.ones(N.shape)
    if N.size == 0:
        return np.zeros(N.shape)
    return 1.0 - np.asarray(pass_at_k(N, e, K), dtype=np.float64)


def _result(single: bool, *arrays):
    if single:
        out = tuple(float(a[0]) if a.dtype != bool else bool(a[0]) for a in arrays)
        return out if len(out) > 1 else out[0]
    return arrays if len(arrays) > 1 else arrays[0]


# ---------------------------------------------------------------- best-of-N


def bon_at_k(scores, correct, k: Union[int, Sequence[int]]) -> Union[float, FloatArray]:
    """Unbiased best-of-N@k: the expected correctness of the top-scored sample of
    a uniform k-subset of the pool.

    Estimator (sc-genrm-scaling, eval_utils.py): sort the n samples by score,
    best first; BoN@k = sum_i correct_(i) * C(n-i-1, k-1) / C(n, k), the
    weights computed as in the module docstring (stable for n >= 10^4).

    Ties: a tie in score is broken uniformly at random, and the estimate is
    the exact average over all tie orders. Derivation: the estimate is linear
    in the correctness at each rank, and under a uniformly random order of a
    tied block every sample of the block is equally likely to sit at each of
    the block's ranks, so the expected correctness at any rank in the block is
    the block's mean; hence BoN@k = sum_i w_i * mean(correct over i's block).
    This equals picking uniformly among the tied maxima of each subset.

    Edge cases: NaN scores (a sample the verifier did not score) rank below
    every scored sample, tied with each other; k = 1 gives c/n; k = n the
    mean correctness of the top-scored block. ``scores``/``correct``: one
    pool or a list of pools (see module docstring); a float back for one pool.
    ``k`` a sequence: every k from one sort of each pool, as a [pools x ks]
    array (one row for one pool).
    """
    (s_obj, c_obj), n, single = _pool_args("bon@k", scores, correct)
    s = _floats(s_obj)
    c = _floats(c_obj)
    if isinstance(k, (list, tuple, np.ndarray)):
        ks = [int(x) for x in k]
        for x in ks:
            _check_k("bon@k", x, n, _labels(single, n))
        return _bon_matrix(n, s, c, ks)
    _check_k("bon@k", k, n, _labels(single, n))
    return _result(single, _bon_flat(n, s, c, int(k)))


def _bon_flat(n: IntArray, scores: FloatArray, values: FloatArray, k: int) -> FloatArray:
    """E[value of the top-ranked sample of a uniform k-subset], per problem.

    Samples are grouped by problem (sizes ``n``); higher score ranks first;
    NaN ranks last; equal scores are a tied block (block-mean values).
    """
    return _bon_matrix(n, scores, values, [k])[:, 0]


def _bon_weights(n: int, ks: Sequence[int]) -> FloatArray:
    """[n x ks]: probability that rank r (0 = best) is the best of a uniform k-subset."""
    r = np.arange(n, dtype=np.float64)
    W = np.zeros((n, len(ks)))
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, k in enumerate(ks):
            live = r <= n - k
            step = np.where(r < n - k, np.log((n - r - k) / (n - 1 - r)), 0.0)
            log_w = np.log(k / n) + np.cumsum(step) - step
            W[:, j] = np.where(live, np.exp(log_w), 0.0)
    return W


def _bon_matrix(n: IntArray, scores: FloatArray, values: FloatArray, ks: Sequence[int]) -> FloatArray:
    """[problems x ks] BoN@k for every k from one sort of every pool.

    The estimator of :func:`_bon_flat` at every k. The weight of rank r (0 = best) is
    w_k(r) = C(n-1-r, k-1) / C(n, k), built from w_k(0) = k/n and the ratio
    w_k(r+1) / w_k(r) = (n-r-k) / (n-1-r) as an exclusive cumulative sum of
    logs along each problem's row of a [problems x max n] array, so no
    binomial is ever formed and no sum runs across problems.
    """
    P = len(n)
    if P == 0:
        return np.zeros((0, len(ks)))
    pid = np.repeat(np.arange(P), n)
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    N = int(n.max())
    # One row per problem, best first after an argsort along rows (far cheaper
    # than one lexsort over all samples). Unscored samples sort after every
    # scored one, as one tied block; padding sorts after them and is never used.
    keys = np.full((P, N), np.inf)
    vals = np.zeros((P, N))
    col = np.arange(pid.size) - start[pid]
    keys[pid, col] = np.where(np.isnan(scores), np.finfo(np.float64).max, -scores)
    vals[pid, col] = values
    order = np.argsort(keys, axis=1, kind="stable")
    keys = np.take_along_axis(keys, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    new = np.ones((P, N), dtype=bool)
    new[:, 1:] = keys[:, 1:] != keys[:, :-1]
    starts = np.flatnonzero(new.ravel())
    lengths = np.diff(np.append(starts, P * N))
    V = np.repeat(np.add.reduceat(vals.ravel(), starts) / lengths, lengths).reshape(P, N)
    out = np.empty((P, len(ks)))
    # The weights depend only on (n, rank, k): one [n x ks] matrix per
    # distinct pool size, applied to all its problems with one matmul.
    for size in np.unique(n):
        rows = np.flatnonzero(n == size)
        out[rows] = V[rows, :size] @ _bon_weights(int(size), ks)
    return out


# ---------------------------------------------------------------- PRM steps


def aggregate_steps(step_scores, how: str) -> Union[float, FloatArray]:
    """One score per sample from its process-reward-model step scores.

    ``how``: "min" (the weakest step), "prod" (product of step scores, the
    probability that every step is right if they are independent; it can
    underflow to 0 for hundreds of low steps, which ties such samples),
    "last" (the last step's score; Snell et al. found it works best), "mean".
    ``step_scores``: one sample's list of floats (a float back) or a sequence
    of such lists, one per sample (an array back). A sample with None or no
    steps gets NaN (an unscored sample: bon_at_k ranks it last, the weighted
    vote gives it weight 0); a NaN step makes min/prod/mean NaN.
    """
    if how not in STEP_AGGREGATES:
        raise ValueError(f"aggregate_steps: how must be one of {STEP_AGGREGATES}; got {how!r}")
    items = step_scores.tolist() if isinstance(step_scores, (pd.Series, np.ndarray)) \
        else list(step_scores)
    single = all(not _is_seq(v) and not _missing(v) for v in items)
    if single:
        items = [items]
    lists = [[] if (not _is_seq(v) and _missing(v)) else list(v) for v in items]
    lengths = np.array([len(v) for v in lists], dtype=np.int64)
    out = np.full(len(lists), np.nan)
    has = np.flatnonzero(lengths > 0)
    if has.size:
        flat = np.array([x for v in lists for x in v], dtype=np.float64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[has]
        if how == "min":
            # np.minimum propagates NaN, as documented.
            out[has] = np.minimum.reduceat(flat, starts)
        elif how == "prod":
            out[has] = np.multiply.reduceat(flat, starts)
        elif how == "mean":
            out[has] = np.add.reduceat(flat, starts) / lengths[has]
        else:
            out[has] = flat[starts + lengths[has] - 1]
    return float(out[0]) if single else out


# ---------------------------------------------------------------- votes


class VoteEstimate(NamedTuple):
    """A vote@k estimate: floats for one pool, arrays (one per problem) for a list."""

    value: Union[float, FloatArray]
    is_mc: Union[bool, np.ndarray]  # False: exact (enumeration or closed form)
    stderr: Union[float, FloatArray]  # Monte Carlo standard error; 0 when exact


@dataclass(frozen=True)
class _VotePools:
    """Flat per-sample vote inputs of P problems (grouped, sizes n).

    codes: 0 the correct class, -1 no vote, >= 1 wrong classes (per problem);
    weights: vote weight; p: probabilities for RPC pruning (NaN: not fitted)
    or None; keys: duplicate keys (-1: distinct from everything) or None.
    """

    codes: IntArray
    weights: FloatArray
    n: IntArray
    p: Optional[FloatArray] = None
    keys: Optional[IntArray] = None

    @property
    def start(self) -> IntArray:
        return np.concatenate([[0], np.cumsum(self.n)[:-1]]).astype(np.int64)


def _class_codes(classes: np.ndarray, n: IntArray, correct_class: list) -> IntArray:
    """Flat answer classes -> codes: 0 correct, -1 none, 1..C_p the other classes of
    each problem (dense per problem, so a vote can count classes by bincount)."""
    codes, uniques = pd.factorize(pd.Series(classes, dtype=object), use_na_sentinel=True)
    lookup = {u: i for i, u in enumerate(uniques)}
    good = np.array([lookup.get(g, -2) if not _missing(g) else -2 for g in correct_class],
                    dtype=np.int64)
    pid = np.repeat(np.arange(len(n)), n)
    out = np.where(codes < 0, -1, np.where(codes == good[pid], 0, 1)).astype(np.int64)
    wrong = np.flatnonzero(out == 1)
    if wrong.size:
        M = len(uniques) + 1
        pair = pid[wrong] * M + codes[wrong]
        uniq, inv = np.unique(pair, return_inverse=True)
        first = np.searchsorted(uniq // M, pid[wrong])  # the problem's first pair
        out[wrong] = inv - first + 1
    return out


def _key_codes(keys: np.ndarray) -> IntArray:
    codes, _ = pd.factorize(pd.Series(keys, dtype=object), use_na_sentinel=True)
    return codes.astype(np.int64)


def _correct_list(correct_class, single: bool, P: int) -> list:
    if single:
        return [correct_class]
    out = list(correct_class)
    if len(out) != P:
        raise ValueError(f"correct_class has {len(out)} entries for {P} pools")
    return out


def weighted_vote_at_k(
    answer_classes,
    scores,
    correct_class,
    k: int,
    *,
    seed: Union[int, np.random.Generator] = 0,
    replicates: int = DEFAULT_MC_REPLICATES,
    method: str = "auto",
    exact_cap: int = DEFAULT_EXACT_SUBSETS,
) -> VoteEstimate:
    """Weighted vote@k: P(argmax_a sum_{i in S, ans_i = a} score_i is correct), S a
    uniform k-subset of the pool.

    The argmax runs over the classes present among the votes of S (a class
    with a zero or negative total can still win when every present class is
    at or below it). Ties (totals within TIE_RTOL of the subset's total
    |score|, so that 0.1 + 0.2 ties 0.3) earn 1/(number tied), as in maj@k;
    samples without an answer class take a slot and do not vote; NaN scores
    weigh 0 (the sample's class is still present). With equal scores this is
    maj@k exactly.

    Methods: "exact" enumerates every k-subset; k = 1 is the closed form
    (share of samples in the correct class); "mc" averages ``replicates``
    seeded random subsets; "auto" enumerates when a problem has at most
    ``exact_cap`` k-subsets (always at k = n: one subset) and samples
    otherwise. ``seed``: an int (stream selection_rng(seed, "weighted", k))
    or a Generator. ``correct_class``: the class of the correct answers
    (None: no sample is correct, value 0); a list of them for a list of pools.
    """
    (cls, sc), n, single = _pool_args("weighted@k", answer_classes, scores)
    labels = _labels(single, n)
    _check_k("weighted@k", k, n, labels)
    good = _correct_list(correct_class, single, len(n))
    w = np.nan_to_num(_floats(sc), nan=0.0)
    pools = _VotePools(codes=_class_codes(cls, n, good), weights=w, n=n)
    rng = seed if isinstance(seed, np.random.Generator) else selection_rng(seed, "weighted", k)
    v, mc, se = _vote_batch(pools, int(k), rng=rng, method=method, replicates=replicates,
                            exact_cap=exact_cap, prune=False)
    return VoteEstimate(*_result(single, v, mc, se))


def _vote_batch(
    pools: _VotePools,
    k: int,
    *,
    rng: np.random.Generator,
    method: str,
    replicates: int,
    exact_cap: int,
    prune: bool,
) -> "tuple[FloatArray, np.ndarray, FloatArray]":
    """Vote@k for every problem: (value, is_mc, stderr) arrays."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if replicates < 2:
        raise ValueError(f"replicates must be >= 2; got {replicates}")
    P = len(pools.n)
    value, stderr = np.zeros(P), np.zeros(P)
    n_sub = np.array([_n_subsets(int(m), k) for m in pools.n])
    if k == 1:
        # One voter: its class wins whatever its weight (pruning never drops a
        # lone sample: it is not below its own mean).
        pid = np.repeat(np.arange(P), pools.n)
        hits = np.bincount(pid, weights=pools.codes == 0, minlength=P)
        return hits / pools.n, np.zeros(P, dtype=bool), stderr
    if method == "exact":
        too_many = np.flatnonzero(n_sub > MAX_EXACT_SUBSETS)
        if too_many.size:
            i = int(too_many[0])
            raise ValueError(
                f"method='exact' would enumerate C({int(pools.n[i])}, {k}) = {n_sub[i]:.3g} "
                f"subsets (problem #{i}); the limit is {MAX_EXACT_SUBSETS}: use method='auto'"
            )
        exact = np.ones(P, dtype=bool)
    elif method == "mc":
        exact = n_sub == 1
    else:
        exact = n_sub <= exact_cap
    start = pools.start
    for m in np.unique(pools.n[exact]):
        probs = np.flatnonzero(exact & (pools.n == m))
        combos = np.array(list(itertools.combinations(range(int(m)), k)), dtype=np.int64)
        per = max(1, _BLOCK_ELEMENTS // (combos.size or 1))
        for s in range(0, probs.size, per):
            part = probs[s:s + per]
            rows = (combos[None, :, :] + start[part][:, None, None]).reshape(-1, k)
            credit = _row_credits(pools, rows, prune).reshape(part.size, -1)
            value[part] = credit.mean(axis=1)
    mc = np.flatnonzero(~exact)
    per = max(1, _BLOCK_ELEMENTS // (replicates * k))
    for s in range(0, mc.size, per):
        part = mc[s:s + per]
        n_rows = np.repeat(pools.n[part], replicates)
        rows = _random_subsets(n_rows, k, rng) + np.repeat(start[part], replicates)[:, None]
        credit = _row_credits(pools, rows, prune).reshape(part.size, replicates)
        value[part] = credit.mean(axis=1)
        stderr[part] = credit.std(axis=1, ddof=1) / math.sqrt(replicates)
    return value, ~exact, stderr


def _n_subsets(n: int, k: int) -> float:
    """C(n, k) as a float, inf when far above any enumeration cap."""
    log_c = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return float(math.comb(n, k)) if log_c < 200 else math.inf


def _random_subsets(n_rows: IntArray, k: int, rng: np.random.Generator) -> IntArray:
    """[rows, k] uniform k-subsets of range(n_row), one per row."""
    R = len(n_rows)
    out = np.empty((R, k), dtype=np.int64)
    # Rejection while repeats are rare (k^2 <= 4n: under ~2 per row expected),
    # else the k smallest of n random keys (cost n per row, no repeats).
    few_rows = (2 * k <= n_rows) & (k * k <= 4 * n_rows)
    few = np.flatnonzero(few_rows)
    if few.size:
        # k distinct indices, repeats redrawn: maj@k's uniform k-subset sampler.
        out[few] = distinct_subsets(rng, n_rows[few], k)
    many = np.flatnonzero(~few_rows)
    if many.size:
        # The k smallest of n uniform keys: a uniform k-subset (padding sorts last).
        nr = n_rows[many]
        keys = rng.random((many.size, int(nr.max())))
        keys[np.arange(keys.shape[1])[None, :] >= nr[:, None]] = 2.0
        out[many] = np.argpartition(keys, k - 1, axis=1)[:, :k]
    return out


def _row_credits(pools: _VotePools, rows: IntArray, prune: bool) -> FloatArray:
    """Vote credit of each row of sample indices (flat indices into ``pools``)."""
    R, m = rows.shape
    codes = pools.codes[rows]
    if prune and pools.p is not None:
        codes = np.where(_rpc_drop(pools.p[rows]), -1, codes)
    w = np.where(codes >= 0, pools.weights[rows], 0.0)
    C = max(2, int(codes.max(initial=-1)) + 2)  # columns: no vote, correct, wrong classes
    if pools.keys is None and R * C <= max(4 * R * m, 1 << 23):
        # Few classes: count each row's class totals directly.
        idx = (np.arange(R)[:, None] * C + codes + 1).ravel()
        total = np.bincount(idx, weights=w.ravel(), minlength=R * C).reshape(R, C)[:, 1:]
        present = np.bincount(idx, minlength=R * C).reshape(R, C)[:, 1:] > 0
        top = np.where(present, total, -np.inf).max(axis=1)
        scale = np.where(present, np.abs(total), 0.0).sum(axis=1)
        tied = present & (total >= (top - TIE_RTOL * scale)[:, None])
        return tied[:, 0] / np.maximum(tied.sum(axis=1), 1)
    if pools.keys is not None:
        keys = pools.keys[rows]
        sort_key = codes * (int(pools.keys.max(initial=0)) + 2) + (keys + 1)
    else:
        sort_key = codes
    order = np.argsort(sort_key, axis=1, kind="stable")
    codes = np.take_along_axis(codes, order, axis=1)
    w = np.take_along_axis(w, order, axis=1)
    if pools.keys is not None:
        # Distinct samples only (RPC): a repeat of a (class, key) pair weighs 0.
        sk = np.take_along_axis(sort_key, order, axis=1)
        kk = np.take_along_axis(keys, order, axis=1)
        dup = np.zeros((R, m), dtype=bool)
        dup[:, 1:] = (sk[:, 1:] == sk[:, :-1]) & (kk[:, 1:] >= 0)
        w = np.where(dup, 0.0, w)
    # Runs of equal class within each row; every row starts a run.
    new = np.ones((R, m), dtype=bool)
    new[:, 1:] = codes[:, 1:] != codes[:, :-1]
    starts = np.flatnonzero(new.ravel())
    total = np.add.reduceat(w.ravel(), starts)
    run_code = codes.ravel()[starts]
    run_row = starts // m
    row_first = np.flatnonzero(starts % m == 0)
    votes = run_code >= 0
    top = np.maximum.reduceat(np.where(votes, total, -np.inf), row_first)
    scale = np.add.reduceat(np.where(votes, np.abs(total), 0.0), row_first)
    tied = votes & (total >= (top - TIE_RTOL * scale)[run_row])
    n_tied = np.add.reduceat(tied.astype(np.int64), row_first)
    won = np.add.reduceat((tied & (run_code == 0)).astype(np.float64), row_first)
    return won / np.maximum(n_tied, 1)


# ---------------------------------------------------------------- RPC


def _rpc_drop(p: FloatArray, max_iter: int = 200, newton_steps: int = 12) -> np.ndarray:
    """RPC reasoning pruning, per row of probabilities [R, m] (NaN: not in the fit).

    Drop a sample when it is more likely under the low-mean component of a
    2-component Weibull mixture fitted to the row's p, and p < the row mean.
    Rows with fewer than 4 fitted values or no spread are kept whole.
    """
    p = np.atleast_2d(p)
    valid = np.isfinite(p)
    cnt = valid.sum(axis=1)
    lo_v = np.where(valid, p, np.inf).min(axis=1)
    hi_v = np.where(valid, p, -np.inf).max(axis=1)
    fit = (cnt >= 4) & (hi_v - lo_v > 1e-12 * np.abs(hi_v))
    drop = np.zeros(p.shape, dtype=bool)
    if not fit.any():
        return drop
    x = p[fit]
    v = valid[fit]
    y = np.where(v, np.log(np.clip(np.where(v, x, 1.0), 1e-300, None)), 0.0)  # log p
    post_low = _weibull_mixture_low(y, v, max_iter, newton_steps)
    mean = np.where(v, x, 0.0).sum(axis=1) / v.sum(axis=1)
    drop[fit] = v & (post_low > 0.5) & (x < mean[:, None])
    return drop


def _weibull_mixture_low(y: FloatArray, v: np.ndarray, max_iter: int, newton_steps: int):
    """Posterior of the low-mean component of a 2-Weibull mixture, fitted by EM.

    y = log x [R, m], v = which entries count. Starts from the RPC authors'
    initial guess (w = 0.5, shapes 1 and 1.5, scales 1 and 2); the mixing
    weight is kept in [0.2, 0.8] and shapes/scales >= 0.01, their bounds.
    M-step: weighted Weibull maximum likelihood; the shape solves
    g(b) = sum r x^b ln x / sum r x^b - 1/b - sum r ln x / sum r = 0
    (g increases in b) by safeguarded Newton, then scale^b = sum r x^b / sum r.
    """
    R = y.shape[0]
    vf = v.astype(np.float64)
    pi = np.full(R, 0.5)
    shape = np.tile(np.array([1.0, 1.5]), (R, 1))
    log_scale = np.tile(np.log(np.array([1.0, 2.0])), (R, 1))
    prev_ll = np.full(R, -np.inf)
    active = np.ones(R, dtype=bool)
    yy = y[:, None, :]  # [R, 1, m]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return _weibull_em(yy, v, vf, pi, shape, log_scale, prev_ll, active, max_iter,
                           newton_steps)


def _weibull_em(yy, v, vf, pi, shape, log_scale, prev_ll, active, max_iter, newton_steps):
    # exp(z) overflows to inf for points far above a component's scale: the
    # density there is exp(-inf) = 0, which is right.
    for _ in range(max_iter):
        z = shape[:, :, None] * (yy - log_scale[:, :, None])  # b (ln x - ln lam)
        logf = (np.log(shape) - log_scale)[:, :, None] + z - yy - np.exp(z)
        logf += np.log(np.stack([pi, 1.0 - pi], axis=1))[:, :, None]
        top = logf.max(axis=1, keepdims=True)
        norm = top + np.log(np.exp(logf - top).sum(axis=1, keepdims=True))
        resp = np.exp(logf - norm) * vf[:, None, :]  # [R, 2, m]
        ll = (norm[:, 0, :] * vf).sum(axis=1)
        done = np.abs(ll - prev_ll) <= 1e-10 * (1.0 + np.abs(ll))
        active &= ~done
        prev_ll = ll
        if not active.any():
            break
        # M-step (rows already converged keep their parameters).
        rsum = resp.sum(axis=2)  # [R, 2]
        ok = active[:, None] & (rsum > 1e-12)
        pi = np.where(active, np.clip(rsum[:, 0] / vf.sum(axis=1), 0.2, 0.8), pi)
        rbar = np.where(ok, (resp * yy).sum(axis=2) / np.where(ok, rsum, 1.0), 0.0)
        b = shape.copy()
        lo = np.full(b.shape, 0.01)
        hi = np.full(b.shape, 1e4)
        for _ in range(newton_steps):
            a = b[:, :, None] * yy
            a = np.where(v[:, None, :], a, -np.inf)
            e = resp * np.exp(a - a.max(axis=2, keepdims=True))
            s0 = e.sum(axis=2)
            s0 = np.where(s0 > 0, s0, 1.0)
            m1 = (e * yy).sum(axis=2) / s0
            m2 = (e * yy * yy).sum(axis=2) / s0
            g = m1 - 1.0 / b - rbar
            dg = np.maximum(m2 - m1 * m1, 0.0) + 1.0 / (b * b)
            lo = np.where(g < 0, b, lo)
            hi = np.where(g > 0, b, hi)
            step = b - g / dg
            inside = (step > lo) & (step < hi)
            b = np.where(inside, step, np.sqrt(lo * hi))
        b = np.clip(b, 0.01, 1e4)
        a = b[:, :, None] * yy + np.log(np.where(resp > 0, resp, 1.0))
        a = np.where(resp > 0, a, -np.inf)
        amax = a.max(axis=2, keepdims=True)
        lse = amax[:, :, 0] + np.log(np.exp(a - np.where(np.isfinite(amax), amax, 0.0)).sum(axis=2))
        new_log_scale = (lse - np.log(np.where(ok, rsum, 1.0))) / b
        new_log_scale = np.maximum(new_log_scale, math.log(0.01))
        shape = np.where(ok, b, shape)
        log_scale = np.where(ok, new_log_scale, log_scale)
    # Low component: the smaller Weibull mean, log(scale) + lgamma(1 + 1/shape).
    log_mean = log_scale + np.vectorize(math.lgamma)(1.0 + 1.0 / shape)
    low = np.argmin(log_mean, axis=1)  # 0 or 1 per row
    z = shape[:, :, None] * (yy - log_scale[:, :, None])
    logf = (np.log(shape) - log_scale)[:, :, None] + z - yy - np.exp(z)
    logf += np.log(np.stack([pi, 1.0 - pi], axis=1))[:, :, None]
    top = logf.max(axis=1, keepdims=True)
    post = np.exp(logf - top)
    post /= post.sum(axis=1, keepdims=True)
    return np.take_along_axis(post, low[:, None, None], axis=1)[:, 0, :]


def rpc_pruned(mean_logprobs) -> np.ndarray:
    """Which samples RPC's reasoning pruning drops (True = dropped), for one pool.

    Choice, documented: the RPC authors (WNJXYK/RPC, compute_rpc.py) fit a
    2-component Weibull mixture to p = exp(mean logprob) by bounded L-BFGS-B
    (scipy); without scipy we fit the same model by EM from their initial
    guess and bounds (see ``_weibull_mixture_low``); both are local
    maximisers, so on awkward pools the two fits can differ. A sample is
    dropped when its posterior under the low-mean component exceeds the
    high one's and p is below the mean p of the pool. Samples with a missing
    logprob are not fitted and never dropped (they cast no RPC vote anyway);
    pools with fewer than 4 fitted samples, or all p equal, drop nothing.
    """
    p = np.exp(_floats(np.asarray(mean_logprobs, dtype=object).ravel()))
    return _rpc_drop(p[None, :])[0]


def rpc_vote(
    answer_classes, mean_logprobs, *, prune: bool = False, sample_keys=None
) -> Optional[object]:
    """Perplexity-consistency vote (RPC): argmax_a sum of p(t) over distinct samples t
    with answer a, p(t) = exp(mean token logprob of t).

    "Distinct": samples with the same ``sample_keys`` value (e.g. a hash of
    the completion text, as the authors dedupe identical completions) count
    once; without keys every sample is distinct. Samples with answer None or
    a missing logprob do not vote. ``prune=True`` first drops the samples
    :func:`rpc_pruned` selects. Ties go to the class seen first in the pool
    (rpc_at_k instead gives tied classes fractional credit). Returns None
    when no sample votes.
    """
    (cls, lp), _, single = _pool_args("rpc_vote", answer_classes, mean_logprobs)
    if not single:
        raise ValueError("rpc_vote takes one pool; use rpc_at_k for lists of pools")
    p = np.exp(_floats(lp))
    keep = np.isfinite(p) & np.array([not _missing(c) for c in cls], dtype=bool)
    if prune:
        keep &= ~_rpc_drop(p[None, :])[0]
    keys = list(sample_keys) if sample_keys is not None else [None] * len(cls)
    totals: dict = {}
    seen: set = set()
    for c, pv, key, kp in zip(cls, p, keys, keep):
        if not kp:
            continue
        if not _missing(key):
            if (c, key) in seen:
                continue
            seen.add((c, key))
        totals[c] = totals.get(c, 0.0) + float(pv)
    if not totals:
        return None
    return max(totals, key=lambda c: totals[c])  # first of the tied maxima


def rpc_at_k(
    answer_classes,
    mean_logprobs,
    correct_class,
    k: int,
    *,
    seed: Union[int, np.random.Generator] = 0,
    replicates: int = DEFAULT_MC_REPLICATES,
    method: str = "auto",
    exact_cap: int = DEFAULT_EXACT_SUBSETS,
    prune: bool = False,
    sample_keys=None,
) -> VoteEstimate:
    """RPC@k: P(the RPC vote over a uniform k-subset picks the correct class).

    The vote of :func:`rpc_vote` (weights p = exp(mean logprob), distinct
    samples by ``sample_keys``), with maj@k's tie (fractional credit) and
    abstention rules; a sample with a missing logprob abstains. With
    ``prune=True`` the Weibull mixture is fitted within each k-subset, as the
    authors prune the K paths they sample; expect ~100x the cost of the
    plain vote (an EM fit per subset). Methods and seeds as in
    :func:`weighted_vote_at_k` (stream selection_rng(seed, "rpc", k)).
    """
    args = [answer_classes, mean_logprobs] + ([sample_keys] if sample_keys is not None else [])
    flats, n, single = _pool_args("rpc@k", *args)
    labels = _labels(single, n)
    _check_k("rpc@k", k, n, labels)
    good = _correct_list(correct_class, single, len(n))
    pools = _rpc_pools(flats[0], _floats(flats[1]), n, good,
                       flats[2] if sample_keys is not None else None)
    rng = seed if isinstance(seed, np.random.Generator) else selection_rng(seed, "rpc", k)
    v, mc, se = _vote_batch(pools, int(k), rng=rng, method=method, replicates=replicates,
                            exact_cap=exact_cap, prune=prune)
    return VoteEstimate(*_result(single, v, mc, se))


def _rpc_pools(cls, logprob: FloatArray, n: IntArray, good: list, keys) -> _VotePools:
    p = np.exp(logprob)
    codes = _class_codes(cls, n, good)
    codes = np.where(np.isfinite(p), codes, -1)
    return _VotePools(
        codes=codes, weights=np.nan_to_num(p, nan=0.0), n=n, p=p,
        keys=_key_codes(keys) if keys is not None else None,
    )


# ---------------------------------------------------------------- first finish


class FirstFinish(NamedTuple):
    """First finish search at k, expectations over uniform k-subsets (floats for
    one pool, arrays for a list). Costs in decode tokens; latency in tokens of
    the longest-running stream (a proxy for wall-clock time)."""

    accuracy: Union[float, FloatArray]
    tokens: Union[float, FloatArray]  # E[sum_j min(L_j, T)], T the stop time
    latency: Union[float, FloatArray]  # E[T]: the first finisher's length
    majority_tokens: Union[float, FloatArray]  # E[sum_j L_j] = k * mean L
    majority_latency: Union[float, FloatArray]  # E[max_j L_j]


def first_finish(lengths, correct, finish_reasons, k: int) -> FirstFinish:
    """First finish search (FFS) at k, exactly, from n complete samples.

    Launch k samples and return the first to finish: offline, over a uniform
    k-subset, the shortest non-truncated one (finish_reason != "length"),
    equal lengths broken uniformly at random. Truncated samples never finish
    and are never returned (graded correct or not).

    Accuracy is best-of-N with score -length (truncated samples last, worth
    0): the i-th shortest finished sample wins with probability
    C(n-i-1, k-1)/C(n, k) (hypergeometric: it is drawn, none shorter is),
    equal lengths a block as in :func:`bon_at_k`, so exact over tie orders.

    If every sample of the subset is truncated, FFS returns nothing: the
    subset counts as a failure (0), every stream runs to its own end (tokens
    sum L_j, latency max L_j).

    Cost: all streams stop when the first one finishes at T, so the decode
    tokens are sum_j min(L_j, T) -- k * L_min, as in the FFS paper, whenever
    no truncated sample is shorter than the winner (one max_tokens cap for
    all) -- and the latency proxy is T. Expectations are exact integrals
    over t of hypergeometric probabilities, with F(t) = finished samples of
    length <= t:  E[tokens] = int #{L > t} * (k/n) C(n-1-F, k-1)/C(n-1, k-1) dt,
    E[T] = int P(no F(t) drawn) - P(all drawn are truncated with L <= t) dt.
    Majority vote over the same k samples for comparison waits for all:
    tokens E[sum L_j] = k * mean L, latency E[max L_j].
    ``lengths`` (completion tokens, >= 0), ``correct``, ``finish_reasons``:
    one pool or a list of pools.
    """
    (ln, cr, fr), n, single = _pool_args("ffs@k", lengths, correct, finish_reasons)
    _check_k("ffs@k", k, n, _labels(single, n))
    L = _floats(ln)
    if not np.isfinite(L).all() or (L < 0).any():
        raise ValueError("ffs@k needs finite lengths >= 0 (completion tokens) for every sample")
    finished = fr != "length"
    good = _floats(cr) > 0
    return FirstFinish(*_result(single, *_ffs_flat(n, L, good, finished, int(k))))


def _ffs_flat(n: IntArray, L: FloatArray, correct: np.ndarray, finished: np.ndarray, k: int):
    P = len(n)
    acc = _bon_flat(n, np.where(finished, -L, np.nan), (correct & finished).astype(float), k)
    pid = np.repeat(np.arange(P), n)
    start = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
    order = np.lexsort((L, pid))
    Ls, fin = L[order], finished[order].astype(np.int64)
    r = np.arange(Ls.size) - start[pid]  # rank by length within the problem
    prev = np.concatenate([[0.0], Ls[:-1]])
    prev[start[n > 0]] = 0.0
    dt = Ls - prev  # t runs over [L_(r-1), L_(r)): #{L > t} = n - r
    F = _exclusive_cumsum(fin, start, pid)  # finished samples shorter than t
    nn = n[pid]
    run = _none_drawn(nn, F, k)  # no finished sample of length <= t drawn
    tokens = np.bincount(
        pid, weights=dt * (nn - r) * (k / nn) * _none_drawn(nn - 1, F, k - 1), minlength=P
    )
    stuck = _none_drawn(nn, nn - (r - F), k)  # every drawn sample truncated, L <= t
    latency = np.bincount(pid, weights=dt * (run - stuck), minlength=P)
    maj_tokens = k * np.bincount(pid, weights=L, minlength=P) / n
    maj_latency = np.bincount(pid, weights=dt * (1.0 - _none_drawn(nn, nn - r, k)), minlength=P)
    return acc, tokens, latency, maj_tokens, maj_latency


def _exclusive_cumsum(x: IntArray, start: IntArray, pid: IntArray) -> IntArray:
    cum = np.cumsum(x) - x
    return cum - cum[start[pid]]


# ---------------------------------------------------------------- temperatures


def union_coverage(groups: Mapping, ks_per_temperature: Mapping) -> Union[float, FloatArray]:
    """Coverage of a budget split over temperatures: solved if any temperature's
    k_T samples hold a correct one.

    union = 1 - prod_T C(n_T - c_T, k_T) / C(n_T, k_T), each factor 1 - pass@k_T
    (:func:`pass_at_k`), independent draws per temperature. ``groups`` maps a
    temperature to (n_T, c_T), ints or arrays over problems (broadcast);
    ``ks_per_temperature`` maps temperatures to k_T >= 0 (k_T = 0: unused; a
    temperature of ``groups`` missing there is unused). Raises ValueError for
    a k_T > n_T or a temperature not in ``groups``.
    """
    unknown = [t for t in ks_per_temperature if t not in groups]
    if unknown:
        raise ValueError(f"union coverage: no samples for temperature(s) {unknown}; "
                         f"groups has {list(groups)}")
    fail = np.ones(())
    for t, k_t in ks_per_temperature.items():
        if int(k_t) != k_t or k_t < 0:
            raise ValueError(f"union coverage: k at T={t} must be an integer >= 0; got {k_t}")
        if k_t == 0:
            continue
        n_t, c_t = (np.asarray(v, dtype=np.int64) for v in groups[t])
        n_b, c_b = np.broadcast_arrays(n_t, c_t)
        short = np.flatnonzero(n_b.ravel() < k_t)
        if short.size:
            i = int(short[0])
            where = "" if n_b.ndim == 0 else f" (problem #{i})"
            raise ValueError(f"union coverage: k={int(k_t)} samples at T={t} exceed the "
                             f"n={int(n_b.ravel()[i])} drawn there{where}")
        fail = fail * (1.0 - np.asarray(pass_at_k(n_b, c_b, int(k_t))))
    out = 1.0 - fail
    return float(out) if out.ndim == 0 else out


def multi_temperature_coverage(pools: Mapping, ks: Sequence[int]) -> pd.DataFrame:
    """Union coverage of runs at several temperatures, on the problems they share.

    ``pools``: temperature -> per-problem table (problem_id, n, c), e.g. each
    run's per_problem.parquet. For each k: union coverage with k samples at
    every temperature (a budget of k x #temperatures), and, where every pool
    has that many samples, each single temperature's pass@ at the same total
    budget, so a split budget is compared with an unsplit one at equal cost.
    Columns: k_per_temperature, total_samples, union_coverage,
    pass@total at T=<t> (one per temperature, NaN where n is too small),
    n_problems.
    """
    temps = list(pools)
    if len(temps) < 2:
        raise ValueError("multi-temperature coverage needs runs at two or more temperatures")
    shared = set.intersection(*(set(pools[t]["problem_id"]) for t in temps))
    if not shared:
        raise ValueError("the runs share no problem")
    ids = sorted(shared)
    nc = {t: pools[t].set_index("problem_id").loc[ids, ["n", "c"]].to_numpy(np.int64) for t in temps}
    rows = []
    for k in ks:
        if any((nc[t][:, 0] < k).any() for t in temps):
            continue
        union = union_coverage({t: (nc[t][:, 0], nc[t][:, 1]) for t in temps}, {t: k for t in temps})
        total = k * len(temps)
        row = {"k_per_temperature": int(k), "total_samples": total,
               "union_coverage": float(np.mean(union)), "n_problems": len(ids)}
        for t in temps:
            n_t, c_t = nc[t][:, 0], nc[t][:, 1]
            row[f"pass@total at T={t}"] = (float(np.mean(pass_at_k(n_t, c_t, total)))
                                           if (n_t >= total).all() else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def particle_resample_probs(rewards, tau: float = 1.0) -> FloatArray:
    """Particle-filtering resampling distribution (Puri et al. 2025, its_hub).

    Each particle's weight is logit(r) for its PRM reward r in (0, 1); the
    next generation is drawn with probabilities softmax(weights / tau).
    With tau = 1 this is each particle's odds r / (1 - r), normalised.
    Rewards of exactly 0 or 1 are clipped to 1e-12 from the bounds (finite
    logits); documented choice.
    """
    if tau <= 0:
        raise ValueError(f"particle resampling needs tau > 0; got {tau}")
    r = np.clip(np.asarray(rewards, dtype=np.float64), 1e-12, 1 - 1e-12)
    if r.ndim != 1 or r.size == 0:
        raise ValueError("particle resampling needs a non-empty 1-D array of rewards")
    w = (np.log(r) - np.log1p(-r)) / tau
    e = np.exp(w - w.max())
    return e / e.sum()


def union_vote_at_k(
    pools,
    correct_class,
    ks_per_temperature: Mapping,
    *,
    seed: Union[int, np.random.Generator] = 0,
    replicates: int = DEFAULT_MC_REPLICATES,
    method: str = "auto",
    exact_cap: int = DEFAULT_EXACT_SUBSETS,
) -> VoteEstimate:
    """Majority vote over k_T samples drawn from each temperature's pool, pooled.

    ``pools``: for one problem a mapping temperature -> answer classes; a list
    of such mappings for many problems (``correct_class`` then a list too).
    Votes, ties and abstentions as maj@k. The subset is a uniform k_T-subset
    per temperature, drawn independently. "exact" enumerates the product of
    the per-temperature subsets ("auto" when at most ``exact_cap``); "mc"
    draws ``replicates`` of them (stream selection_rng(seed, "union_vote", k),
    k = sum k_T).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    single = isinstance(pools, Mapping)
    plist = [pools] if single else list(pools)
    good = _correct_list(correct_class, single, len(plist))
    temps = [t for t, k_t in ks_per_temperature.items() if k_t > 0]
    k_total = int(sum(ks_per_temperature[t] for t in temps))
    if k_total < 1:
        raise ValueError("union vote needs at least one k_T >= 1")
    rng = seed if isinstance(seed, np.random.Generator) else \
        selection_rng(seed, "union_vote", k_total)
    P = len(plist)
    value, is_mc, stderr = np.zeros(P), np.zeros(P, dtype=bool), np.zeros(P)
    for i, pool in enumerate(plist):
        missing = [t for t in temps if t not in pool]
        if missing:
            raise ValueError(f"union vote: problem #{i} has no samples at T={missing}")
        sizes = [len(pool[t]) for t in temps]
        for t, m in zip(temps, sizes):
            if m < ks_per_temperature[t]:
                raise ValueError(f"union vote: k={int(ks_per_temperature[t])} samples at T={t} "
                                 f"exceed the n={m} of problem #{i}")
        cls = np.array([c for t in temps for c in pool[t]], dtype=object)
        n_all = np.array([cls.size], dtype=np.int64)
        vp = _VotePools(codes=_class_codes(cls, n_all, [good[i]]),
                        weights=np.ones(cls.size), n=n_all)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        subsets = math.prod(math.comb(m, int(ks_per_temperature[t])) for t, m in zip(temps, sizes))
        exact = method == "exact" or (method == "auto" and subsets <= exact_cap) or subsets == 1
        if exact:
            per_t = [
                np.array(list(itertools.combinations(range(m), int(ks_per_temperature[t]))))
                + off for t, m, off in zip(temps, sizes, offsets)
            ]
            rows = np.array([np.concatenate(parts) for parts in itertools.product(*per_t)])
            value[i] = _row_credits(vp, rows, False).mean()
        else:
            parts = [
                _random_subsets(np.full(replicates, m), int(ks_per_temperature[t]), rng) + off
                for t, m, off in zip(temps, sizes, offsets)
            ]
            credit = _row_credits(vp, np.concatenate(parts, axis=1), False)
            value[i] = credit.mean()
            stderr[i] = credit.std(ddof=1) / math.sqrt(replicates)
            is_mc[i] = True
    return VoteEstimate(*_result(single, value, is_mc, stderr))


# ---------------------------------------------------------------- table entry point


def selection_curves(
    samples: pd.DataFrame,
    ks: Sequence[int],
    *,
    seed: int = 0,
    replicates: int = CURVE_MC_REPLICATES,
    method: str = "auto",
    exact_cap: int = DEFAULT_EXACT_SUBSETS,
    step_aggregate: str = "last",
    rpc_prune: bool = False,
) -> pd.DataFrame:
    """Per-problem selection metrics at every k, tidy: one row per (problem, metric, k).

    Columns: problem_id, metric, k, value, method ("exact"/"mc"), score (the
    verifier score's source for bon@k/weighted@k, else None), tokens,
    latency, majority_tokens, majority_latency (ffs@k rows; NaN elsewhere).
    Metrics, each only when its inputs are present (a column with at least
    one non-null value):

    * bon@k, weighted@k: from ``verifier_score``, else from ``step_scores``
      aggregated with ``step_aggregate`` (score "step_scores:last");
    * rpc@k: from ``mean_logprob`` (``rpc_prune`` turns on reasoning pruning);
    * ffs@k: always (completion_tokens, finish_reason, correct).

    Problems are those of :func:`reduce_per_problem` (same order and checks);
    samples in a pool are ordered by sample_index. Raises ValueError when a
    k exceeds a problem's n. Average over problems and bootstrap with
    :func:`bootstrap_ci` on the pivoted [problems x ks] values.
    """
    problems = reduce_per_problem(samples)
    ks = _check_ks(problems, ks)
    pid, _ = pd.factorize(samples["problem_id"], sort=True)
    order = np.lexsort((samples["sample_index"].to_numpy(), pid))
    df = samples.iloc[order]
    n = problems["n"].to_numpy(dtype=np.int64)
    good = list(problems["correct_class"])
    ids = problems["problem_id"].to_numpy()
    cls = df["answer_class"].to_numpy(dtype=object)
    correct = df["correct"].to_numpy(dtype=bool, na_value=False)
    frames = []

    def add(metric, values, is_mc, score=None, extra=None):
        P, K = values.shape
        frame = {
            "problem_id": np.repeat(ids, K),
            "metric": metric,
            "k": np.tile(np.asarray(ks, dtype=np.int64), P),
            "value": values.ravel(),
            "method": np.where(is_mc.ravel(), "mc", "exact"),
            "score": score,
        }
        for col in ("tokens", "latency", "majority_tokens", "majority_latency"):
            frame[col] = extra[col].ravel() if extra else np.nan
        frames.append(pd.DataFrame(frame))

    score, source = _score_column(df, step_aggregate)
    if score is not None:
        bon = _bon_matrix(n, score, correct.astype(float), ks)
        add("bon@k", bon, np.zeros(bon.shape, dtype=bool), source)
        pools = _VotePools(codes=_class_codes(cls, n, good),
                           weights=np.nan_to_num(score, nan=0.0), n=n)
        v, mc = _votes(pools, ks, seed, "weighted", method, replicates, exact_cap, False)
        add("weighted@k", v, mc, source)
    if "mean_logprob" in df.columns and df["mean_logprob"].notna().any():
        pools = _rpc_pools(cls, _floats(df["mean_logprob"].to_numpy(dtype=object)), n, good, None)
        v, mc = _votes(pools, ks, seed, "rpc", method, replicates, exact_cap, rpc_prune)
        add("rpc@k", v, mc)
    L = df["completion_tokens"].to_numpy(dtype=np.float64)
    finished = (df["finish_reason"] != "length").to_numpy(dtype=bool)
    cols = ("value", "tokens", "latency", "majority_tokens", "majority_latency")
    res = {c: np.empty((len(n), len(ks))) for c in cols}
    for j, k in enumerate(ks):
        for c, arr in zip(cols, _ffs_flat(n, L, correct, finished, k)):
            res[c][:, j] = arr
    add("ffs@k", res["value"], np.zeros(res["value"].shape, dtype=bool), extra=res)
    return pd.concat(frames, ignore_index=True)


def _score_column(df: pd.DataFrame, step_aggregate: str):
    if "verifier_score" in df.columns and df["verifier_score"].notna().any():
        return _floats(df["verifier_score"].to_numpy(dtype=object)), "verifier_score"
    if "step_scores" in df.columns:
        steps = [None if not _is_seq(v) and _missing(v) else v for v in df["step_scores"]]
        if any(v is not None for v in steps):
            return aggregate_steps(steps, step_aggregate), f"step_scores:{step_aggregate}"
    return None, None


def _votes(pools, ks, seed, metric, method, replicates, exact_cap, prune):
    v = np.empty((len(pools.n), len(ks)))
    mc = np.zeros(v.shape, dtype=bool)
    for j, k in enumerate(ks):
        v[:, j], mc[:, j], _ = _vote_batch(
            pools, k, rng=selection_rng(seed, metric, k), method=method,
            replicates=replicates, exact_cap=exact_cap, prune=prune,
        )
    return v, mc
