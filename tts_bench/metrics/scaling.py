"""Scaling analytics over finished curves: coverage law, saturation, ARISE, s1 metrics.

Everything here is a pure function over small tables or arrays that the
curves stage (:mod:`tts_bench.metrics.curves`) or a sweep over budgets has
already produced; nothing re-reads generations.

    law = fit_coverage_law(ks, coverage)          # coverage ~ exp(a * k**b)
    law.a, law.b, law.r2, law.predict([100, 10_000])
    saturation_budget(p=0.2, eps=0.01)            # 14 (closed form, parallel sampling)
    saturation_point(ks, coverage, eps=1e-3)      # first k whose gain per sample < eps
    arise(levels)                                 # ARISE over (problem_id, level, accuracy, tokens)
    arise_adaptive_runs(runs)                     # which (problem, level) needs another run
    s1_metrics(runs)                              # Control / Scaling / Performance (s1)

Sources and choices (see shared/reference/metrics.md, sections 2, 7, 8, 14):

* Coverage law (Large Language Monkeys, sec. 3.1): log c = a k^b with a, b < 0.
  The paper gives no fitting procedure. Here: linear least squares on
  log(-log c) = log(-a) + b log k, then Levenberg-Marquardt on the residuals
  of c itself (so the fit is judged in the units that are plotted). Points
  with c <= 0 or c >= 1 carry no information about log(-log c) (it is
  +-inf) and are excluded from both stages; the count is returned.
* Saturation (Scaling over Scaling): the equations were not read, so the
  rule is a documented choice. With P(N) = 1 - (1 - p)^N the gain of the
  (N+1)-th sample is p (1 - p)^N, and N* is the smallest N whose next
  sample gains less than eps: N* = ceil(ln(eps/p) / ln(1 - p)), at least 1.
  The curve-based version applies the same rule to any measured or fitted
  curve, using the gain per extra sample between consecutive ks.
* ARISE (Yin et al. 2025, authors' code/arise_metric.py): per problem,
  sum over levels j >= 1 of da_j * (T_{j-1}/T_j)^sign(da_j), skipping
  da_j = 0 and non-positive tokens; a problem with one level scores 0; the
  mean over problems. Several runs per (problem, level) are averaged first
  (a_j, T_j are means, as in the authors' adaptive sampler). Tokens are
  completion tokens (the authors' script counts prompt + completion; the
  prompt does not scale with the level, so it would only dilute ratios).
* s1 budget forcing (Muennighoff et al. 2025): Control, Scaling, Performance
  over a set of runs at different thinking budgets. Scaling is reported in
  accuracy points per 1,000 thinking tokens; Performance in points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

ArrayLike = Union[Sequence[float], np.ndarray]

FIT_METHODS = ("lm", "loglog")
ARISE_MIN_RUNS = 3
ARISE_MAX_RUNS = 10
ARISE_CV_THRESHOLD = 0.5
ARISE_EPS = 1e-8


# ---------------------------------------------------------------- coverage law


@dataclass(frozen=True)
class CoverageLaw:
    """A fitted coverage ~ exp(a * k**b).

    a, b      the law's parameters (a < 0 by construction; b < 0 for a rising curve)
    r2        1 - SSE/SST of coverage (not of log(-log c)) over the points used
    rmse      root mean squared residual of coverage over the points used
    n_used    points with 0 < c < 1 and k > 0 that entered the fit
    n_excluded points left out (c <= 0, c >= 1, k <= 0 or not finite)
    method    "lm" (log-log start refined by Levenberg-Marquardt) or "loglog"
    converged whether Levenberg-Marquardt met its tolerance ("loglog": True)
    """

    a: float
    b: float
    r2: float
    rmse: float
    n_used: int
    n_excluded: int
    method: str
    converged: bool

    def predict(self, k: ArrayLike) -> Union[float, np.ndarray]:
        """Coverage at budget(s) k: exp(a * k**b)."""
        k_arr = np.asarray(k, dtype=np.float64)
        out = np.exp(self.a * k_arr**self.b)
        return float(out) if out.ndim == 0 else out

    def saturation(self, eps: float, k_max: int = 1_000_000) -> Optional[int]:
        """Smallest integer k whose next sample gains less than eps on the fitted curve.

        None when the gain is still >= eps at k_max.
        """
        # Block by block (doubling), stopping at the first block that saturates:
        # the same answer as one grid of k_max points, without building it.
        lo, width = 1, 1024
        while lo < k_max:
            hi = min(k_max, lo + width)
            ks = np.arange(lo, hi + 1)
            k = saturation_point(ks, self.predict(ks), eps)
            if k is not None:
                return k
            lo, width = hi, width * 2
        return None


def fit_coverage_law(
    ks: ArrayLike,
    coverage: ArrayLike,
    *,
    method: str = "lm",
    max_iter: int = 200,
    tol: float = 1e-12,
) -> CoverageLaw:
    """Fit coverage ~ exp(a * k**b) to a measured pass@k curve.

    Start: ordinary least squares of log(-log c) on log k (slope b,
    intercept log(-a)). ``method="lm"`` then minimises sum (c - exp(a k^b))^2
    by Levenberg-Marquardt in the parameters (log(-a), b), which keeps a < 0.
    Points with c <= 0 or c >= 1 are excluded (documented in the module).
    Raises ValueError with fewer than two usable points at distinct k.
    """
    if method not in FIT_METHODS:
        raise ValueError(f"method must be one of {FIT_METHODS}; got {method!r}")
    k_arr = np.asarray(ks, dtype=np.float64).ravel()
    c_arr = np.asarray(coverage, dtype=np.float64).ravel()
    if k_arr.shape != c_arr.shape:
        raise ValueError(f"ks and coverage differ in length: {k_arr.size} vs {c_arr.size}")
    use = np.isfinite(k_arr) & np.isfinite(c_arr) & (k_arr > 0) & (c_arr > 0) & (c_arr < 1)
    k_use, c_use = k_arr[use], c_arr[use]
    if np.unique(k_use).size < 2:
        raise ValueError(
            f"the coverage law needs at least two points with 0 < coverage < 1 at distinct k; "
            f"got {int(use.sum())} of {k_arr.size}"
        )
    log_k = np.log(k_use)
    y = np.log(-np.log(c_use))
    design = np.column_stack([np.ones_like(log_k), log_k])
    (u0, b0), *_ = np.linalg.lstsq(design, y, rcond=None)
    theta = np.array([u0, b0])
    converged = True
    if method == "lm":
        theta, converged = _levenberg_marquardt(theta, log_k, c_use, max_iter=max_iter, tol=tol)
    a, b = -math.exp(theta[0]), float(theta[1])
    resid = c_use - np.exp(a * k_use**b)
    sse = float(resid @ resid)
    sst = float(((c_use - c_use.mean()) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else float("nan"))
    return CoverageLaw(
        a=a,
        b=b,
        r2=r2,
        rmse=math.sqrt(sse / c_use.size),
        n_used=int(c_use.size),
        n_excluded=int(k_arr.size - c_use.size),
        method=method,
        converged=converged,
    )


def _law_residuals(theta: np.ndarray, log_k: np.ndarray, c: np.ndarray):
    # c_hat = exp(-g), g = exp(u + b log k) = -a k^b; derivatives in (u, b).
    g = np.exp(theta[0] + theta[1] * log_k)
    c_hat = np.exp(-g)
    jac = np.column_stack([-c_hat * g, -c_hat * g * log_k])  # d c_hat / d(u, b)
    return c - c_hat, jac


def _levenberg_marquardt(
    theta: np.ndarray, log_k: np.ndarray, c: np.ndarray, *, max_iter: int, tol: float
) -> "tuple[np.ndarray, bool]":
    """Minimise ||c - c_hat(theta)||^2 with Marquardt's diagonal damping."""
    resid, jac = _law_residuals(theta, log_k, c)
    sse = float(resid @ resid)
    lam = 1e-3
    for _ in range(max_iter):
        jtj = jac.T @ jac
        grad = jac.T @ resid  # residual r = c - c_hat, so the step solves (J'J + lam D) d = J' r
        if np.max(np.abs(grad)) <= tol * max(1.0, sse):
            return theta, True
        damp = np.diag(np.maximum(np.diag(jtj), 1e-300))
        while True:
            try:
                step = np.linalg.solve(jtj + lam * damp, grad)
            except np.linalg.LinAlgError:
                step = None
            if step is not None and np.all(np.isfinite(step)):
                cand = theta + step
                r_new, j_new = _law_residuals(cand, log_k, c)
                sse_new = float(r_new @ r_new)
                if np.isfinite(sse_new) and np.all(np.isfinite(j_new)) and sse_new <= sse:
                    break
            lam *= 10.0
            if lam > 1e16:
                return theta, True  # no descent direction left: at a minimum to precision
        small_step = np.max(np.abs(step)) <= tol * (1.0 + np.max(np.abs(theta)))
        small_gain = sse - sse_new <= tol * max(sse, 1e-300)
        theta, resid, jac, sse = cand, r_new, j_new, sse_new
        lam = max(lam / 10.0, 1e-12)
        if small_step or small_gain:
            return theta, True
    return theta, False


