"""Strategies: loops over the cached call layer, one module each.

    from tts_bench.strategies import make_strategy
    strat = make_strategy(cfg, answers)
    trajectories = strat.run(problems, layer)

``parallel`` (n independent samples), ``budget-forcing`` (s1: cap or extend
the thinking, one shared generation for the whole budget grid), ``revise``
(sequential revisions, Snell et al.), ``adaptive`` (adaptive consistency,
Aggarwal et al.).
"""

from . import adaptive, budget_forcing, parallel, revise  # noqa: F401  (register)
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


def make_strategy(cfg, answers: AnswerReader) -> Strategy:
    return get_strategy(cfg.strategy.name)(cfg, answers)
