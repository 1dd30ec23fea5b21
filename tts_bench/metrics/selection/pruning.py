"""RPC's reasoning pruning: which samples a two-component Weibull mixture of their probabilities drops."""

from __future__ import annotations

import math

import numpy as np

from tts_bench.metrics.selection._pools import FloatArray, _floats

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

