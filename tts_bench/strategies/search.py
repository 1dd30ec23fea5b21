"""What every verifier-guided search shares: partial solutions, one-step expansion, scoring, cost.

A search grows partial solutions (:class:`Node`) one step at a time. A step
is one cached call continuing the node's text as an assistant prefix, with
``stop = (step_delimiter,)`` kept in the output; a child's key covers its
whole prefix, so every expansion is stored once and a rerun replays the
search through the store. Every partial solution is scored through the
score layer (``tts_bench.verifiers``): the steps so far, keyed by the
verifier, the last call and the step texts, so a resumed search rescores
nothing. A step that ends at EOS (or a stop token, or its token limit)
finishes the node.

Budget fairness (search-and-learn#42, #57): a search returns at most N
finished solutions per problem and never an unfinished one; a problem
without any is returned as one empty trajectory (no answer: graded wrong),
flagged ``completion=False``. Cost is counted per node, over the whole tree
(pruned branches too): policy calls, tokens read (prompt + prefix), the
reused prefix (what prefix caching saves), tokens generated, verifier calls
and verifier input tokens, written on every trajectory of the search as
``tree_*`` columns.

    class BeamSearch(SearchStrategy):
        def search(self, problem, n, level) -> list[Node]: ...    # the finished solutions
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..calls import Call, CallLayer, Result
from ..engines.base import STOP_STRING
from ..verifiers import ScoreRequest, aggregate, steps_of
from .base import Strategy, StrategyProblem, Trajectory

TREE_COLUMNS = ("tree_policy_calls", "tree_read_tokens", "tree_prefix_tokens", "tree_completion_tokens",
                "tree_verifier_calls", "tree_verifier_input_tokens", "tree_verifier_output_tokens")


@dataclass(frozen=True)
class Node:
    """A partial (or finished) solution: the calls that wrote it, and its scores."""

    problem: StrategyProblem
    calls: tuple[Result, ...] = ()
    step_scores: tuple[float, ...] = ()
    finished: bool = False

    @property
    def text(self) -> str:
        return "".join(c.text for c in self.calls)

    @property
    def depth(self) -> int:
        return len(self.calls)


@dataclass
class TreeCost:
    """Everything one search spent, every node counted."""

    policy_calls: int = 0
    read_tokens: int = 0
    prefix_tokens: int = 0
    completion_tokens: int = 0
    verifier_calls: int = 0
    verifier_input_tokens: int = 0
    verifier_output_tokens: int = 0  # genrm's verdicts

    def columns(self) -> dict:
        return {f"tree_{k}": v for k, v in self.__dict__.items()}


@dataclass
class _Search:
    """One problem's search at one N: its cost and the expansion counter per prefix."""

    problem: StrategyProblem
    n: int
    level: int
    cost: TreeCost = field(default_factory=TreeCost)
    used: dict = field(default_factory=dict)  # prefix text -> sample indices handed out


