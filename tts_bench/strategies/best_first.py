"""``best-first``: best-first search over partial solutions (A*-decoding, 2025).

A priority queue of partial solutions ordered by the verifier's aggregated
score. The root's ``strategy.beam_width`` (K) children are scored and
pushed; then the best is popped: a finished solution ends the search
(``strategy.stop_at_first``), an unfinished one expands K children one step
each, scored and pushed. Ties pop in the order pushed. With
``stop_at_first=false`` the search goes on to ``strategy.max_expansions``
pops and returns every finished solution it popped, best first. Nodes at
``strategy.max_steps`` are never expanded.

    tts-bench run strategy=best-first verifier=genrm strategy.beam_width=4
"""

from __future__ import annotations

import heapq
import itertools

from .base import strategy
from .search import Node, SearchStrategy, _Search


@strategy("best-first", needs=("prefix",), summary="best-first: pop the best partial solution, expand K")
class BestFirst(SearchStrategy):
    def search(self, st: _Search) -> list[Node]:
        K = int(self.s.beam_width)
        order = itertools.count()
        heap: list[tuple[float, int, Node]] = []
        self.popped: list[Node] = []  # pop order (tests read it)

        def push(nodes):
            for n in nodes:
                heapq.heappush(heap, (-self.value(n), next(order), n))

        (kids,) = self.expand(st, [(Node(st.problem), K)])
        push(kids)
        finished: list[Node] = []
        for _ in range(int(self.s.max_expansions)):
            if not heap:
                break
            _, _, node = heapq.heappop(heap)
            self.popped.append(node)
            if node.finished:
                finished.append(node)
                if self.s.stop_at_first:
                    break
                continue
            if node.depth >= int(self.s.max_steps):
                continue
            (kids,) = self.expand(st, [(node, K)])
            push(kids)
        return sorted(finished, key=lambda n: -self.value(n))[: st.n]
