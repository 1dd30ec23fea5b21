"""``beam-search`` and ``dvts``: verifier-guided search step by step (Snell et al.; search-and-learn).

beam-search: N = budget.n (or each of ``strategy.ns``), width M =
``strategy.beam_width``. The root expands N one-step children; at every
step the top N/M unfinished children by the verifier's aggregated score are
kept and each expands M children. Finished children leave the beam set and
count towards N; a step never generates more children than completions
remain (at most N completions per problem); the search stops when N are
finished, no beam is left, or at ``strategy.max_steps`` (unfinished beams
are dropped, never returned).

dvts: N/M independent subtrees from the root; each keeps its single best
child of M at every step and ends when that child is finished. The N/M
answers are then voted or best-of-N'd like any completions.

    tts-bench run strategy=beam-search verifier=genrm budget.n=8
    tts-bench run strategy=dvts verifier=qwen2.5-math-prm budget.n=16 strategy.beam_width=4
"""

from __future__ import annotations

from .base import strategy
from .search import Node, SearchStrategy, _Search


@strategy("beam-search", needs=("prefix",), summary="verifier-guided beam search: top N/M beams x M children")
class BeamSearch(SearchStrategy):
    def search(self, st: _Search) -> list[Node]:
        N, M = st.n, int(self.s.beam_width)
        finished: list[Node] = []
        beams = [(Node(st.problem), N)]  # the root expands N children
        for _ in range(int(self.s.max_steps)):
            room = N - len(finished)
            if room <= 0 or not beams:
                break
            parents, left = [], room  # never more children than completions left
            for node, count in beams:
                parents.append((node, min(count, left)))
                left -= parents[-1][1]
            children = [c for kids in self.expand(st, parents) for c in kids]
            done = [c for c in children if c.finished]
            finished += self.top(done, room)
            alive = [c for c in children if not c.finished]
            keep = min(N // M, -(-(N - len(finished)) // M))
            beams = [(c, M) for c in self.top(alive, keep)]
        return finished


@strategy("dvts", needs=("prefix",), summary="diverse verifier tree search: N/M subtrees, best of M per step")
class DVTS(SearchStrategy):
    def search(self, st: _Search) -> list[Node]:
        M = int(self.s.beam_width)
        trees = [Node(st.problem)] * (st.n // M)  # each subtree's current node
        finished: list[Node | None] = [None] * len(trees)
        for _ in range(int(self.s.max_steps)):
            live = [t for t in range(len(trees)) if finished[t] is None]
            if not live:
                break
            kids = self.expand(st, [(trees[t], M) for t in live])
            for t, children in zip(live, kids):
                (best,) = self.top(children, 1)
                if best.finished:
                    finished[t] = best
                else:
                    trees[t] = best
        return [f for f in finished if f is not None]
