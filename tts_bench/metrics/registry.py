"""The one list of metrics: what each is, what it needs, how it is drawn and compared.

    from tts_bench.metrics.registry import METRICS, get, names
    get("rpc@k").needs              # frozenset({"logprobs"})
    names(family="selection")       # ("maj@k", "bon@k", "weighted@k", "rpc@k", "ffs@k")
    names(figure="accuracy")        # every metric drawn on the accuracy plots, in legend order
    sorted(curves["metric"].unique(), key=rank)   # report order; unregistered names last

Every place that used to hold its own tuple of metric names (the analyses,
the plots, the HTML and terminal tables, the frontiers, the verifier cost,
the regression gate) reads this table, so a metric registered here and
produced by a run is drawn, tabled and written to metrics.csv everywhere.

Fields:

    family     "coverage" (pass@k: the oracle, not a strategy one can run),
               "selection" (a way of turning k samples into one answer),
               "cost" (tokens@k: expected completion tokens of k samples)
    needs      sample columns beyond graded answers that the metric needs:
               "verifier_scores" (verifier_score or step_scores),
               "logprobs" (mean_logprob), "finish_reasons" (finish_reason)
    source     "problems": computed from the per-problem table alone
               (``curves.py``; recomputable from per_problem.parquet);
               "samples": needs the graded samples (``selection.py``)
    figure     which figures draw it: "accuracy" (accuracy vs k, accuracy vs
               tokens, frontiers, difficulty) or None (not an accuracy)
    label      its name in legends and column heads
    terminal   shown in the terminal table (the rest are in report.html)
    own_cost   its tokens are its own, not k x mean completion tokens
               (ffs@k: all k stop when the first finishes)
    higher_is_better, gate: the direction of "better", and whether the
               regression gate accepts it (a drop is a regression)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

Family = Literal["coverage", "selection", "cost"]
Need = Literal["verifier_scores", "logprobs", "finish_reasons"]


@dataclass(frozen=True)
class Metric:
    name: str
    family: Family
    description: str
    needs: frozenset = frozenset()
    source: Literal["problems", "samples"] = "samples"
    figure: Optional[Literal["accuracy"]] = "accuracy"
    label: str = ""
    terminal: bool = False
    own_cost: bool = False
    higher_is_better: bool = True
    gate: bool = True


# In report order: the legend, the table columns and metrics.csv's order follow it.
METRICS: tuple[Metric, ...] = (
    Metric("pass@k", "coverage", "unbiased pass@k: some sample of k is correct",
           source="problems", terminal=True),
    Metric("maj@k", "selection", "majority vote over k samples (ties split, abstentions lose)",
           source="problems", terminal=True),
    Metric("bon@k", "selection", "best-of-k by verifier score (unbiased)",
           needs=frozenset({"verifier_scores"}), terminal=True),
    Metric("weighted@k", "selection", "vote weighted by verifier score",
           needs=frozenset({"verifier_scores"})),
    Metric("rpc@k", "selection", "reasoning-pruning perplexity consistency: vote weighted by "
           "the answer's probability", needs=frozenset({"logprobs"})),
    Metric("ffs@k", "selection", "first finish: the first of k samples to finish answers",
           needs=frozenset({"finish_reasons"}), own_cost=True),
    Metric("tokens@k", "cost", "expected completion tokens of k samples", source="problems",
           figure=None, label="completion tokens", terminal=True, higher_is_better=False,
           gate=False),
)

_BY_NAME = {m.name: m for m in METRICS}


def get(name: str) -> Metric:
    """The registered metric ``name``; KeyError with the known names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown metric '{name}'; registered: {', '.join(_BY_NAME)}") from None


def is_registered(name: str) -> bool:
    return name in _BY_NAME


def names(*, family: str | None = None, figure: str | None = None, source: str | None = None,
          need: str | None = None, terminal: bool | None = None, gate: bool | None = None,
          own_cost: bool | None = None) -> tuple[str, ...]:
    """Names of the metrics matching every given field, in report order."""
    out = []
    for m in METRICS:
        if ((family is None or m.family == family) and (figure is None or m.figure == figure)
                and (source is None or m.source == source) and (need is None or need in m.needs)
                and (terminal is None or m.terminal == terminal) and (gate is None or m.gate == gate)
                and (own_cost is None or m.own_cost == own_cost)):
            out.append(m.name)
    return tuple(out)


def label(name: str) -> str:
    m = _BY_NAME.get(name)
    return (m.label or m.name) if m else name


def rank(name: str) -> tuple:
    """Sort key: registered metrics in report order, then any other name alphabetically."""
    order = [m.name for m in METRICS]
    return (order.index(name), name) if name in _BY_NAME else (len(order), name)


def present(metrics, **fields) -> list[str]:
    """The registered metrics matching ``fields`` that occur in ``metrics``, in report order."""
    have = set(metrics)
    return [n for n in names(**fields) if n in have]


# The groupings code reads most often.
SELECTION_STRATEGIES = names(family="selection")
ACCURACY_METRICS = names(figure="accuracy")
