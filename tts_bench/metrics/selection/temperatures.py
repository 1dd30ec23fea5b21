"""Pools drawn at several temperatures: union coverage, union vote, particle resampling."""

from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence, Union

import numpy as np
import pandas as pd

from tts_bench.metrics.estimators import DEFAULT_MC_REPLICATES, pass_at_k
from tts_bench.metrics.selection._pools import (
    DEFAULT_EXACT_SUBSETS,
    METHODS,
    FloatArray,
    _result,
    selection_rng,
)
from tts_bench.metrics.selection.vote import (
    VoteEstimate,
    _class_codes,
    _correct_list,
    _random_subsets,
    _row_credits,
    _VotePools,
)

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