# ---------------------------------------------------------------- saturation


def saturation_budget(p: Union[float, ArrayLike], eps: float) -> Union[int, np.ndarray]:
    """Samples after which one more parallel sample gains less than eps.

    For P(N) = 1 - (1 - p)^N: N* = ceil(ln(eps / p) / ln(1 - p)), clamped
    to >= 1 (p <= eps: even the first sample's successor is not worth it;
    p = 0 or p = 1: nothing is ever gained, so 1). A documented choice:
    the source's equations were not read. Example: p = 0.2, eps = 0.01 -> 14.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0; got {eps}")
    p_arr = np.asarray(p, dtype=np.float64)
    if np.any((p_arr < 0) | (p_arr > 1) | ~np.isfinite(p_arr)):
        raise ValueError("p must be in [0, 1]")
    inner = (p_arr > eps) & (p_arr < 1)
    safe_p = np.where(inner, p_arr, 0.5)
    n_star = np.ceil(np.log(eps / safe_p) / np.log1p(-safe_p))
    out = np.where(inner, np.maximum(n_star, 1), 1).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def saturation_point(ks: ArrayLike, values: ArrayLike, eps: float) -> Optional[int]:
    """Smallest k whose gain per extra sample, up to the next k, is below eps.

    Gain between consecutive budgets k_j < k_{j+1} is
    (v_{j+1} - v_j) / (k_{j+1} - k_j), in curve units per sample; on the
    integer grid 1, 2, 3, ... this is the rule of :func:`saturation_budget`.
    Returns None when no gain falls below eps (not saturated within the ks).
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0; got {eps}")
    k_arr = np.asarray(ks, dtype=np.float64).ravel()
    v_arr = np.asarray(values, dtype=np.float64).ravel()
    if k_arr.shape != v_arr.shape:
        raise ValueError(f"ks and values differ in length: {k_arr.size} vs {v_arr.size}")
    order = np.argsort(k_arr, kind="stable")
    k_arr, v_arr = k_arr[order], v_arr[order]
    if np.any(np.diff(k_arr) <= 0):
        raise ValueError("ks must be distinct")
    gain = np.diff(v_arr) / np.diff(k_arr)
    below = np.flatnonzero(gain < eps)
    return int(k_arr[below[0]]) if below.size else None


