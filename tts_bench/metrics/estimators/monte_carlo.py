"""Monte Carlo maj@k: seeded random k-subsets, by index sampling or class by class."""

from __future__ import annotations

import math

import numpy as np

from tts_bench.metrics.estimators._common import (
    _MC_BLOCK_LABELS,
    _NS_INDEX_DRAW,
    _NS_INDEX_LABEL,
    _NS_MARGINAL,
    AnswerPools,
    FloatArray,
    IntArray,
)

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
