"""Search strategies' own tables: accuracy per budget N and what the whole tree cost.

    search_table(graded, n_boot=1000)        # per N: its answer, majority, weighted vote, tree cost
    search_cost(graded, "beam-search", shape, verifier_shape)   # strategy_cost rows for the frontier

A search's answer is its best-scored completion (the verifier's aggregated
score); a problem with no completion scores 0. Its cost is the whole tree's,
pruned branches included (``tree_*`` columns the search writes on each of
its trajectories): the policy's tokens read and generated over every node,
and the verifier's reads (and writes, for genrm). FLOPs use each model's own
shape: every policy call prefills what it reads beyond its re-read prefix
(prefix caching) and decodes what it generates at the call's mean context;
every verifier call is a forward pass over its input (plus a genrm's decode).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .strategies import _boot_ci, majority_credit


def search_table(graded: pd.DataFrame, *, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Per budget N: the search's answer (its best-scored completion), majority and weighted vote
    over its completions, with 95% CIs; completions per problem; the whole tree's cost per problem.

    A problem with no finished completion scores 0 on every row (its one
    trajectory is empty). Tree costs count every node, pruned ones too.
    """
    rows = []
    for level, g in graded.groupby("level", sort=True):
        best, maj, wv, done = [], [], [], []
        for _, pg in g.groupby("problem_id", sort=True):
            ok = pg[pg["completion"].astype(bool)]
            done.append(len(ok))
            if ok.empty:
                best.append(0.0), maj.append(0.0), wv.append(0.0)
                continue
            best.append(_search_credit(ok))
            maj.append(majority_credit(ok["answer_class"], ok["correct"]))
            wv.append(_weighted_credit(ok["answer_class"].tolist(), ok["correct"].tolist(),
                                       ok["search_score"].to_numpy(dtype=float)))
        row = {"n": int(level), "problems": len(best), "mean_completions": float(np.mean(done))}
        for name, vals in (("search_answer", best), ("majority", maj), ("weighted", wv)):
            lo, hi = _boot_ci(np.asarray(vals), n_boot, seed)
            row |= {name: float(np.mean(vals)), f"{name}_ci_low": lo, f"{name}_ci_high": hi}
        per = g.groupby("problem_id").first()
        for col in [c for c in g.columns if c.startswith("tree_")]:
            row[col.replace("tree_", "mean_")] = float(per[col].mean())
        if {"mean_read_tokens", "mean_prefix_tokens"} <= row.keys() and row["mean_read_tokens"]:
            row["prefix_share_of_read"] = row["mean_prefix_tokens"] / row["mean_read_tokens"]
        rows.append(row)
    return pd.DataFrame(rows)


def _weighted_credit(classes, correct, scores) -> float:
    """Weighted vote over all of a problem's completions: weighted@k at k = n (ties share the credit)."""
    from .selection import weighted_vote_at_k

    right = next((c for c, ok in zip(classes, correct) if ok and c is not None), None)
    return float(weighted_vote_at_k(classes, scores, right, len(classes)).value)


def _search_credit(ok: pd.DataFrame) -> float:
    top = ok["search_score"].to_numpy(dtype=float)
    return float(ok["correct"].to_numpy(dtype=float)[np.flatnonzero(top == top.max())].mean())


def search_cost(graded: pd.DataFrame, strategy: str, model_shape: dict | None,
                verifier_shape: dict | None) -> pd.DataFrame:
    """Per N (level): the search's answer accuracy and the whole tree's cost per problem.

    Columns as ``strategy_cost`` (strategy, level, accuracy, tokens, prompt_tokens,
    reread_prefix_tokens, flops) plus verifier_input_tokens, verifier_output_tokens,
    verifier_flops and total_flops, so a search sits on the cross-run frontier at
    what it really spent.
    """
    from ..models import ModelShape
    from .cost import decode_flops, prefill_flops

    shape = ModelShape(**model_shape) if model_shape else None
    vshape = ModelShape(**verifier_shape) if verifier_shape else None
    rows = []
    for level, g in graded.groupby("level", sort=True):
        per = g.groupby("problem_id", sort=True)
        acc = [(_search_credit(pg[pg["completion"].astype(bool)]) if pg["completion"].astype(bool).any()
                else 0.0) for _, pg in per]
        tree = per.first()
        col = {c: tree[c].to_numpy(dtype=float) if c in tree else np.zeros(len(tree))
               for c in ("tree_policy_calls", "tree_read_tokens", "tree_prefix_tokens",
                         "tree_completion_tokens", "tree_verifier_calls", "tree_verifier_input_tokens",
                         "tree_verifier_output_tokens")}
        row = {"strategy": strategy, "level": int(level), "accuracy": float(np.mean(acc)),
               "tokens": float(col["tree_completion_tokens"].mean()),
               "prompt_tokens": float(col["tree_read_tokens"].mean()),
               "reread_prefix_tokens": float(col["tree_prefix_tokens"].mean()),
               "verifier_input_tokens": float(col["tree_verifier_input_tokens"].mean()),
               "verifier_output_tokens": float(col["tree_verifier_output_tokens"].mean())}
        calls = np.maximum(col["tree_policy_calls"], 1)
        if shape is not None:
            ctx = col["tree_read_tokens"] / calls
            fresh = (col["tree_read_tokens"] - col["tree_prefix_tokens"]) / calls
            gen = col["tree_completion_tokens"] / calls
            per_call = prefill_flops(shape, fresh) + decode_flops(shape, ctx, gen)
            row["flops"] = float((calls * per_call).mean())
        if vshape is not None:
            vcalls = np.maximum(col["tree_verifier_calls"], 1)
            vin = col["tree_verifier_input_tokens"] / vcalls
            vout = col["tree_verifier_output_tokens"] / vcalls
            vf = prefill_flops(vshape, vin) + np.where(vout > 0, decode_flops(vshape, vin, vout), 0.0)
            row["verifier_flops"] = float((col["tree_verifier_calls"] * vf).mean())
        if "flops" in row:
            row["total_flops"] = row["flops"] + row.get("verifier_flops", 0.0)
        rows.append(row)
    return pd.DataFrame(rows)
