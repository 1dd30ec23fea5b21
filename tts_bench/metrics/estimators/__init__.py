"""Per-problem estimators over one pool of n graded samples: pass@k and maj@k.

Both answer "what would a budget of k samples have scored on this problem?"
from the n >= k samples actually drawn, averaging over every k-subset of the
pool instead of looking at one arbitrary subset:

    pass_at_k(n=10, c=3, k=2)                                  # 0.5333...
    pass_at_k(np.array([10, 10]), np.array([0, 3]), 2)         # vectorised
    maj_at_k({"A": 2, "B": 1, "C": 1}, "A", n=4, k=3).value    # 0.6666...
    maj_at_k_batch(AnswerPools.from_counts(...), k, rng=mc_rng(0, k))  # many problems

pass@k is the unbiased estimator of Chen et al. (2021). maj@k is the
probability that a majority vote over a uniformly random k-subset (drawn
without replacement) of the pool picks the correct answer class, under these
rules (the exact and the Monte Carlo paths implement the same ones):

* Abstentions: a sample without an extracted answer (answer_class None) takes
  one of the k slots but casts no vote. If every chosen sample abstains, or
  none of the chosen samples is correct, the vote fails (credit 0).
* Ties: when the correct class shares the top count with t other classes, the
  tie is broken uniformly at random, counted as fractional credit 1/(1 + t)
  (the expected score of the random tie-break, so no extra noise).

Exact method. Give every class an independent Binomial(m_j, pi) count with
pi = k/n; conditioned on their total being k, the counts are exactly those of
a uniform k-subset (multivariate hypergeometric). So

    maj@k = E[credit * 1{total = k}] / P(total = k),

and the numerator is a sum over x = the correct class's count of
b(x; a, pi) * [coefficient of z^(k-x) in prod_j K_j(z) * free(z)], where K_j
holds wrong class j's binomial probabilities truncated to counts <= x (a
class above x beats the correct one) and free(z) is the pool that cannot
compete (abstentions, classes too small). This is the DP over classes of
the hypergeometric formulation, conditioned on x, but every array is a
probability in [0, 1] (nothing overflows) and merging a class is a plain
convolution, done for all classes at once as a product of Fourier
transforms. The 1/(1 + t) credit is the integral over u in [0, 1] of u^t
(u = the correct class's tie-break priority): a class with count exactly x
carries a factor u, so the product is a polynomial in u of degree <= the
largest possible number of ties, which Gauss-Legendre quadrature integrates
exactly. Binomial probabilities use Loader's saddle-point form (as in R's
dbinom; ~1e-16 relative, where log-gamma differences lose ~1e-11 at n=10^4).
Work is skipped only where a bound proves it negligible, so "exact" means
absolute error <= ``tol`` (default 1e-12) plus rounding (~1e-14 measured):

* classes smaller than the smallest plausible x join the free pool (no error);
* classes that reach the correct class's count with probability below
  tol/(2C) by the Chernoff bound (1 - (sqrt(p0) - sqrt(pj))^2)^k join the
  free pool; a class that the same bound shows dominating settles maj@k = 0
  (the bound holds for sampling without replacement: Hoeffding 1963, thm. 4);
* binomial tails and FFT wrap-around below a share of tol are dropped
  (Bernstein bound).

Monte Carlo method: ``mc_replicates`` seeded random k-subsets per problem;
the estimate's standard error is at most 0.5/sqrt(replicates) (0.016 at the
default 1000 of maj_at_k; curves use fewer, see curves.py) and is returned.
Subsets are drawn whichever of two equivalent ways is cheaper: k distinct
sample indices (repeats redrawn; used while k <= n/2), or the class counts
one class at a time with Generator.hypergeometric, biggest class first,
stopping once no remaining class can reach the correct class's count.

``method="auto"`` (default) runs the exact method when its work estimate is
at most ``exact_work_cap`` (default 2e4, about a millisecond) or below the
Monte Carlo cost, and Monte Carlo otherwise. On a 10^4-sample pool with
~100 answer classes that is exact for k <= 4 and every problem the bounds
settle, Monte Carlo for most contested problems from k = 8 to a few
thousand. The method used is returned with every estimate.
"""

from tts_bench.metrics.estimators._common import (
    DEFAULT_EXACT_WORK_CAP,
    DEFAULT_MC_REPLICATES,
    DEFAULT_TOL,
    METHODS,
    AnswerPools,
)
from tts_bench.metrics.estimators.coverage import (
    pass_at_k,
)
from tts_bench.metrics.estimators.majority import (
    MajBatch,
    MajEstimate,
    maj_at_k,
    maj_at_k_batch,
    mc_rng,
)
from tts_bench.metrics.estimators.monte_carlo import (
    distinct_subsets,
)

__all__ = [
    "DEFAULT_MC_REPLICATES",
    "DEFAULT_TOL",
    "DEFAULT_EXACT_WORK_CAP",
    "METHODS",
    "pass_at_k",
    "AnswerPools",
    "MajEstimate",
    "maj_at_k",
    "mc_rng",
    "MajBatch",
    "maj_at_k_batch",
    "distinct_subsets",
]
