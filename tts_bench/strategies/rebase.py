"""``rebase``: reward-balanced tree search (Wu et al. 2024).

At each depth the W remaining expansions (W = N minus the solutions already
finished) are shared among the depth's unfinished nodes: node i gets
ceil(W x softmax(score / T)_i) children (``strategy.rebase_temperature``,
T = 0.2), and where that sums past W the excess is taken from the lowest
scored nodes first (metrics.md section 11: scores [0.9, 0.5, 0.1], W = 8
-> [7, 1, 0]). The root gets all N. Finished children count towards N; the
search stops when W reaches 0 or at ``strategy.max_steps``.

    tts-bench run strategy=rebase verifier=genrm budget.n=8
"""

from __future__ import annotations

import math

import numpy as np

from .base import strategy
from .search import Node, SearchStrategy, _Search


def allocate(scores, width: int, temperature: float) -> list[int]:
    """Children per node: ceil(width * softmax(score / T)), trimmed from the lowest to sum <= width."""
    s = np.asarray(scores, dtype=np.float64) / float(temperature)
    p = np.exp(s - s.max())
    p /= p.sum()
    alloc = [math.ceil(width * x - 1e-12) for x in p]
    for i in np.argsort(s, kind="stable"):  # lowest score first
        excess = sum(alloc) - width
        if excess <= 0:
            break
        alloc[i] -= min(alloc[i], excess)
    return alloc


@strategy("rebase", needs=("prefix",), summary="REBASE: expansions shared by softmax(score / T) per depth")
class Rebase(SearchStrategy):
    def search(self, st: _Search) -> list[Node]:
        finished: list[Node] = []
        frontier = [Node(st.problem)]
        alloc = [st.n]
        for _ in range(int(self.s.max_steps)):
            if not frontier or sum(alloc) <= 0:
                break
            children = [c for kids in self.expand(st, list(zip(frontier, alloc))) for c in kids]
            finished += [c for c in children if c.finished]
            frontier = [c for c in children if not c.finished]
            width = st.n - len(finished)
            if width <= 0 or not frontier:
                break
            alloc = allocate([self.value(c) for c in frontier], width, self.s.rebase_temperature)
        return finished[: st.n]
