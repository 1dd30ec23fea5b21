"""Benchmark every curve and the scaling analytics on a synthetic 500 x 10,000 pool.

Times, as the median of several runs: the pass@k / maj@k / tokens@k curves
(and BoN@k when tts_bench.metrics.selection provides it), 1,000 bootstrap
resamples, and the analytics built on the curves (coverage-law fit,
saturation, difficulty bins with compute-optimal selection, a paired
comparison of two half-pools). Prints peak RSS.

    python scripts/bench_analytics.py                          # the full benchmark
    python scripts/bench_analytics.py --problems 50 --runs 1   # a quick look

Targets: curves in at most 2 s; 1,000 bootstrap resamples in at most 10 s.
BoN@k takes every k in one call (bon_at_k with a list of ks sorts each pool
once); it is timed once only if a run takes over 10 s.
The pool is the one of scripts/bench_metrics.py (same generator, same
seed), plus a verifier score per sample for BoN@k.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
try:
    import tts_bench  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from tts_bench.metrics import (  # noqa: E402
    bootstrap_ci,
    compute_curves,
    estimate_matrix,
    per_problem_estimates,
    reduce_per_problem,
)
from tts_bench.metrics.compare import compare_runs  # noqa: E402
from tts_bench.metrics.difficulty import compute_optimal_by_difficulty, oracle_difficulty  # noqa: E402
from tts_bench.metrics.scaling import fit_coverage_law, saturation_point  # noqa: E402


def _load_bench_metrics():
    """scripts/bench_metrics.py as a module: one pool generator and timer, not a copy."""
    spec = importlib.util.spec_from_file_location("bench_metrics", ROOT / "scripts" / "bench_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_metrics = _load_bench_metrics()


def add_verifier_scores(graded: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A verifier score per sample: higher on correct samples, with overlap (AUC about 0.76)."""
    rng = np.random.default_rng([seed, 7])
    score = 1.0 / (1.0 + np.exp(-(graded["correct"].to_numpy() * 1.0 + rng.normal(0, 1.0, len(graded)))))
    return graded.assign(verifier_score=score)


def bon_matrix_fn(graded: pd.DataFrame, ks: "list[int]") -> Optional[Callable[[], np.ndarray]]:
    """A callable returning BoN@k as [problems x ks], if tts_bench.metrics.selection exists."""
    try:
        from tts_bench.metrics.selection import bon_at_k  # not every checkout has it
    except ImportError:
        return None
    ordered = graded.sort_values(["problem_id", "sample_index"])
    n = ordered.groupby("problem_id", sort=True).size().to_numpy()
    if (n != n[0]).any():
        raise ValueError("the synthetic pool has equal n per problem")
    # A 2-D array is a list of equal-length pools: one row per problem.
    scores = ordered["verifier_score"].to_numpy().reshape(len(n), n[0])
    correct = ordered["correct"].to_numpy(dtype=np.float64).reshape(len(n), n[0])
    return lambda: bon_at_k(scores, correct, list(ks))