# ---------------------------------------------------------------- ARISE


def arise_per_problem(
    levels: pd.DataFrame,
    *,
    level_col: str = "level",
    accuracy_col: str = "accuracy",
    tokens_col: str = "tokens",
) -> pd.Series:
    """ARISE_i per problem_id from a table of (problem_id, level, accuracy, tokens).

    Levels are ordered by ``level_col``; several rows per (problem, level)
    (runs) are averaged first. Terms with da_j = 0, or with T_{j-1} <= 0 or
    T_j <= 0, are skipped; a problem with a single level scores 0.
    """
    missing = [c for c in ("problem_id", level_col, accuracy_col, tokens_col) if c not in levels]
    if missing:
        raise ValueError(f"ARISE table lacks column(s) {missing}")
    if len(levels) == 0:
        raise ValueError("ARISE needs at least one (problem, level) row")
    means = (
        levels.groupby(["problem_id", level_col], sort=True)[[accuracy_col, tokens_col]]
        .mean()
        .reset_index()
    )
    same = means["problem_id"].to_numpy()[1:] == means["problem_id"].to_numpy()[:-1]
    acc = means[accuracy_col].to_numpy(dtype=np.float64)
    tok = means[tokens_col].to_numpy(dtype=np.float64)
    da = acc[1:] - acc[:-1]
    t_prev, t_cur = tok[:-1], tok[1:]
    valid = same & (da != 0) & (t_prev > 0) & (t_cur > 0)
    ratio = np.divide(t_prev, t_cur, out=np.ones_like(t_prev), where=valid)
    terms = np.where(valid, da * ratio ** np.sign(da), 0.0)
    # Attribute each transition to the problem of its later level.
    per_problem = pd.Series(terms).groupby(means["problem_id"].to_numpy()[1:]).sum()
    out = pd.Series(0.0, index=pd.Index(means["problem_id"].unique(), name="problem_id"))
    out.loc[per_problem.index] = per_problem.to_numpy()
    return out.rename("arise")


