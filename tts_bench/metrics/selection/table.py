"""selection_curves: every selection metric per problem and k, as one tidy frame."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from tts_bench.metrics.curves import CURVE_MC_REPLICATES, _check_ks
from tts_bench.metrics.estimators._common import _missing
from tts_bench.metrics.problem_table import reduce_per_problem
from tts_bench.metrics.selection._pools import DEFAULT_EXACT_SUBSETS, _floats, _is_seq, selection_rng
from tts_bench.metrics.selection.bon import _bon_matrix, aggregate_steps
from tts_bench.metrics.selection.ffs import _ffs_matrix
from tts_bench.metrics.selection.rpc import _rpc_pools
from tts_bench.metrics.selection.vote import _class_codes, _vote_batch, _VotePools

# ---------------------------------------------------------------- table entry point


def selection_curves(
    samples: pd.DataFrame,
    ks: Sequence[int],
    *,
    problems: pd.DataFrame | None = None,
    seed: int = 0,
    replicates: int = CURVE_MC_REPLICATES,
    method: str = "auto",
    exact_cap: int = DEFAULT_EXACT_SUBSETS,
    step_aggregate: str = "last",
    rpc_prune: bool = False,
) -> pd.DataFrame:
    """Per-problem selection metrics at every k, tidy: one row per (problem, metric, k).

    Columns: problem_id, metric, k, value, method ("exact"/"mc"), score (the
    verifier score's source for bon@k/weighted@k, else None), tokens,
    latency, majority_tokens, majority_latency (ffs@k rows; NaN elsewhere).
    Metrics, each only when its inputs are present (a column with at least
    one non-null value):

    * bon@k, weighted@k: from ``verifier_score``, else from ``step_scores``
      aggregated with ``step_aggregate`` (score "step_scores:last");
    * rpc@k: from ``mean_logprob`` (``rpc_prune`` turns on reasoning pruning);
    * ffs@k: always (completion_tokens, finish_reason, correct).

    ``problems``: the :func:`reduce_per_problem` table of ``samples`` when the
    caller has built it already (a run's analysis builds it once); else it is built here.
    Problems are those of :func:`reduce_per_problem` (same order and checks);
    samples in a pool are ordered by sample_index. Raises ValueError when a
    k exceeds a problem's n. Average over problems and bootstrap with
    :func:`bootstrap_ci` on the pivoted [problems x ks] values.
    """
    if problems is None:
        problems = reduce_per_problem(samples)
    elif int(problems["n"].sum()) != len(samples):
        raise ValueError(f"problems is not the per-problem table of these samples: it counts "
                         f"{int(problems['n'].sum())} samples, they are {len(samples)}; pass "
                         f"reduce_per_problem(samples) or leave problems out")
    ks = _check_ks(problems, ks)
    pid, _ = pd.factorize(samples["problem_id"], sort=True)
    order = np.lexsort((samples["sample_index"].to_numpy(), pid))
    df = samples.iloc[order]
    n = problems["n"].to_numpy(dtype=np.int64)
    good = list(problems["correct_class"])
    ids = problems["problem_id"].to_numpy()
    cls = df["answer_class"].to_numpy(dtype=object)
    correct = df["correct"].to_numpy(dtype=bool, na_value=False)
    frames = []

    def add(metric, values, is_mc, score=None, extra=None):
        P, K = values.shape
        frame = {
            "problem_id": np.repeat(ids, K),
            "metric": metric,
            "k": np.tile(np.asarray(ks, dtype=np.int64), P),
            "value": values.ravel(),
            "method": np.where(is_mc.ravel(), "mc", "exact"),
            "score": score,
        }
        for col in ("tokens", "latency", "majority_tokens", "majority_latency"):
            frame[col] = extra[col].ravel() if extra else np.nan
        frames.append(pd.DataFrame(frame))

    score, source = _score_column(df, step_aggregate)
    if score is not None:
        bon = _bon_matrix(n, score, correct.astype(float), ks)
        add("bon@k", bon, np.zeros(bon.shape, dtype=bool), source)
        pools = _VotePools(codes=_class_codes(cls, n, good),
                           weights=np.nan_to_num(score, nan=0.0), n=n)
        v, mc = _votes(pools, ks, seed, "weighted", method, replicates, exact_cap, False)
        add("weighted@k", v, mc, source)
    if "mean_logprob" in df.columns and df["mean_logprob"].notna().any():
        pools = _rpc_pools(cls, _floats(df["mean_logprob"].to_numpy(dtype=object)), n, good, None)
        v, mc = _votes(pools, ks, seed, "rpc", method, replicates, exact_cap, rpc_prune)
        add("rpc@k", v, mc)
    L = df["completion_tokens"].to_numpy(dtype=np.float64)
    finished = (df["finish_reason"] != "length").to_numpy(dtype=bool)
    cols = ("value", "tokens", "latency", "majority_tokens", "majority_latency")
    res = dict(zip(cols, _ffs_matrix(n, L, correct, finished, ks)))
    add("ffs@k", res["value"], np.zeros(res["value"].shape, dtype=bool), extra=res)
    return pd.concat(frames, ignore_index=True)


def _score_column(df: pd.DataFrame, step_aggregate: str):
    if "verifier_score" in df.columns and df["verifier_score"].notna().any():
        return _floats(df["verifier_score"].to_numpy(dtype=object)), "verifier_score"
    if "step_scores" in df.columns:
        steps = [None if not _is_seq(v) and _missing(v) else v for v in df["step_scores"]]
        if any(v is not None for v in steps):
            return aggregate_steps(steps, step_aggregate), f"step_scores:{step_aggregate}"
    return None, None


def _votes(pools, ks, seed, metric, method, replicates, exact_cap, prune):
    v = np.empty((len(pools.n), len(ks)))
    mc = np.zeros(v.shape, dtype=bool)
    for j, k in enumerate(ks):
        v[:, j], mc[:, j], _ = _vote_batch(
            pools, k, rng=selection_rng(seed, metric, k), method=method,
            replicates=replicates, exact_cap=exact_cap, prune=prune,
        )
    return v, mc
