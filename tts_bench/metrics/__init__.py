"""Metrics: from graded samples to per-problem estimates to scaling curves.

    from tts_bench.metrics import reduce_per_problem, compute_curves
    problems = reduce_per_problem(graded)            # one row per problem
    curves = compute_curves(problems, ks=[1, 2, 4])  # one row per (metric, k)

Estimators (pass@k, maj@k) work on single problems or arrays of them; the
tie and abstention rules of maj@k are documented in
:mod:`tts_bench.metrics.estimators`.
"""

from tts_bench.metrics.curves import (
    CURVE_MC_REPLICATES,
    METRICS,
    EstimateMatrix,
    bootstrap_ci,
    compute_curves,
    estimate_matrix,
    per_problem_estimates,
)
from tts_bench.metrics.estimators import (
    DEFAULT_EXACT_WORK_CAP,
    DEFAULT_MC_REPLICATES,
    DEFAULT_TOL,
    AnswerPools,
    MajBatch,
    MajEstimate,
    maj_at_k,
    maj_at_k_batch,
    mc_rng,
    pass_at_k,
)
from tts_bench.metrics.problem_table import reduce_per_problem

__all__ = [
    "AnswerPools",
    "CURVE_MC_REPLICATES",
    "DEFAULT_EXACT_WORK_CAP",
    "DEFAULT_MC_REPLICATES",
    "DEFAULT_TOL",
    "EstimateMatrix",
    "METRICS",
    "MajBatch",
    "MajEstimate",
    "bootstrap_ci",
    "compute_curves",
    "estimate_matrix",
    "maj_at_k",
    "maj_at_k_batch",
    "mc_rng",
    "pass_at_k",
    "per_problem_estimates",
    "reduce_per_problem",
]
