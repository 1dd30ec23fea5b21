"""``particle-filter``: particle filtering over partial solutions (Puri et al. 2025; its_hub).

N = budget.n particles start at the root. Each round every unfinished
particle generates one step; the verifier scores it, r in (0, 1), weight
logit(r) (r clipped to [1e-6, 1 - 1e-6]). Then N particles are resampled,
multinomially with replacement, with probabilities softmax(weight / tau)
(``strategy.softmax_temperature``). Finished particles keep their final
weight and are absorbing: resampled, they stay finished and generate no
more (its_hub#208). The filter stops when every particle is finished or at
``strategy.max_steps``. ``strategy.ess_threshold`` (ePF): resample only when
ESS = 1 / sum(w_i^2) < threshold x N; in the first half of the steps the
weights are tempered by T = max(1, (N / ESS)(1 - t / T_max)); resampling is
systematic. The resampling draws are fixed by (seed, problem, N, round), so
a resumed filter resamples the same. Returned: the distinct finished
particles (the highest weight is the filter's answer).

    tts-bench run strategy=particle-filter verifier=genrm budget.n=8
"""

from __future__ import annotations

import numpy as np

from .base import strategy
from .search import Node, SearchStrategy, _Search

_EPS = 1e-6


def logit_weights(rewards) -> np.ndarray:
    r = np.clip(np.asarray(rewards, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(r) - np.log1p(-r)


def resample_probs(weights, tau: float = 1.0) -> np.ndarray:
    """softmax(weights / tau) (metrics.md section 11: r = [0.9, 0.6, 0.3] -> [0.824, 0.137, 0.039])."""
    z = np.asarray(weights, dtype=np.float64) / float(tau)
    z = np.exp(z - z.max())
    return z / z.sum()


def systematic(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling: one uniform offset, n evenly spaced points through the CDF."""
    points = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(np.cumsum(probs), points, side="right"), len(probs) - 1)


@strategy("particle-filter", needs=("prefix",),
          summary="particle filtering: logit(r) weights, resampling, finished particles absorbing")
class ParticleFilter(SearchStrategy):
    def search(self, st: _Search) -> list[Node]:
        N = st.n
        particles = [Node(st.problem)] * N
        T_max = int(self.s.max_steps)
        for t in range(T_max):
            live = [i for i, p in enumerate(particles) if not p.finished]
            if not live:
                break
            kids = self.expand(st, [(particles[i], 1) for i in live])
            for i, (child,) in zip(live, kids):
                particles[i] = child
            particles = self.resample(st, particles, t, T_max)
        return _distinct([p for p in sorted(particles, key=lambda p: -self.value(p)) if p.finished])

    def reward(self, node: Node) -> float:
        v = self.value(node)
        return 0.5 if not np.isfinite(v) else v

    def resample(self, st: _Search, particles: list[Node], t: int, T_max: int) -> list[Node]:
        N = len(particles)
        w = logit_weights([self.reward(p) for p in particles])
        rng = self.rng(st, t)
        thr = self.s.ess_threshold
        if thr is None:
            idx = rng.choice(N, size=N, replace=True, p=resample_probs(w, self.s.softmax_temperature))
            return [particles[i] for i in idx]
        p = resample_probs(w, self.s.softmax_temperature)
        ess = 1.0 / float(np.sum(p * p))
        if ess >= thr * N:
            return particles
        if t < T_max / 2:
            temper = max(1.0, (N / ess) * (1.0 - t / T_max))
            p = resample_probs(w, self.s.softmax_temperature * temper)
        return [particles[i] for i in systematic(p, N, rng)]


def _distinct(nodes: list[Node]) -> list[Node]:
    """Each finished particle once (resampling copies them), best first."""
    seen, out = set(), []
    for n in nodes:
        k = n.calls[-1].key
        if k not in seen:
            seen.add(k)
            out.append(n)
    return out
