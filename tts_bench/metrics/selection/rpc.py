"""RPC: perplexity-consistency voting (the vote weighted by each answer's probability)."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from tts_bench.metrics.estimators import DEFAULT_MC_REPLICATES
from tts_bench.metrics.estimators._common import _missing
from tts_bench.metrics.selection._pools import (
    DEFAULT_EXACT_SUBSETS,
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
from tts_bench.metrics.selection.vote import (
    VoteEstimate,
    _class_codes,
    _correct_list,
    _key_codes,
    _vote_batch,
    _VotePools,
)


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