def arise(levels: pd.DataFrame, **columns: str) -> float:
    """ARISE: mean over problems of :func:`arise_per_problem`.

    Example: problem 1 acc [0, 1, 1], tokens [1000, 2000, 3000] -> 0.5;
    problem 2 acc [1, 0, 1], tokens [1000, 3000, 4000] -> -3 + 0.75 = -2.25;
    ARISE = -0.875.
    """
    return float(arise_per_problem(levels, **columns).mean())


def coefficient_of_variation(values: ArrayLike, eps: float = ARISE_EPS) -> float:
    """Population std / (mean + eps); 0 for fewer than two values (as the ARISE code)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return 0.0
    return float(v.std() / (v.mean() + eps))


def arise_needs_another_run(
    accuracy: ArrayLike,
    tokens: ArrayLike,
    *,
    min_runs: int = ARISE_MIN_RUNS,
    max_runs: int = ARISE_MAX_RUNS,
    threshold: float = ARISE_CV_THRESHOLD,
) -> bool:
    """The ARISE adaptive-sampling rule for one (problem, level), given its runs so far.

    True while fewer than ``min_runs`` runs exist; then True while
    CV(accuracy) + CV(tokens) > ``threshold`` and runs < ``max_runs``.
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    tok = np.asarray(tokens, dtype=np.float64)
    if acc.shape != tok.shape:
        raise ValueError("accuracy and tokens must have one value per run")
    runs = acc.size
    if runs < min_runs:
        return True
    if runs >= max_runs:
        return False
    return coefficient_of_variation(acc) + coefficient_of_variation(tok) > threshold


