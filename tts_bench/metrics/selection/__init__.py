"""Selection strategies scored from one pool of n samples per problem.

Each estimator answers "what would this strategy have scored with a budget
of k samples?" by averaging over the k-subsets of the pool (exactly, or over
seeded random subsets), one value per problem, so that the bootstrap over
problems of :mod:`tts_bench.metrics.curves` applies unchanged:

    bon_at_k(scores, correct, k)                          # best-of-N with a verifier
    weighted_vote_at_k(classes, scores, "A", k, seed=0)   # argmax_a sum of scores
    aggregate_steps(step_scores, "last")                  # PRM step scores -> one score
    rpc_vote(classes, mean_logprobs)                      # perplexity-consistency vote
    rpc_at_k(classes, mean_logprobs, "A", k, seed=0)
    first_finish(lengths, correct, finish_reasons, k)     # first finish search, with costs
    union_coverage({0.6: (8, 0), 1.2: (8, 2)}, {0.6: 8, 1.2: 8})
    union_vote_at_k({0.6: [...], 1.2: [...]}, "A", {0.6: 4, 1.2: 4}, seed=0)
    selection_curves(graded, ks=[1, 4, 16])               # tidy per-problem frame

Pools. A per-problem argument is one problem's pool (a 1-D sequence) or a
list of pools (one sequence per problem, lengths may differ; a 2-D array is
a list of equal-length pools). One pool gives floats back, a list gives
arrays with one entry per problem.

Shared rules (the same as maj@k in :mod:`tts_bench.metrics.estimators`):
subsets are uniform k-subsets drawn without replacement; a sample without an
answer class (None) takes a slot and casts no vote; when the correct class
ties for first with t other classes it earns 1/(1 + t) (the expected score of
a uniform tie-break); no vote or no correct class scores 0. k > n raises
ValueError naming the problem and the values.

Exact weights. The probability that the sample at 0-based rank i of a
ranking of n (best first) is the best of a uniform k-subset is

    w_i = C(n-i-1, k-1) / C(n, k) = (k/n) * C(n-1-i, k-1) / C(n-1, k-1),

"this sample is drawn and none of the i above it is". The second factor is
1 - pass@(k-1) of a pool of n-1 with i "successes", so it comes from
:func:`pass_at_k`'s stable product form (absolute error ~1e-16, n up to
10^4 and beyond; no factorials). Best-of-N and first finish search are this
order statistic under two rankings; the cost terms of first finish search
are integrals of the same hypergeometric "none drawn" probabilities.

Monte Carlo. Votes whose subsets cannot be enumerated cheaply (weighted vote,
RPC, union vote) average ``replicates`` seeded random k-subsets per problem;
the standard error, at most 0.5/sqrt(replicates), comes back with the value.
Seeds: metric m at budget k draws from ``selection_rng(seed, m, k)``, the
same one-stream-per-(seed, k) convention as :func:`mc_rng`, with a metric
tag so that adding a metric or a k leaves the other estimates unchanged.
"""

from tts_bench.metrics.selection._pools import (
    DEFAULT_EXACT_SUBSETS,
    MAX_EXACT_SUBSETS,
    METHODS,
    SELECTION_METRICS,
    STEP_AGGREGATES,
    TIE_RTOL,
    selection_rng,
)
from tts_bench.metrics.selection.bon import (
    aggregate_steps,
    bon_at_k,
)
from tts_bench.metrics.selection.ffs import (
    FirstFinish,
    first_finish,
)
from tts_bench.metrics.selection.pruning import (
    rpc_pruned,
)
from tts_bench.metrics.selection.rpc import (
    rpc_at_k,
    rpc_vote,
)
from tts_bench.metrics.selection.table import (
    selection_curves,
)
from tts_bench.metrics.selection.temperatures import (
    multi_temperature_coverage,
    particle_resample_probs,
    union_coverage,
    union_vote_at_k,
)
from tts_bench.metrics.selection.vote import (
    VoteEstimate,
    weighted_vote_at_k,
)

__all__ = [
    "DEFAULT_EXACT_SUBSETS",
    "MAX_EXACT_SUBSETS",
    "TIE_RTOL",
    "STEP_AGGREGATES",
    "SELECTION_METRICS",
    "METHODS",
    "selection_rng",
    "bon_at_k",
    "aggregate_steps",
    "VoteEstimate",
    "weighted_vote_at_k",
    "rpc_pruned",
    "rpc_vote",
    "rpc_at_k",
    "FirstFinish",
    "first_finish",
    "union_coverage",
    "multi_temperature_coverage",
    "particle_resample_probs",
    "union_vote_at_k",
    "selection_curves",
]
