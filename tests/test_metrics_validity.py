"""Statistical validity of the curves' bootstrap CI: does the 95% interval cover the truth 95% of the time?

What the interval is for. A benchmark is a draw of problems from a
population, and each problem's pool of n samples is a draw from the model.
The percentile bootstrap over problems (tts_bench.metrics.bootstrap_ci, the
path compute_curves takes) resamples problems with their estimates, so it
measures the spread of the benchmark mean across fresh draws of *both*
problems and samples: its target is the population value
E_p[1 - (1 - p)^k], not the mean over the fixed problems at hand. The test
is honest to that: every trial draws a fresh problem set from the
population (p_i ~ Beta), then fresh samples (c_i ~ Binomial(n, p_i)), and
the truth is the population expectation, in closed form for a Beta:
E[(1 - p)^k] = prod_{j<k} (beta + j) / (alpha + beta + j).

(Against the fixed-set mean, mean_i [1 - (1 - p_i)^k], the same intervals
over-cover, because the between-problem spread they include does not vary
once the problems are fixed; measured below and only reported.)

Speed: the per-problem estimates of many trials are stacked as columns of
one [problems x trials] matrix and one bootstrap_ci call handles a batch of
trials. Trials in a batch share the resample multiplicities, which are
independent of the data, so every trial's interval is still an ordinary
bootstrap interval; batches use distinct seeds. Everything is seeded, so
the measured coverage is deterministic.

Measured (4,000 trials, 200 problems, n = 16, p ~ Beta(0.6, 0.9), 1,000
resamples, seed 0): pass@1 94.90%, pass@4 94.73% of the population value
(Monte Carlo standard error 0.34%); 100% of the fixed-set mean. The test
requires 95% +- 2%. Seeds 1-5 at 2,000 trials gave 93.6%-94.7%: the
percentile bootstrap runs slightly narrow at 200 problems, as expected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tts_bench.metrics import bootstrap_ci, compute_curves, pass_at_k

ALPHA, BETA = 0.6, 0.9  # U-shaped population: many easy and many hard problems
PROBLEMS, N_SAMPLES = 200, 16
TRIALS, BATCH = 4000, 100
N_BOOT = 1000
KS = (1, 4)


def population_pass_at_k(k: int, alpha: float = ALPHA, beta: float = BETA) -> float:
    """E_p[1 - (1 - p)^k] for p ~ Beta(alpha, beta)."""
    j = np.arange(k)
    return float(1.0 - np.prod((beta + j) / (alpha + beta + j)))


def simulate_coverage(seed: int = 0) -> "dict[int, tuple[float, float]]":
    """Per k: (coverage of the population value, coverage of the fixed-set mean)."""
    rng = np.random.default_rng([seed, 11])
    hits_pop = {k: 0 for k in KS}
    hits_fixed = {k: 0 for k in KS}
    truth = {k: population_pass_at_k(k) for k in KS}
    for b in range(TRIALS // BATCH):
        p = rng.beta(ALPHA, BETA, size=(PROBLEMS, BATCH))  # fresh problems per trial (column)
        c = rng.binomial(N_SAMPLES, p)
        est = np.concatenate([pass_at_k(N_SAMPLES, c, k) for k in KS], axis=1)  # [P, |KS|*BATCH]
        lo, hi = bootstrap_ci(est, n_boot=N_BOOT, seed=seed * 100_003 + b)
        for i, k in enumerate(KS):
            cols = slice(i * BATCH, (i + 1) * BATCH)
            hits_pop[k] += int(np.sum((lo[cols] <= truth[k]) & (truth[k] <= hi[cols])))
            fixed = (1.0 - (1.0 - p) ** k).mean(axis=0)
            hits_fixed[k] += int(np.sum((lo[cols] <= fixed) & (fixed <= hi[cols])))
    return {k: (hits_pop[k] / TRIALS, hits_fixed[k] / TRIALS) for k in KS}


def test_population_truth_closed_form():
    assert population_pass_at_k(1) == pytest.approx(ALPHA / (ALPHA + BETA))
    rng = np.random.default_rng(5)
    p = rng.beta(ALPHA, BETA, 2_000_000)
    assert population_pass_at_k(4) == pytest.approx(np.mean(1 - (1 - p) ** 4), abs=2e-3)


def test_compute_curves_uses_this_bootstrap():
    # The coverage below is measured on bootstrap_ci over pass_at_k estimates; check that this is
    # exactly what compute_curves reports for pass@k.
    rng = np.random.default_rng(9)
    c = rng.binomial(N_SAMPLES, rng.beta(ALPHA, BETA, PROBLEMS))
    problems = pd.DataFrame(
        {
            "problem_id": [f"p{i:03d}" for i in range(PROBLEMS)],
            "n": N_SAMPLES,
            "c": c,
            "correct_class": ["right" if ci > 0 else None for ci in c],
            "class_counts": [{"right": int(ci), "wrong": N_SAMPLES - int(ci)} if ci
                             else {"wrong": N_SAMPLES} for ci in c],
            "completion_tokens_mean": 100.0,
        }
    )
    curves = compute_curves(problems, list(KS), n_boot=N_BOOT, seed=3)
    ours = curves[curves.metric == "pass@k"].set_index("k")
    est = np.column_stack([pass_at_k(N_SAMPLES, c, k) for k in KS])
    # compute_curves bootstraps all metrics with one set of resamples; a column's interval
    # depends on that column alone, so the pass@k columns by themselves give the same numbers.
    lo, hi = bootstrap_ci(est, n_boot=N_BOOT, seed=3)
    for i, k in enumerate(KS):
        assert ours.loc[k, "value"] == pytest.approx(est[:, i].mean())
        assert ours.loc[k, "ci_low"] == pytest.approx(lo[i])
        assert ours.loc[k, "ci_high"] == pytest.approx(hi[i])


def test_bootstrap_ci_covers_population_value():
    coverage = simulate_coverage(seed=0)
    for k in KS:
        pop, fixed = coverage[k]
        print(f"pass@{k}: coverage of population value {pop:.4f}, of fixed-set mean {fixed:.4f}")
        assert 0.93 <= pop <= 0.97, f"pass@{k}: 95% bootstrap CI covered the truth {pop:.1%}"
        # Against the mean over the problems actually drawn the interval is conservative.
        assert fixed >= pop