class SearchStrategy(Strategy):
    """Base of the search strategies: subclasses implement :meth:`search` for one problem."""

    uses_verifier = True

    def __init__(self, cfg, answers, scorer=None):
        super().__init__(cfg, answers)
        self.scorer = scorer  # a verifiers.ScoreLayer; the runner builds it from cfg.verifier
        self.how = cfg.verifier.aggregate
        self.ns = list(self.s.ns) if self.s.ns else [int(cfg.budget.n)]

    def describe(self, problems, layer) -> str:
        return (f"{self.name}: {len(problems)} problems, N={','.join(map(str, self.ns))}, "
                f"verifier {self.cfg.verifier.name}")

    # -- the loop ---------------------------------------------------------------
    def run(self, problems: Sequence[StrategyProblem], layer: CallLayer) -> list[Trajectory]:
        if self.scorer is None:
            raise RuntimeError(f"strategy {self.name} needs a score layer (the runner builds it)")
        self.layer = layer
        out: list[Trajectory] = []
        for n in self.ns:
            for p in problems:
                st = _Search(p, n, n)
                finished = self.search(st)
                out += self.trajectories(st, finished)
        return out

    def search(self, st: _Search) -> list[Node]:
        raise NotImplementedError

    # -- expansion and scoring ---------------------------------------------------
    def expand(self, st: _Search, parents: Sequence[tuple[Node, int]]) -> list[list[Node]]:
        """``count`` one-step children of each (node, count), scored: one layer round for all."""
        params = self.params(stop=(self.s.step_delimiter,), include_stop_str_in_output=True)
        calls, plan = [], []
        for node, count in parents:
            if count <= 0:
                plan.append(None)
                continue
            prefix = node.text
            start = st.used.get(prefix, 0)  # the same prefix twice: other samples, not the same ones
            st.used[prefix] = start + count
            last = node.calls[-1].key if node.calls else None
            calls.append(Call(st.problem.id, st.problem.messages, params,
                              indices=tuple(range(start, start + count)), prefix=prefix, parent_key=last,
                              step=node.depth))
            plan.append(len(calls) - 1)
        results = self.layer.generate(calls) if calls else []
        children: list[list[Node]] = []
        for (node, _), at in zip(parents, plan):
            if at is None:
                children.append([])
                continue
            kids = []
            for r in results[at]:
                st.cost.policy_calls += 1
                st.cost.read_tokens += r.prompt_tokens
                st.cost.prefix_tokens += r.prefix_tokens
                st.cost.completion_tokens += r.completion_tokens
                kids.append(Node(st.problem, node.calls + (r,), finished=self._ended(r)))
            children.append(kids)
        flat = [k for ks in children for k in ks]
        scored = iter(self.score(st, flat))
        return [[next(scored) for _ in ks] for ks in children]

    def _ended(self, r: Result) -> bool:
        """A step that did not stop at the delimiter ended the solution (EOS, stop token, its limit)."""
        return r.stop_reason != STOP_STRING or not r.text.strip()

    def score(self, st: _Search, nodes: Sequence[Node]) -> list[Node]:
        """The nodes with the verifier's step scores of their text so far."""
        if not nodes:
            return []
        question = [m.content for m in st.problem.messages if m.role == "user"][-1]
        # Steps as the verifier cuts them (as scoring a finished run does): the same score keys.
        reqs = [ScoreRequest(n.calls[-1].key, st.problem.id, question, steps_of(self.cfg.verifier, n.text))
                for n in nodes]
        scores = self.scorer.score(reqs)
        st.cost.verifier_calls += len(reqs)
        st.cost.verifier_input_tokens += sum(s.input_tokens for s in scores)
        st.cost.verifier_output_tokens += sum(s.output_tokens for s in scores)
        return [Node(n.problem, n.calls, tuple(s.step_scores), n.finished) for n, s in zip(nodes, scores)]

    def value(self, node: Node) -> float:
        """The node's aggregated score (verifier.aggregate); NaN sorts last."""
        v = aggregate(node.step_scores, self.how) if node.step_scores else float("nan")
        return -np.inf if np.isnan(v) else v

    def rng(self, st: _Search, step: int) -> np.random.Generator:
        """A generator fixed by (seed, problem, N, step): resampling replays the same on resume."""
        h = int.from_bytes(hashlib.sha256(st.problem.id.encode()).digest()[:4], "big")
        return np.random.default_rng([int(self.s.seed), h, st.n, step])

    def top(self, nodes: Sequence[Node], k: int) -> list[Node]:
        """The k best by aggregated score; ties keep the earlier node (a stable order)."""
        order = sorted(range(len(nodes)), key=lambda i: (-self.value(nodes[i]), i))
        return [nodes[i] for i in order[:k]]

    # -- output -----------------------------------------------------------------
    def trajectories(self, st: _Search, finished: Sequence[Node]) -> list[Trajectory]:
        finished = [n for n in finished if n.finished][: st.n]
        cost = st.cost.columns()
        out, main = [], st.n == self.ns[-1]
        for j, node in enumerate(finished):
            t = Trajectory(st.problem.id, j, st.level, list(node.calls), node.text, main=main,
                           phase_tokens={"answer": sum(c.completion_tokens for c in node.calls)})
            t.extra = {"search_score": self.value(node), "completion": True, **cost}
            out.append(t)
        if not out:
            return [self._no_answer(st, cost)]
        return out

    def _no_answer(self, st: _Search, cost: dict) -> Trajectory:
        """No finished solution: one empty trajectory (graded wrong), its calls the first expansion."""
        first = self.layer.generate([Call(st.problem.id, st.problem.messages,
                                          self.params(stop=(self.s.step_delimiter,),
                                                      include_stop_str_in_output=True),
                                          prefix="", indices=(0,))])[0]
        t = Trajectory(st.problem.id, 0, st.level, [first[0]], "", main=(st.n == self.ns[-1]),
                       phase_tokens={"answer": 0})
        t.extra = {"search_score": float("nan"), "completion": False, **cost}
        return t
