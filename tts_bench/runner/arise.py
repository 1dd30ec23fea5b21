"""ARISE's adaptive repeats: rerun a strategy per problem until each level's estimate is steady.

With ``arise.repeats=true`` the runner runs the strategy repeatedly, repeat
r with base seed ``strategy.seed + r`` (independent draws: other seeds,
other keys, all cached), and per (problem, level) applies the ARISE
authors' rule (``metrics.scaling.arise_needs_another_run``): start with
``arise.min_runs`` repeats, add one while CV(accuracy) + CV(tokens) >
``arise.threshold``, up to ``arise.max_runs``. A problem is rerun while any
of its levels asks for another repeat; each level then uses only the
repeats its own rule asked for (the first m that settled it). The ARISE
score uses the means over those repeats.

Levels: a strategy's own levels (thinking budget, revision depth); for
parallel sampling the k grid, with a repeat's accuracy at k its unbiased
pass@k over that repeat's n samples and its tokens k times their mean.

The runner grades inside the loop (the rule needs accuracy); strategies
still never see a reference answer. Repeat 0 is the ordinary run: every
other table and metric reads repeat 0 only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics.estimators import pass_at_k
from ..metrics.scaling import arise, arise_needs_another_run


def level_stats(graded: pd.DataFrame, ks: list[int]) -> pd.DataFrame:
    """(problem_id, repeat, level, accuracy, tokens) for graded trajectories of some repeats."""
    rows = []
    if (graded["level"] == 0).all():  # parallel: levels are the k grid
        for (pid, rep), g in graded.groupby(["problem_id", "repeat"], sort=True):
            n, c, mean_t = len(g), int(g["correct"].sum()), float(g["completion_tokens"].mean())
            for k in ks:
                if k <= n:
                    rows.append((pid, rep, k, float(pass_at_k(n, c, k)), k * mean_t))
    else:
        for (pid, rep, level), g in graded.groupby(["problem_id", "repeat", "level"], sort=True):
            rows.append((pid, rep, int(level), float(g["correct"].mean()),
                         float(g["completion_tokens"].mean())))
    return pd.DataFrame(rows, columns=["problem_id", "repeat", "level", "accuracy", "tokens"])


def settled_runs(stats: pd.DataFrame, *, min_runs: int, max_runs: int, threshold: float) -> pd.DataFrame:
    """Per (problem, level): how many repeats its rule used, whether it wants more, and the means."""
    rows = []
    for (pid, level), g in stats.sort_values("repeat").groupby(["problem_id", "level"], sort=True):
        acc, tok = g["accuracy"].to_numpy(), g["tokens"].to_numpy()
        m = len(acc)
        for j in range(min_runs, len(acc) + 1):  # the first m the rule stops at
            if not arise_needs_another_run(acc[:j], tok[:j], min_runs=min_runs, max_runs=max_runs,
                                           threshold=threshold):
                m = j
                break
        need = arise_needs_another_run(acc[:m], tok[:m], min_runs=min_runs, max_runs=max_runs,
                                       threshold=threshold)
        rows.append({"problem_id": pid, "level": level, "runs": m, "need_more": bool(need),
                     "accuracy": float(acc[:m].mean()), "tokens": float(tok[:m].mean()),
                     "cv_accuracy": float(np.std(acc[:m]) / (np.mean(acc[:m]) + 1e-8)),
                     "cv_tokens": float(np.std(tok[:m]) / (np.mean(tok[:m]) + 1e-8))})
    return pd.DataFrame(rows)


def arise_summary(settled: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "arise": arise(settled[["problem_id", "level", "accuracy", "tokens"]]),
        "problems": int(settled["problem_id"].nunique()), "levels": int(settled["level"].nunique()),
        "mean_runs": float(settled["runs"].mean()), "max_runs": int(settled["runs"].max()),
        "unsettled": int(settled["need_more"].sum()),
        "tokens": "mean completion tokens per trajectory (parallel: k x mean)",
    }])
