"""Strategies: loops over the cached call layer, one module each.

    from tts_bench.strategies import make_strategy
    strat = make_strategy(cfg, answers)
    trajectories = strat.run(problems, layer)

``parallel`` (n independent samples), ``budget-forcing`` (s1: cap or extend
the thinking, one shared generation for the whole budget grid), ``revise``
(sequential revisions, Snell et al.), ``adaptive`` (adaptive consistency,
Aggarwal et al.), and the verifier-guided searches on ``search.py``:
``beam-search`` and ``dvts``, ``particle-filter``, ``rebase``, ``best-first``.
"""

from . import adaptive, beam_search, best_first, budget_forcing, parallel, particle_filter, rebase, revise  # noqa: F401,I001
from .base import (
    STRATEGIES,
    AnswerReader,
    Strategy,
    StrategyProblem,
    Trajectory,
    check_capabilities,
    get_strategy,
    strategy,
)

__all__ = [
    "STRATEGIES",
    "AnswerReader",
    "Strategy",
    "StrategyProblem",
    "Trajectory",
    "check_capabilities",
    "get_strategy",
    "make_strategy",
    "strategy",
]


def make_strategy(cfg, answers: AnswerReader, scorer=None) -> Strategy:
    """The configured strategy; ``scorer`` (a verifiers.ScoreLayer) for those that search with one."""
    cls = get_strategy(cfg.strategy.name)
    return cls(cfg, answers, scorer=scorer) if getattr(cls, "uses_verifier", False) else cls(cfg, answers)
