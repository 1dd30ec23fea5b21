"""Shared pieces of the selection estimators: constants, Monte Carlo streams, pool arguments."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from tts_bench.metrics.estimators.coverage import _pass_at_one_k
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


def _none_drawn(N: IntArray, e: IntArray, K: int) -> FloatArray:
    """C(N - e, K) / C(N, K): a uniform K-subset of N avoids e given items.

    1 - pass@K from :func:`pass_at_k`'s stable product (absolute error ~1e-16);
    1 when K = 0. ``N`` and ``e``: int64 arrays of one shape, already valid
    (0 <= e <= N, K <= N), so nothing is checked again: callers run it per k
    over millions of samples.
    """
    if K == 0 or N.size == 0:
        return np.ones(N.shape)
    return 1.0 - _pass_at_one_k(N, e, K)


def _result(single: bool, *arrays):
    if single:
        out = tuple(float(a[0]) if a.dtype != bool else bool(a[0]) for a in arrays)
        return out if len(out) > 1 else out[0]
    return arrays if len(arrays) > 1 else arrays[0]


