"""Exact maj@k: the subset vote distribution by FFT products of per-class hypergeometric terms."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tts_bench.metrics.estimators._common import _BLOCK_ELEMENTS, AnswerPools, FloatArray, IntArray

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


