"""First finish search: the first of k samples to finish answers; its tokens and latency."""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import numpy as np

from tts_bench.metrics.selection._pools import (
    FloatArray,
    IntArray,
    _check_k,
    _floats,
    _labels,
    _none_drawn,
    _pool_args,
    _result,
)
from tts_bench.metrics.selection.bon import _bon_matrix

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
    """:func:`first_finish`'s five expectations at one k, per problem."""
    return tuple(a[:, 0] for a in _ffs_matrix(n, L, correct, finished, [k]))


def _ffs_matrix(n: IntArray, L: FloatArray, correct: np.ndarray, finished: np.ndarray,
                ks: Sequence[int]):
    """The five FFS expectations as [problems x ks] arrays, from one sort of every pool.

    Everything that does not depend on k (the order by length, the time
    steps, the finished counts) is computed once. At each k the
    hypergeometric "none drawn" probabilities depend only on the pool size
    and a count, so they are tabulated per distinct pool size (n + 1 values)
    and gathered: 5M samples at 15 ks take seconds, not minutes.
    """
    P = len(n)
    ks = [int(k) for k in ks]
    acc = _bon_matrix(n, np.where(finished, -L, np.nan), (correct & finished).astype(float), ks)
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
    # C(n-1-F, k-1) / C(n-1, k-1) = [C(n-F, k) / C(n, k)] * n / (n-F), and n - F >= 1.
    above = dt * (nn - r) / (nn - F)  # dt * #{L > t} / n, times that ratio's n / (n-F)
    sizes, size_of = np.unique(n, return_inverse=True)
    base = (np.concatenate([[0], np.cumsum(sizes + 1)[:-1]]).astype(np.int64))[size_of][pid]
    at_run, at_stuck, at_all = base + F, base + nn - (r - F), base + nn - r
    maj_tokens_1 = np.bincount(pid, weights=L, minlength=P) / np.maximum(n, 1)
    shape = (P, len(ks))
    tokens, latency, maj_tokens, maj_latency = (np.empty(shape) for _ in range(4))
    for j, k in enumerate(ks):
        # none[base(n) + e] = C(n - e, k) / C(n, k), for every pool size n and 0 <= e <= n.
        none = np.concatenate([_none_drawn(np.full(int(m) + 1, int(m)), np.arange(int(m) + 1), k)
                               for m in sizes]) if Ls.size else np.empty(0)
        run = none[at_run]  # no finished sample of length <= t drawn
        tokens[:, j] = np.bincount(pid, weights=above * k * run, minlength=P)
        stuck = none[at_stuck]  # every drawn sample truncated, L <= t
        latency[:, j] = np.bincount(pid, weights=dt * (run - stuck), minlength=P)
        maj_tokens[:, j] = k * maj_tokens_1
        maj_latency[:, j] = np.bincount(pid, weights=dt * (1.0 - none[at_all]), minlength=P)
    return acc, tokens, latency, maj_tokens, maj_latency


def _exclusive_cumsum(x: IntArray, start: IntArray, pid: IntArray) -> IntArray:
    cum = np.cumsum(x) - x
    return cum - cum[start[pid]]


