"""What verification costs, and whether it pays: verifier cost columns and solve-vs-verify.

    cost = verifier_cost(cost, graded, ks, verifier_shape)   # verifier_* columns for bon@k, weighted@k
    table = solve_vs_verify(graded, n_boot=1000)            # SC against genrm at matched compute

A verifier's cost is charged with its own model's shape: a reward model
reads each scored solution once (a forward pass: prefill FLOPs of its input);
a generative verifier reads its prompt and generates its verdict (prefill
plus decode, per verification). Kinetics eFLOPs: a forward pass is compute
bound, so a reward model's eFLOPs are the compute term of its prefill
(2 P L + 2 L^2 n_q d); a genrm verification's are Kinetics' dense cost of its
decode after that prefill.

Solve against verify ("When To Solve, When To Verify", metrics.md section
13): S solutions with V verifications each cost C = S (1 + lambda V)
solution-equivalents, lambda = mean verification tokens generated / mean
solution tokens generated. Best-of-S by the mean of the first V verifications
(unbiased BoN@S) is set against self-consistency with floor(C) samples
(maj@floor(C), exact) where the pool holds that many.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..models import ModelShape
from .cost import decode_flops, kinetics_eflops, prefill_flops, self_consistency_samples, solution_equivalents
from .curves import bootstrap_ci
from .registry import names

VERIFIED_METRICS = names(need="verifier_scores")  # the selection metrics that need every sample scored


def verifier_sample_costs(graded: pd.DataFrame, shape: ModelShape | None) -> pd.DataFrame:
    """Per sample: verifier input/output tokens and, with a shape, its FLOPs and eFLOPs."""
    inp = graded["verifier_input_tokens"].to_numpy(dtype=np.float64, na_value=0.0)
    out = graded["verifier_output_tokens"].to_numpy(dtype=np.float64, na_value=0.0) \
        if "verifier_output_tokens" in graded.columns else np.zeros_like(inp)
    df = pd.DataFrame({"problem_id": graded["problem_id"].to_numpy(), "verifier_input_tokens": inp,
                       "verifier_output_tokens": out})
    if shape is not None:
        reads = prefill_flops(shape, inp)
        df["verifier_flops"] = reads + np.where(out > 0, decode_flops(shape, inp, out), 0.0)
        D = float(shape.head_dim * shape.n_layers)
        forward = 2.0 * shape.n_params * inp + 2.0 * inp * inp * shape.n_heads * D
        decode = kinetics_eflops(shape, inp, out, 1).total
        df["verifier_eflops"] = np.where(out > 0, forward + decode, forward)
    return df


def verifier_cost(cost: pd.DataFrame, graded: pd.DataFrame, shape: dict | None) -> pd.DataFrame:
    """``cost`` (one row per metric, k) with the verifier's cost of k scored samples beside the policy's.

    Rows of verified metrics (bon@k, weighted@k) get verifier_input_tokens,
    verifier_output_tokens, and with the verifier's shape verifier_flops and
    verifier_eflops: k times the per-problem mean, averaged over problems.
    total_flops / total_eflops add them to the policy's flops / eflops
    (the policy's alone for metrics that need no verifier).
    """
    if "verifier_input_tokens" not in graded.columns or graded["verifier_input_tokens"].isna().all():
        return cost
    per = verifier_sample_costs(graded, ModelShape(**shape) if shape else None)
    means = per.groupby("problem_id").mean(numeric_only=True).mean()
    out = cost.copy()
    verified = out["metric"].isin(VERIFIED_METRICS).to_numpy()
    for col in [c for c in per.columns if c != "problem_id"]:
        out[col] = np.where(verified, out["k"].to_numpy(dtype=float) * float(means[col]), 0.0)
    for policy, total in (("flops", "total_flops"), ("eflops", "total_eflops")):
        if policy in out.columns and f"verifier_{policy}" in out.columns:
            out[total] = out[policy] + out[f"verifier_{policy}"]
    return out


def solve_vs_verify(graded: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Self-consistency against generative verification at matched compute, with 95% CIs.

    Needs ``verifications`` (genrm: each verification's P(Yes), in order),
    ``verifier_output_tokens``, ``completion_tokens``, ``answer_class`` and
    ``correct``. One row per point: method (``self-consistency`` or
    ``genrm V=v``), solutions S, verifications V, compute C (solution
    equivalents), accuracy, ci_low, ci_high, lambda, n_problems. Empty when
    the run has no verifications.
    """
    from .selection import bon_at_k
    from .strategies import maj_of_pool

    if "verifications" not in graded.columns or graded["verifications"].isna().all():
        return pd.DataFrame()
    g = graded.sort_values(["problem_id", "sample_index"], kind="stable")
    ver = [list(v) if v is not None and not (isinstance(v, float) and np.isnan(v)) else [] for v in
           g["verifications"]]
    V_max = min(len(v) for v in ver)
    if V_max == 0:
        return pd.DataFrame()
    lam = float(np.mean(g["verifier_output_tokens"].to_numpy(dtype=float) / V_max)) / \
        max(float(g["completion_tokens"].mean()), 1e-9)
    pools = [(pid, pg.index) for pid, pg in g.groupby("problem_id", sort=True)]
    n = min(len(idx) for _, idx in pools)
    where = {ix: j for j, ix in enumerate(g.index)}
    S_grid = sorted({2 ** i for i in range(20) if 2 ** i <= n} | {n})
    rows = []

    def add(method, S, V, C, per_problem):
        x = np.asarray(per_problem, dtype=float)
        lo, hi = bootstrap_ci(x[:, None], n_boot=n_boot, seed=seed) if n_boot else ([np.nan], [np.nan])
        rows.append({"method": method, "solutions": int(S), "verifications": int(V), "compute": float(C),
                     "accuracy": float(x.mean()), "ci_low": float(lo[0]), "ci_high": float(hi[0]),
                     "lambda": lam, "n_problems": len(x)})

    for V in range(1, V_max + 1):
        for S in S_grid:
            vals = []
            for _, idx in pools:
                scores = [float(np.mean(ver[where[i]][:V])) for i in idx]
                vals.append(bon_at_k(scores, g.loc[idx, "correct"].astype(float).tolist(), S))
            add(f"genrm V={V}", S, V, float(solution_equivalents(S, V, lam)), vals)
    budgets = sorted({int(self_consistency_samples(S, V, lam)) for V in range(0, V_max + 1) for S in S_grid})
    for C in [c for c in budgets if 1 <= c <= n]:
        vals = [maj_of_pool(g.loc[idx, "answer_class"].tolist(), g.loc[idx, "correct"].tolist(), C)
                for _, idx in pools]
        add("self-consistency", C, 0, C, vals)
    return pd.DataFrame(rows).sort_values(["compute", "method"]).reset_index(drop=True)
