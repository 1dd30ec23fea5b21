"""``revise``: sequential revisions (Snell et al. 2024).

``budget.n`` chains of ``strategy.depth`` attempts. The first attempt is an
ordinary sample (the same call, and key, as ``parallel``'s sample of that
index); attempt d sees the chain's last ``strategy.context`` attempts as
earlier assistant turns, each followed by ``strategy.revise_prompt``, and
writes a corrected solution. Every attempt is a trajectory at level d
(1-based depth) with the chain's tokens so far; the metrics report accuracy
at every depth (the last answer, and the majority over the chain so far)
and Snell's split of a fixed number of samples between parallel chains and
sequential depth.

    tts-bench run strategy=revise strategy.depth=4 budget.n=8
"""

from __future__ import annotations

from typing import Sequence

from ..calls import Call, CallLayer, Result
from ..engines.base import Message
from .base import Strategy, StrategyProblem, Trajectory, strategy


@strategy("revise", summary="sequential revisions: chains of attempts, each seeing the last ones")
class Revise(Strategy):
    def describe(self, problems, layer) -> str:
        return (f"revise: {len(problems)} problems x {self.cfg.budget.n} chains x depth {self.s.depth} "
                f"(context {self.s.context})")

    def messages(self, problem: StrategyProblem, attempts: Sequence[Result]) -> tuple[Message, ...]:
        msgs = list(problem.messages)
        for a in list(attempts)[-int(self.s.context):]:
            msgs += [Message("assistant", a.text), Message("user", self.s.revise_prompt)]
        return tuple(msgs)

    def run(self, problems: Sequence[StrategyProblem], layer: CallLayer) -> list[Trajectory]:
        n, depth = self.cfg.budget.n, int(self.s.depth)
        params = self.params()
        chains: dict[tuple[str, int], list[Result]] = {(p.id, j): [] for p in problems for j in range(n)}
        by_id = {p.id: p for p in problems}
        # Depth 1: one call per problem, like parallel.
        first = [Call(p.id, p.messages, params, indices=tuple(range(n))) for p in problems]
        for call, results in zip(first, layer.generate(first)):
            for r in results:
                chains[(call.problem_id, r.sample_index)].append(r)
        for d in range(2, depth + 1):
            keys = list(chains)
            calls = [Call(pid, self.messages(by_id[pid], chains[(pid, j)]), params, indices=(j,),
                          parent_key=chains[(pid, j)][-1].key, step=d - 1) for pid, j in keys]
            for (pid, j), [r] in zip(keys, layer.generate(calls)):
                chains[(pid, j)].append(r)
        out = []
        for (pid, j), attempts in chains.items():
            for d in range(1, depth + 1):
                upto = attempts[:d]
                out.append(Trajectory(pid, j, d, upto, upto[-1].text, main=(d == depth),
                                      phase_tokens={"answer": upto[-1].completion_tokens}))
        return out
