"""Weighted votes over k-subsets of a pool: exact enumeration or seeded Monte Carlo."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

import numpy as np
import pandas as pd

from tts_bench.metrics.estimators import DEFAULT_MC_REPLICATES, distinct_subsets
from tts_bench.metrics.estimators._common import _missing
from tts_bench.metrics.selection._pools import (
    _BLOCK_ELEMENTS,
    DEFAULT_EXACT_SUBSETS,
    MAX_EXACT_SUBSETS,
    METHODS,
    TIE_RTOL,
    FloatArray,
    IntArray,
    _check_k,
    _floats,
    _labels,
    _pool_args,
    _result,
    selection_rng,
)
from tts_bench.metrics.selection.pruning import _rpc_drop

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


