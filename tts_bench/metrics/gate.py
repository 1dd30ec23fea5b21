"""The CI regression gate: is a run worse than its baseline, problem by problem?

    result = check_regression(run_pp, base_pp, [("pass@k", 1), ("maj@k", 8)], margin=0.02, alpha=0.05)
    result.exit_code      # 0 ok, 1 regressed, 2 incomparable (problem ids differ)

``run_pp`` and ``base_pp`` are long per-problem estimates (problem_id,
metric, k, value), as a run's ``per_problem_metrics.parquet`` holds them
(unbiased pass@k and maj@k per problem). Per metric, d_i = x_i - y_i over
the problems; a seeded paired bootstrap over problems resamples the mean of
d. The one-sided upper bound U is its (1 - alpha) quantile, and the metric
has regressed when U < -margin. With several metrics, Holm's step-down
runs over the one-sided p-values (p = share of resampled means >= -margin)
at family-wise level alpha. The minimum detectable effect (normal
approximation, power 0.8) is (z_{1-alpha} + z_{0.8}) * sd(d) / sqrt(P).
Reference: ``../shared/reference/metrics.md`` section 15.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Sequence

import numpy as np
import pandas as pd

from . import registry
from .curves import bootstrap_means


@dataclass
class GateResult:
    table: pd.DataFrame  # one row per metric: means, delta, upper bound, p, Holm, MDE, regressed
    exit_code: int  # 0 ok, 1 regressed, 2 incomparable
    reason: str = ""  # why incomparable
    only_run: list = field(default_factory=list)  # problem ids only the run has
    only_base: list = field(default_factory=list)


def parse_metric(spec: str) -> tuple[str, int]:
    """ "pass@k:1" -> ("pass@k", 1); only metrics the registry lets the gate use (a drop is worse)."""
    name, sep, k = spec.rpartition(":")
    if not sep or not name or not k.isdigit() or int(k) < 1:
        raise ValueError(f"bad --metric '{spec}': expected METRIC:K, e.g. pass@k:1 or maj@k:8")
    if not registry.is_registered(name) or not registry.get(name).gate:
        why = ("is not a metric" if not registry.is_registered(name) else "cannot be gated"
               + ("" if registry.get(name).higher_is_better else " (lower is better)"))
        raise ValueError(f"bad --metric '{spec}': {name} {why}; gate one of "
                         f"{', '.join(registry.names(gate=True))}")
    return name, int(k)


def holm(pvalues: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected at family-wise level alpha."""
    order = np.argsort(pvalues, kind="stable")
    m = len(pvalues)
    reject = [False] * m
    for rank, i in enumerate(order):
        if pvalues[i] <= alpha / (m - rank):
            reject[i] = True
        else:
            break
    return reject


def minimum_detectable_effect(d: np.ndarray, alpha: float, power: float = 0.8) -> float:
    z = NormalDist()
    return float((z.inv_cdf(1 - alpha) + z.inv_cdf(power)) * np.std(d, ddof=1) / np.sqrt(d.size)) \
        if d.size > 1 else float("nan")


def check_regression(run_pp: pd.DataFrame, base_pp: pd.DataFrame, metrics: Sequence[tuple[str, int]], *,
                     margin: float = 0.0, alpha: float = 0.05, n_boot: int = 10_000,
                     seed: int = 0) -> GateResult:
    run_ids, base_ids = set(run_pp["problem_id"]), set(base_pp["problem_id"])
    if run_ids != base_ids:
        only_run, only_base = sorted(run_ids - base_ids), sorted(base_ids - run_ids)
        return GateResult(pd.DataFrame(), 2,
                          f"problem ids differ: {len(only_run)} only in the run, {len(only_base)} only "
                          f"in the baseline (first: {(only_run or only_base)[0]})", only_run, only_base)
    rows = []
    for name, k in metrics:
        def pick(pp, name=name, k=k):
            sel = pp[(pp["metric"] == name) & (pp["k"] == k)]
            return sel.set_index("problem_id")["value"]

        x, y = pick(run_pp), pick(base_pp)
        if len(x) != len(run_ids) or len(y) != len(base_ids):
            missing = "run" if len(x) != len(run_ids) else "baseline"
            return GateResult(pd.DataFrame(), 2, f"{name} at k={k} is not in the {missing} for every "
                                                 f"problem; pick a metric and k both have")
        d = (x - y.reindex(x.index)).to_numpy(dtype=float)
        means = bootstrap_means(d[:, None], n_boot=n_boot, seed=seed)[:, 0]
        upper = float(np.quantile(means, 1 - alpha))
        p = float(np.mean(means >= -margin))
        rows.append({"metric": name, "k": k, "problems": int(d.size), "run": float(x.mean()),
                     "baseline": float(y.mean()), "delta": float(d.mean()), "upper_bound": upper,
                     "margin": margin, "p_value": p, "mde": minimum_detectable_effect(d, alpha)})
    table = pd.DataFrame(rows)
    table["regressed"] = holm(table["p_value"].tolist(), alpha) if len(table) else []
    # A metric whose bound clears -margin is never called regressed, whatever Holm says.
    table["regressed"] = table["regressed"] & (table["upper_bound"] < -margin)
    return GateResult(table, 1 if table["regressed"].any() else 0)


def markdown_summary(result: GateResult, run: str, baseline: str, alpha: float) -> str:
    if result.exit_code == 2:
        return f"### tts-bench check: incomparable\n\n{run} vs baseline {baseline}: {result.reason}\n"
    verdict = "REGRESSED" if result.exit_code == 1 else "ok"
    lines = [f"### tts-bench check: {verdict}", "",
             f"`{run}` against baseline `{baseline}`; one-sided {100 * (1 - alpha):.0f}% paired "
             f"bootstrap bound, Holm across metrics.", "",
             "| metric | k | run | baseline | delta | upper bound | margin | p | MDE | regressed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result.table.itertuples():
        lines.append(f"| {r.metric} | {r.k} | {r.run:.4f} | {r.baseline:.4f} | {r.delta:+.4f} | "
                     f"{r.upper_bound:+.4f} | {r.margin:.4f} | {r.p_value:.4f} | {r.mde:.4f} | "
                     f"{'yes' if r.regressed else 'no'} |")
    return "\n".join(lines) + "\n"


def junit_xml(result: GateResult, run: str) -> str:
    from xml.sax.saxutils import quoteattr

    cases = []
    if result.exit_code == 2:
        cases.append(f'  <testcase classname="tts-bench.check" name="comparable">'
                     f'<failure message={quoteattr(result.reason)}/></testcase>')
    for r in result.table.itertuples():
        name = quoteattr(f"{r.metric}:{r.k}")
        if r.regressed:
            msg = quoteattr(f"delta {r.delta:+.4f}, upper bound {r.upper_bound:+.4f} < -{r.margin}")
            cases.append(f'  <testcase classname="tts-bench.check" name={name}><failure message={msg}/>'
                         f'</testcase>')
        else:
            cases.append(f'  <testcase classname="tts-bench.check" name={name}/>')
    failures = sum(1 for c in cases if "<failure" in c)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name={quoteattr("tts-bench check " + run)} '
            f'tests="{len(cases)}" failures="{failures}">\n' + "\n".join(cases) + "\n</testsuite>\n")
