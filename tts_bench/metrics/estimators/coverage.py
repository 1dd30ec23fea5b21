"""Unbiased pass@k (Chen et al.) in a stable product form, for arrays of problems."""

from __future__ import annotations

from typing import Union

import numpy as np

from tts_bench.metrics.estimators._common import FloatArray, IntArray

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


