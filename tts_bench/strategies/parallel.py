"""``parallel``: n independent samples per problem (coverage, pass@k, majority vote).

One call per problem with sample indices 0..n-1: exactly the samples (and
keys) tts-bench stored before calls existed, so those stores are reused as
they are. Shard processes split the samples by key.

    tts-bench run strategy=parallel budget.n=16
"""

from __future__ import annotations

from typing import Sequence

from ..calls import Call, CallLayer
from .base import Strategy, StrategyProblem, Trajectory, strategy


@strategy("parallel", shard_by="key", summary="n independent samples: pass@k, maj@k, best-of-N")
class Parallel(Strategy):
    def calls(self, problems: Sequence[StrategyProblem]) -> list[Call]:
        params = self.params()
        n = self.cfg.budget.n
        return [Call(p.id, p.messages, params, indices=tuple(range(n))) for p in problems]

    def describe(self, problems, layer: CallLayer) -> str:
        keys = [k for c in self.calls(problems) for _, _, k in layer.slots(c)]
        stored, todo = layer.stored(keys), layer.pending(keys)
        return (f"[bold]{len(keys)}[/] samples planned ({len(problems)} problems x n={self.cfg.budget.n}); "
                f"{stored} already stored; {todo} to generate")

    def run(self, problems: Sequence[StrategyProblem], layer: CallLayer) -> list[Trajectory]:
        calls = self.calls(problems)
        out = []
        for call, results in zip(calls, layer.generate(calls)):
            for r in results:
                if r is not None:  # None: another shard process generates it
                    out.append(Trajectory(call.problem_id, r.sample_index, 0, [r], r.text))
        return out