def arise_adaptive_runs(
    run_stats: pd.DataFrame,
    *,
    level_col: str = "level",
    accuracy_col: str = "accuracy",
    tokens_col: str = "tokens",
    min_runs: int = ARISE_MIN_RUNS,
    max_runs: int = ARISE_MAX_RUNS,
    threshold: float = ARISE_CV_THRESHOLD,
) -> pd.DataFrame:
    """Plan the next round of ARISE runs from the runs observed so far.

    ``run_stats``: one row per finished run, columns problem_id, level,
    accuracy, tokens (completion tokens). Returns one row per
    (problem_id, level): runs, accuracy (mean), tokens (mean), cv_accuracy,
    cv_tokens, need_more (the rule of :func:`arise_needs_another_run`).
    The accuracy and tokens means are the a_j and T_j that :func:`arise`
    consumes. Pairs with no run yet are not in the table: start each with
    ``min_runs`` runs.
    """
    rows = []
    for (pid, level), grp in run_stats.groupby(["problem_id", level_col], sort=True):
        acc = grp[accuracy_col].to_numpy(dtype=np.float64)
        tok = grp[tokens_col].to_numpy(dtype=np.float64)
        rows.append(
            {
                "problem_id": pid,
                level_col: level,
                "runs": acc.size,
                accuracy_col: acc.mean(),
                tokens_col: tok.mean(),
                "cv_accuracy": coefficient_of_variation(acc),
                "cv_tokens": coefficient_of_variation(tok),
                "need_more": arise_needs_another_run(
                    acc, tok, min_runs=min_runs, max_runs=max_runs, threshold=threshold
                ),
            }
        )
    return pd.DataFrame(
        rows,
        columns=["problem_id", level_col, "runs", accuracy_col, tokens_col, "cv_accuracy",
                 "cv_tokens", "need_more"],
    )


# ---------------------------------------------------------------- s1 budget forcing


@dataclass(frozen=True)
class S1Metrics:
    """s1's budget-forcing metrics over a set of runs.

    control      fraction of runs whose thinking length lies in [a_min, a_max]
    scaling      mean slope over pairs a < b of (f(b) - f(a)) / (b - a), in
                 accuracy points per 1,000 thinking tokens (NaN with < 2 distinct a)
    performance  max accuracy over the runs, in points (0-100)
    n_runs       runs in the set
    n_pairs      pairs a < b that entered the scaling mean
    """

    control: float
    scaling: float
    performance: float
    n_runs: int
    n_pairs: int


def s1_metrics(
    runs: pd.DataFrame,
    *,
    x_col: str = "thinking_tokens",
    accuracy_col: str = "accuracy",
    budget_col: str = "budget",
    a_min: Optional[float] = None,
    a_max: Optional[float] = None,
) -> S1Metrics:
    """Control, Scaling, Performance (s1, Muennighoff et al. 2025) over runs.

    ``runs``: one row per evaluation run, with accuracy as a fraction in
    [0, 1], the run's thinking length ``x_col`` (mean thinking tokens) and,
    for the default control bounds, its target ``budget_col``. f(a) is the
    accuracy of the run at thinking length a; Scaling averages over pairs
    with a strictly smaller a (runs at equal a form no pair). a_min/a_max
    default to the smallest and largest budget in the set. Example: budgets
    1000, 2000, 4000 with accuracy 0.30, 0.40, 0.45 -> Scaling 5.83 points
    per 1k tokens, Performance 45.
    """
    for col in (x_col, accuracy_col):
        if col not in runs:
            raise ValueError(f"s1 runs table lacks column {col!r}")
    if len(runs) == 0:
        raise ValueError("s1 metrics need at least one run")
    x = runs[x_col].to_numpy(dtype=np.float64)
    f = runs[accuracy_col].to_numpy(dtype=np.float64) * 100.0  # points
    if a_min is None or a_max is None:
        if budget_col not in runs:
            raise ValueError(f"give a_min and a_max, or a {budget_col!r} column to take them from")
        budgets = runs[budget_col].to_numpy(dtype=np.float64)
        a_min = float(budgets.min()) if a_min is None else a_min
        a_max = float(budgets.max()) if a_max is None else a_max
    control = float(np.mean((x >= a_min) & (x <= a_max)))
    i, j = np.triu_indices(x.size, k=1)
    lo = np.where(x[i] < x[j], i, j)
    hi = np.where(x[i] < x[j], j, i)
    keep = x[lo] < x[hi]
    slopes = (f[hi] - f[lo])[keep] / (x[hi] - x[lo])[keep]
    scaling = float(slopes.mean() * 1000.0) if slopes.size else float("nan")
    return S1Metrics(
        control=control,
        scaling=scaling,
        performance=float(f.max()),
        n_runs=int(x.size),
        n_pairs=int(slopes.size),
    )
