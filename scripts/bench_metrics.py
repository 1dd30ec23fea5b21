"""Benchmark the metrics stage on a synthetic pool of graded samples.

Builds 500 problems x 10,000 samples (per-problem success rate from a Beta
distribution, wrong answers spread over a Zipf-like set of classes, some
samples without an answer), then times reduce_per_problem and the pass@k /
maj@k / tokens@k curves at k = 1, 2, 4, ..., 8192, 10000, with and without
1000 bootstrap resamples. Prints the median of several runs and peak RSS.

    python scripts/bench_metrics.py                 # the full benchmark
    python scripts/bench_metrics.py --problems 50 --runs 1   # a quick look

Targets (from the issue): curves in at most 2 s; 1000 bootstrap resamples in
at most 10 s.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

try:
    import tts_bench  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tts_bench.metrics import (  # noqa: E402
    bootstrap_ci,
    compute_curves,
    estimate_matrix,
    reduce_per_problem,
)


def synthetic_samples(problems: int, samples: int, seed: int = 0) -> pd.DataFrame:
    """Graded samples shaped like a real sweep (one row per generation)."""
    rng = np.random.default_rng(seed)
    p_correct = rng.beta(0.6, 0.9, problems)  # U-shaped: many easy and many hard problems
    p_abstain = rng.beta(1.0, 19.0, problems)  # about 5% without an extracted answer
    n_wrong_classes = rng.integers(5, 300, problems)
    zipf_s = rng.uniform(0.9, 1.6, problems)

    pid = np.repeat(np.arange(problems), samples)
    cls = np.empty(problems * samples, dtype=np.int64)  # -1 abstain, 0 correct, j wrong
    for i in range(problems):
        ranks = np.arange(1, n_wrong_classes[i] + 1)
        wrong = ranks ** -zipf_s[i]
        wrong *= (1.0 - p_correct[i] - p_abstain[i] * (1 - p_correct[i])) / wrong.sum()
        probs = np.concatenate([[p_abstain[i] * (1 - p_correct[i]), p_correct[i]], wrong])
        cls[i * samples:(i + 1) * samples] = rng.choice(
            np.arange(-1, n_wrong_classes[i] + 1), size=samples, p=probs / probs.sum()
        )
    completion = np.minimum(rng.lognormal(6.5, 0.7, problems * samples).astype(np.int64), 4096)
    vocab = np.array([f"answer-{j}" for j in range(int(n_wrong_classes.max()) + 1)], dtype=object)
    answer = np.where(cls >= 0, vocab[np.maximum(cls, 0)], None)
    ids = np.array([f"problem-{i:04d}" for i in range(problems)], dtype=object)
    return pd.DataFrame(
        {
            "problem_id": ids[pid],
            "sample_index": np.tile(np.arange(samples), problems),
            "prompt_tokens": np.repeat(rng.integers(50, 400, problems), samples),
            "completion_tokens": completion,
            "finish_reason": np.where(completion >= 4096, "length", "stop"),
            "answer_class": answer,
            "correct": cls == 0,
            "grade_status": np.where(cls >= 0, "ok", "no_answer"),
        }
    )


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def median_time(fn: Callable[[], object], runs: int) -> "tuple[float, object]":
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5, help="runs per timing (median reported)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--mc-replicates", type=int, default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    graded = synthetic_samples(args.problems, args.samples)
    build_s = time.perf_counter() - t0
    rss_pool_mib = _peak_rss_mib()
    n = args.samples
    ks = sorted({2**i for i in range(20) if 2**i <= n} | {n})
    extra = {} if args.mc_replicates is None else {"mc_replicates": args.mc_replicates}

    t_reduce, problems = median_time(lambda: reduce_per_problem(graded), max(1, args.runs // 2))
    t_curves, curves = median_time(
        lambda: compute_curves(problems, ks, n_boot=0, **extra), args.runs
    )
    t_boot_total, boot_curves = median_time(
        lambda: compute_curves(problems, ks, n_boot=args.n_boot, **extra), args.runs
    )
    est = estimate_matrix(problems, ks, **extra)
    stacked = np.concatenate([est.values[m] for m in est.values], axis=1)
    t_boot, _ = median_time(lambda: bootstrap_ci(stacked, n_boot=args.n_boot, seed=0), args.runs)
    rss_mib = _peak_rss_mib()

    rows = len(graded)
    print(f"pool: {args.problems} problems x {n} samples = {rows:,} rows "
          f"(built in {build_s:.1f} s); ks = {ks}")
    print(f"classes per problem (median): "
          f"{int(np.median([len(d) for d in problems['class_counts']]))}")
    print()
    print("| step | median time | target |")
    print("|---|---|---|")
    print(f"| reduce_per_problem ({rows:,} rows) | {t_reduce:.3f} s | - |")
    print(f"| curves, pass@k + maj@k + tokens@k, {len(ks)} ks, no bootstrap "
          f"| {t_curves:.3f} s | <= 2 s |")
    print(f"| bootstrap alone, {args.n_boot} resamples | {t_boot:.3f} s | <= 10 s |")
    print(f"| curves + {args.n_boot} bootstrap resamples | {t_boot_total:.3f} s | - |")
    print(f"| peak RSS after building the pool | {rss_pool_mib:.0f} MiB | - |")
    print(f"| peak RSS at the end (pool + metrics) | {rss_mib:.0f} MiB | - |")
    print()
    maj_mc = est.is_mc["maj@k"].mean(axis=0)
    table = boot_curves.pivot(index="k", columns="metric", values="value")
    print("| k | pass@k | maj@k | maj@k CI | maj@k Monte Carlo share | tokens@k |")
    print("|---|---|---|---|---|---|")
    maj_rows = boot_curves[boot_curves.metric == "maj@k"].set_index("k")
    for j, k in enumerate(ks):
        print(
            f"| {k} | {table.loc[k, 'pass@k']:.4f} | {table.loc[k, 'maj@k']:.4f} | "
            f"[{maj_rows.loc[k, 'ci_low']:.4f}, {maj_rows.loc[k, 'ci_high']:.4f}] | "
            f"{maj_mc[j]:.0%} | {table.loc[k, 'tokens@k']:.0f} |"
        )
    del curves


if __name__ == "__main__":
    main()