def selection_curves_fn(graded: pd.DataFrame, ks: "list[int]") -> Optional[Callable[[], object]]:
    try:
        from tts_bench.metrics.selection import selection_curves
    except ImportError:
        return None
    return lambda: selection_curves(graded, ks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5, help="runs per timing (median reported)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--selection-curves", action="store_true",
                    help="also time selection_curves once (bon@k, weighted@k, ffs@k)")
    args = ap.parse_args()
    timed = bench_metrics.median_time

    t0 = time.perf_counter()
    graded = add_verifier_scores(bench_metrics.synthetic_samples(args.problems, args.samples))
    build_s = time.perf_counter() - t0
    rss_pool = bench_metrics._peak_rss_mib()
    n = args.samples
    ks = sorted({2**i for i in range(20) if 2**i <= n} | {n})

    t_reduce, problems = timed(lambda: reduce_per_problem(graded), max(1, args.runs // 2))
    t_curves, _ = timed(lambda: compute_curves(problems, ks, n_boot=0), args.runs)
    t_total, curves = timed(lambda: compute_curves(problems, ks, n_boot=args.n_boot), args.runs)
    est = estimate_matrix(problems, ks)
    stacked = np.concatenate([est.values[m] for m in est.values], axis=1)
    t_boot, _ = timed(lambda: bootstrap_ci(stacked, n_boot=args.n_boot, seed=0), args.runs)

    bon = bon_matrix_fn(graded, ks)
    t_bon = t_bon_boot = t_sel = None
    if bon is not None:
        t_bon, bon_values = timed(bon, 1)
        if t_bon < 10.0:  # repeat only what is quick enough to repeat
            t_bon, bon_values = timed(bon, args.runs)
        with_bon = np.concatenate([stacked, bon_values], axis=1)
        t_bon_boot, _ = timed(lambda: bootstrap_ci(with_bon, n_boot=args.n_boot, seed=0), args.runs)
        sel = selection_curves_fn(graded, ks)
        if args.selection_curves and sel is not None:
            try:
                t_sel, _ = timed(sel, 1)
            except Exception as err:  # a module under development must not sink the benchmark
                t_sel = f"failed: {type(err).__name__}: {err}"

    # Analytics on top of the curves.
    pass_curve = curves[curves.metric == "pass@k"]
    t_fit, law = timed(lambda: fit_coverage_law(pass_curve["k"], pass_curve["value"]), args.runs)
    t_sat, sat = timed(lambda: law.saturation(1e-5, k_max=10**6), args.runs)
    sat_measured = saturation_point(pass_curve["k"], pass_curve["value"], 1e-5)

    per_problem = per_problem_estimates(problems, ks)
    # Two strategies per budget k: majority vote over k samples, or one sample (pass@1 at any k).
    maj = per_problem[per_problem.metric == "maj@k"].assign(strategy="majority")
    single = maj.assign(
        strategy="single",
        value=np.repeat(problems["c"].to_numpy() / problems["n"].to_numpy(), len(ks)),
    )
    acc = pd.concat([maj, single], ignore_index=True).rename(columns={"k": "budget"})
    levels = oracle_difficulty(problems)
    t_opt, optimal = timed(
        lambda: compute_optimal_by_difficulty(acc, "budget", "strategy", "value", levels, seed=0),
        args.runs,
    )

    half = n // 2
    first = reduce_per_problem(graded[graded.sample_index < half])
    second = reduce_per_problem(graded[graded.sample_index >= half])
    half_ks = [k for k in ks if k <= half]
    est_a = per_problem_estimates(first, half_ks)
    est_b = per_problem_estimates(second, half_ks)
    t_cmp, cmp = timed(lambda: compare_runs(est_a, est_b, n_boot=args.n_boot, seed=0), args.runs)
    rss_end = bench_metrics._peak_rss_mib()

    print(f"pool: {args.problems} problems x {n} samples = {len(graded):,} rows "
          f"(built in {build_s:.1f} s); {len(ks)} ks from 1 to {n}")
    print()
    print("| step | median time | target |")
    print("|---|---|---|")
    print(f"| reduce_per_problem | {t_reduce:.3f} s | - |")
    print(f"| curves: pass@k + maj@k + tokens@k, no bootstrap | {t_curves:.3f} s | <= 2 s |")
    if t_bon is None:
        print("| curves: BoN@k | skipped (no tts_bench.metrics.selection) | - |")
    else:
        print(f"| curves: BoN@k (bon_at_k, {len(ks)} ks) | {t_bon:.3f} s | <= 2 s with the others |")
        print(f"| all curves: pass@k + maj@k + tokens@k + BoN@k | {t_curves + t_bon:.3f} s | <= 2 s |")
        print(f"| bootstrap, {args.n_boot} resamples, BoN@k columns included "
              f"| {t_bon_boot:.3f} s | <= 10 s |")
    if t_sel is not None:
        cell = t_sel if isinstance(t_sel, str) else f"{t_sel:.3f} s"
        print(f"| selection_curves (bon@k, weighted@k, ffs@k), one run | {cell} | - |")
    print(f"| bootstrap alone, {args.n_boot} resamples x {stacked.shape[1]} columns "
          f"| {t_boot:.3f} s | <= 10 s |")
    print(f"| curves + {args.n_boot} bootstrap resamples | {t_total:.3f} s | - |")
    print(f"| fit_coverage_law ({law.n_used} points) | {t_fit * 1e3:.2f} ms | - |")
    print(f"| saturation on the fitted law (k <= 10^6) | {t_sat * 1e3:.2f} ms | - |")
    print(f"| compute_optimal_by_difficulty (5 bins x {len(ks)} budgets x 2 strategies) "
          f"| {t_opt * 1e3:.1f} ms | - |")
    print(f"| compare_runs (half pools, {len(half_ks)} ks x 3 metrics, {args.n_boot} resamples) "
          f"| {t_cmp * 1e3:.1f} ms | - |")
    print(f"| peak RSS after building the pool | {rss_pool:.0f} MiB | - |")
    print(f"| peak RSS at the end | {rss_end:.0f} MiB | - |")
    print()
    print(f"coverage law: a = {law.a:.4f}, b = {law.b:.4f}, R^2 = {law.r2:.5f}, "
          f"RMSE = {law.rmse:.5f}, {law.n_excluded} of {len(pass_curve)} points excluded (coverage 0 or 1)")
    print(f"saturation (gain < 1e-5 per sample): fitted law k = {sat}, measured curve k = {sat_measured}")
    budget_show = ks[len(ks) // 2]
    print(f"compute-optimal by oracle difficulty, majority vs single sample, budget k = {budget_show}:")
    print(optimal[optimal.budget == budget_show].to_string(index=False))
    d = cmp.table[(cmp.table.metric == "pass@k") & (cmp.table.k == 1)].iloc[0]
    print(f"half-pool comparison, pass@1: delta {d.delta:+.5f} [{d.ci_low:+.5f}, {d.ci_high:+.5f}] "
          f"({d.verdict}; same model, so 0 is expected inside)")


if __name__ == "__main__":
    main()
