"""``adaptive``: adaptive consistency (Aggarwal et al. 2023).

Sample each problem in rounds of ``strategy.round_size`` and stop it once
its leading answer is the majority with posterior probability at least
``strategy.confidence``: with answer counts c_1 >= c_2 >= ... (answers the
task's extractor cannot read do not vote), P(p > 1/2) for
p ~ Beta(c_1 + 1, c_2 + 1), up to ``budget.n`` samples. The strategy reads
answers as the task extracts and classes them, never the reference answer.

Samples are the very calls ``parallel`` makes (same keys), so an adaptive run
and a parallel run of the same model share them. With
``strategy.compare_fixed`` the first ceil(mean samples per problem) samples
are drawn for every problem too, so the report can put fixed-n majority vote
at the same mean budget beside the adaptive result (those samples are the
run's main pool; the adaptive trajectories are level 1).

    tts-bench run strategy=adaptive strategy.confidence=0.95 budget.n=16
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from ..calls import Call, CallLayer
from .base import Strategy, StrategyProblem, Trajectory, strategy

ADAPTIVE_LEVEL = 1  # trajectories the adaptive rule kept
FIXED_LEVEL = 0  # the fixed-n comparison pool


def beta_majority_probability(c1: int, c2: int) -> float:
    """P(p > 1/2) for p ~ Beta(c1 + 1, c2 + 1), exactly (integer parameters).

    With a = c1 + 1, b = c2 + 1 and m = a + b - 1, P(p < 1/2) is the
    binomial tail sum_{j >= a} C(m, j) / 2^m.
    """
    a, b = c1 + 1, c2 + 1
    m = a + b - 1
    below = sum(math.comb(m, j) for j in range(a, m + 1)) / 2**m
    return 1.0 - below


def should_stop(classes: Sequence[str | None], confidence: float) -> bool:
    counts = sorted(Counter(c for c in classes if c is not None).values(), reverse=True)
    if not counts:
        return False
    c1, c2 = counts[0], (counts[1] if len(counts) > 1 else 0)
    return beta_majority_probability(c1, c2) >= confidence


@strategy("adaptive", summary="adaptive consistency: sample until the majority is settled (Beta rule)")
class Adaptive(Strategy):
    def describe(self, problems, layer) -> str:
        return (f"adaptive: {len(problems)} problems, rounds of {self.s.round_size} "
                f"up to n={self.cfg.budget.n}, "
                f"stop at confidence {self.s.confidence}")

    def run(self, problems: Sequence[StrategyProblem], layer: CallLayer) -> list[Trajectory]:
        n, r = self.cfg.budget.n, int(self.s.round_size)
        params = self.params()
        used: dict[str, list] = {p.id: [] for p in problems}
        classes: dict[str, list] = {p.id: [] for p in problems}
        live = list(problems)
        while live:
            calls = []
            for p in live:
                m = len(used[p.id])
                calls.append(Call(p.id, p.messages, params, indices=tuple(range(m, min(n, m + r)))))
            for p, results in zip(live, layer.generate(calls)):
                for res in results:
                    used[p.id].append(res)
                    classes[p.id].append(self.answers.answer_class(res.text))
            live = [p for p in live
                    if len(used[p.id]) < n and not should_stop(classes[p.id], float(self.s.confidence))]
        out = [Trajectory(pid, res.sample_index, ADAPTIVE_LEVEL, [res], res.text, main=False)
               for pid, results in used.items() for res in results]
        if self.s.compare_fixed and problems:
            mean = sum(len(v) for v in used.values()) / len(problems)
            k = min(n, math.ceil(mean))
            calls = [Call(p.id, p.messages, params, indices=tuple(range(k))) for p in problems]
            for call, results in zip(calls, layer.generate(calls)):
                out += [Trajectory(call.problem_id, res.sample_index, FIXED_LEVEL, [res], res.text)
                        for res in results]
        return out
