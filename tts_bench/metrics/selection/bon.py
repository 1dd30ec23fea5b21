"""Best-of-N with a verifier (unbiased BoN@k from one pool) and PRM step-score aggregation."""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import pandas as pd

from tts_bench.metrics.estimators._common import _missing
from tts_bench.metrics.selection._pools import (
    STEP_AGGREGATES,
    FloatArray,
    IntArray,
    _check_k,
    _floats,
    _is_seq,
    _labels,
    _pool_args,
    _result,
)

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


