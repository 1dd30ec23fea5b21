"""Inference cost: tokens and FLOPs per sample, per problem, and the expected cost of k samples.

Costs sit beside accuracy on the x axis of every scaling plot. All functions
are pure and vectorised over arrays or tables; the model enters only through
its :class:`~tts_bench.metrics.model_shape.ModelShape`, read from its files.

    shape = shape_for_model(manifest["config"]["model"]["path"])
    table = problem_token_table(graded)                      # one row per problem
    cost_at_k(table, shape, ks=[1, 4, 16], kind="monkeys")   # k, cost (FLOPs), ...
    sample_costs(graded, shape)                              # FLOPs per generation

Cost kinds (``kind``), all in the column ``cost`` with its ``unit``:

``tokens`` (tokens)
    k * completion_tokens_mean: the completion tokens spent to draw k samples,
    the same convention as ``tokens@k`` in :mod:`tts_bench.metrics.curves`.
``monkeys`` (FLOPs; Large Language Monkeys, Brown et al. 2024)
    A token processed at context length t costs ``2 * (P + 2 * n_layers *
    d_model * t)``. "Context length" is the number of tokens before it, so the
    i-th token of a sequence (from 0) costs f(i): the prompt's tokens are
    t = 0..p-1 (prefill), a sample's completion tokens t = p..p+c-1 (decode).
    With ``prefix_caching`` the prompt is prefilled once per problem and shared
    by its samples; without, once per sample. Sums over t are closed forms:
    prefill(p) = 2Pp + 2*L*d*p(p-1); decode(p, c) = 2Pc + 2*L*d*c(2p + c - 1).
``snell`` (FLOPs; Snell et al. 2024)
    ``2 * P * tokens``: the same token accounting as ``monkeys`` without the
    attention term. ``include_prompt=False`` counts generated tokens only,
    as Snell et al.'s D_inference does.
``kinetics`` (eFLOPs; Kinetics, Infini-AI-Lab, cost_model/utils.py::dense_cost)
    ``compute = [2 P L_gen + 2 (2 L_ctx + L_gen) L_gen n_q D] * N`` and
    ``memory = 2 (2 L_ctx + N L_gen) L_gen n_kv D * I`` with ``D = head_dim *
    n_layers`` and ``I`` the hardware's arithmetic intensity (FLOPs per byte
    moved; their code uses 562.5). The model assumes the prompt's KV cache is
    shared by the N trials and counts no prefill, so ``prefix_caching=False``
    is refused. Returned in FLOPs (their code scales by 1e-12 to TFLOPs).
    With pooled samples of unequal length the cost is averaged over the
    pool's lengths, each standing for all N trials, as their
    ``expected_cost`` does (the cost is quadratic in L_gen, so this is not
    the cost at the mean length).

Expected cost of k samples (:func:`cost_at_k`): k samples drawn from a
problem's pool of n cost, in expectation, k times the pool's mean per-sample
decode cost plus the prompt (once with prefix caching); every term is linear
in per-sample moments, so the expectation is exact from the per-problem
means of c and c**2 (``completion_tokens_mean``, ``completion_tokens_sq_mean``)
and needs no subset enumeration. k may exceed n (the expectation does not
depend on n). The cost of a problem is then averaged over problems, as
tokens@k is.

Self-consistency vs generative verification (When To Solve, When To Verify):
:func:`solution_equivalents` gives C(S, V) = S * (1 + lambda * V).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import numpy as np
import pandas as pd

from ..models import ModelShape

__all__ = [
    "COST_KINDS",
    "COST_UNITS",
    "KINETICS_INTENSITY",
    "KineticsCost",
    "cost_at_k",
    "decode_flops",
    "flops_per_token",
    "kinetics_eflops",
    "per_problem_cost_at_k",
    "prefill_flops",
    "problem_token_table",
    "sample_costs",
    "self_consistency_samples",
    "snell_flops",
    "solution_equivalents",
    "verification_ratio",
]

ArrayLike = Union[float, int, np.ndarray, Sequence[float], pd.Series]

COST_KINDS = ("tokens", "snell", "monkeys", "kinetics")
COST_UNITS = {"tokens": "tokens", "snell": "FLOPs", "monkeys": "FLOPs", "kinetics": "eFLOPs"}
KINETICS_INTENSITY = 562.5  # FLOPs per byte; Kinetics' cost_model uses this for its hardware


def _f(x: ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------- per-token closed forms


def flops_per_token(shape: ModelShape, context: ArrayLike) -> np.ndarray:
    """FLOPs to process one token with ``context`` tokens before it: 2 * (P + 2 * L * d_model * t)."""
    return 2.0 * (shape.n_params + 2.0 * shape.n_layers * shape.d_model * _f(context))


def prefill_flops(shape: ModelShape, prompt_tokens: ArrayLike) -> np.ndarray:
    """FLOPs to prefill a prompt of p tokens: sum of flops_per_token over t = 0..p-1."""
    p = _f(prompt_tokens)
    return 2.0 * shape.n_params * p + 2.0 * shape.n_layers * shape.d_model * p * (p - 1.0)


def decode_flops(shape: ModelShape, prompt_tokens: ArrayLike, completion_tokens: ArrayLike) -> np.ndarray:
    """FLOPs to decode c tokens after a p-token prompt: sum of flops_per_token over t = p..p+c-1."""
    p, c = _f(prompt_tokens), _f(completion_tokens)
    return 2.0 * shape.n_params * c + 2.0 * shape.n_layers * shape.d_model * c * (2.0 * p + c - 1.0)


def snell_flops(n_params: ArrayLike, tokens: ArrayLike) -> np.ndarray:
    """Snell et al.'s inference FLOPs: 2 * N_params * tokens."""
    return 2.0 * _f(n_params) * _f(tokens)


class KineticsCost(NamedTuple):
    """Kinetics eFLOPs, split into the compute and memory (KV-cache traffic * intensity) terms."""

    compute: np.ndarray
    memory: np.ndarray
    total: np.ndarray


def kinetics_eflops(
    shape: ModelShape,
    context_tokens: ArrayLike,
    generated_tokens: ArrayLike,
    n_trials: ArrayLike = 1,
    intensity: float = KINETICS_INTENSITY,
) -> KineticsCost:
    """Kinetics' dense cost for N trials of L_gen tokens after an L_ctx-token prompt, in eFLOPs.

    compute = [2 P L_gen + 2 (2 L_ctx + L_gen) L_gen n_q D] * N
    memory  = 2 (2 L_ctx + N L_gen) L_gen n_kv D * I,   D = head_dim * n_layers
    Arguments broadcast against each other.
    """
    L_ctx, L_gen, N = _f(context_tokens), _f(generated_tokens), _f(n_trials)
    D = float(shape.head_dim * shape.n_layers)
    compute = (2.0 * shape.n_params * L_gen + 2.0 * (2.0 * L_ctx + L_gen) * L_gen * shape.n_heads * D) * N
    memory = 2.0 * (2.0 * L_ctx + N * L_gen) * L_gen * shape.n_kv_heads * D * float(intensity)
    return KineticsCost(compute, memory, compute + memory)


# ---------------------------------------------------------------- tables


def problem_token_table(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per problem with the token moments every cost kind needs.

    Input: one row per generation with problem_id, prompt_tokens,
    completion_tokens (missing counts read as 0, as in reduce_per_problem).
    Output, sorted by problem_id: problem_id, n, prompt_tokens (mean over the
    problem's samples, which share one prompt), completion_tokens_total,
    completion_tokens_mean, completion_tokens_sq_mean (mean of c**2; the
    attention terms are quadratic in c).
    """
    _require(samples, ("problem_id", "prompt_tokens", "completion_tokens"), "samples")
    codes, pids = pd.factorize(samples["problem_id"], sort=True)
    P = len(pids)
    p = samples["prompt_tokens"].to_numpy(dtype=np.float64, na_value=0.0)
    c = samples["completion_tokens"].to_numpy(dtype=np.float64, na_value=0.0)
    n = np.bincount(codes, minlength=P)
    c_total = np.bincount(codes, weights=c, minlength=P)
    return pd.DataFrame(
        {
            "problem_id": np.asarray(pids, dtype=object),
            "n": n.astype(np.int64),
            "prompt_tokens": np.bincount(codes, weights=p, minlength=P) / n,
            "completion_tokens_total": c_total,
            "completion_tokens_mean": c_total / n,
            "completion_tokens_sq_mean": np.bincount(codes, weights=c * c, minlength=P) / n,
        }
    )


def sample_costs(
    samples: pd.DataFrame,
    shape: ModelShape,
    *,
    prefix_caching: bool = True,
    include_prompt: bool = True,
) -> pd.DataFrame:
    """Per-generation cost columns (Large Language Monkeys FLOPs and Snell's 2PN).

    Returns ``samples`` with columns added: prefill_flops, decode_flops,
    flops (their sum) and snell_flops. With ``prefix_caching`` a problem's
    prompt is prefilled once, and each of its n samples carries 1/n of that
    prefill, so that a problem's rows sum to what it cost; without, each
    sample carries a full prefill. ``include_prompt=False`` sets the prefill
    to 0.
    """
    _require(samples, ("problem_id", "prompt_tokens", "completion_tokens"), "samples")
    p = samples["prompt_tokens"].to_numpy(dtype=np.float64, na_value=0.0)
    c = samples["completion_tokens"].to_numpy(dtype=np.float64, na_value=0.0)
    share = np.ones_like(p)
    if prefix_caching:
        codes, _ = pd.factorize(samples["problem_id"])
        share = 1.0 / np.bincount(codes)[codes]
    prompt_weight = share * float(include_prompt)
    pre = prefill_flops(shape, p) * prompt_weight
    dec = decode_flops(shape, p, c)
    out = samples.copy()
    out["prefill_flops"] = pre
    out["decode_flops"] = dec
    out["flops"] = pre + dec
    out["snell_flops"] = snell_flops(shape.n_params, p * prompt_weight + c)
    return out


def per_problem_cost_at_k(
    problems: pd.DataFrame,
    shape: ModelShape,
    ks: Sequence[int],
    kind: str = "monkeys",
    *,
    prefix_caching: bool = True,
    include_prompt: bool = True,
    intensity: float = KINETICS_INTENSITY,
) -> pd.DataFrame:
    """Expected cost of drawing k samples of each problem: one row per (problem, k).

    ``problems``: :func:`problem_token_table`'s output, or any per-problem
    table with completion_tokens_mean and prompt_tokens (or
    prompt_tokens_total and n, as reduce_per_problem writes); ``monkeys`` and
    ``kinetics`` also need completion_tokens_sq_mean. Columns: problem_id, k,
    kind, cost, unit. See the module docstring for each kind.
    """
    if kind not in COST_KINDS:
        raise ValueError(f"unknown cost kind {kind!r}; choose one of {', '.join(COST_KINDS)}")
    if kind == "kinetics" and not prefix_caching:
        raise ValueError("cost kind 'kinetics' assumes the prompt's KV cache is shared by all trials; "
                         "prefix_caching=False does not apply to it")
    k = _check_ks(ks)
    needed = ["problem_id", "completion_tokens_mean"]
    if kind in ("monkeys", "kinetics"):
        needed.append("completion_tokens_sq_mean")
    _require(problems, needed, "per-problem table",
             hint="build it with tts_bench.metrics.cost.problem_token_table(samples)")
    m1 = problems["completion_tokens_mean"].to_numpy(dtype=np.float64)[:, None]
    k_row = np.asarray(k, dtype=np.float64)[None, :]

    if kind == "tokens":
        cost = m1 * k_row
    else:
        p = _prompt_tokens(problems)[:, None]
        prompts = (1.0 if prefix_caching else k_row) * float(include_prompt)
        if kind == "snell":
            cost = snell_flops(shape.n_params, p * prompts + k_row * m1)
        else:
            m2 = problems["completion_tokens_sq_mean"].to_numpy(dtype=np.float64)[:, None]
            if kind == "monkeys":
                # E[decode(p, c)] = 2 P E[c] + 2 L d (2 p E[c] + E[c^2] - E[c])
                mean_decode = 2.0 * shape.n_params * m1 + 2.0 * shape.n_layers * shape.d_model * (
                    2.0 * p * m1 + m2 - m1
                )
                cost = prefill_flops(shape, p) * prompts + k_row * mean_decode
            else:
                # kinetics_eflops is a polynomial in L_gen; average it over the pool's lengths.
                D = float(shape.head_dim * shape.n_layers)
                compute = k_row * (2.0 * shape.n_params * m1
                                   + 2.0 * shape.n_heads * D * (2.0 * p * m1 + m2))
                memory = 2.0 * shape.n_kv_heads * D * float(intensity) * (2.0 * p * m1 + k_row * m2)
                cost = compute + memory
    n_p, n_k = cost.shape
    return pd.DataFrame(
        {
            "problem_id": np.repeat(problems["problem_id"].to_numpy(dtype=object), n_k),
            "k": np.tile(np.asarray(k, dtype=np.int64), n_p),
            "kind": kind,
            "cost": cost.reshape(-1),
            "unit": COST_UNITS[kind],
        }
    )


def cost_at_k(
    problems: pd.DataFrame,
    shape: ModelShape,
    ks: Sequence[int],
    kind: str = "monkeys",
    *,
    prefix_caching: bool = True,
    include_prompt: bool = True,
    intensity: float = KINETICS_INTENSITY,
) -> pd.DataFrame:
    """Expected cost to draw k samples per problem, averaged over problems: one row per k.

    Columns: kind, k, cost, unit, n_problems. ``kind="tokens"`` reproduces
    tokens@k = k * mean completion tokens. Arguments as in
    :func:`per_problem_cost_at_k`.
    """
    if len(problems) == 0:
        raise ValueError("no problems to compute costs over")
    long = per_problem_cost_at_k(problems, shape, ks, kind, prefix_caching=prefix_caching,
                                 include_prompt=include_prompt, intensity=intensity)
    out = long.groupby("k", sort=True)["cost"].mean().reset_index()
    out.insert(0, "kind", kind)
    out["unit"] = COST_UNITS[kind]
    out["n_problems"] = len(problems)
    return out


def _prompt_tokens(problems: pd.DataFrame) -> np.ndarray:
    if "prompt_tokens" in problems.columns:
        return problems["prompt_tokens"].to_numpy(dtype=np.float64)
    if "prompt_tokens_total" in problems.columns and "n" in problems.columns:
        return problems["prompt_tokens_total"].to_numpy(dtype=np.float64) / problems["n"].to_numpy(
            dtype=np.float64
        )
    raise ValueError("per-problem table lacks column 'prompt_tokens' (or 'prompt_tokens_total' and 'n'); "
                     "build it with tts_bench.metrics.cost.problem_token_table(samples)")


def _check_ks(ks: Sequence[int]) -> "list[int]":
    out = sorted({int(k) for k in ks})
    if not out:
        raise ValueError("ks is empty; give at least one k")
    if out[0] < 1 or any(int(k) != k for k in ks):
        raise ValueError(f"every k must be a positive integer; got {list(ks)}")
    return out


def _require(df: pd.DataFrame, columns: Sequence[str], what: str, hint: str = "") -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}" + (f"; {hint}" if hint else ""))


# ---------------------------------------------------------------- solve vs verify (section 13)


def solution_equivalents(n_solutions: ArrayLike, n_verifications: ArrayLike,
                         verification_ratio: ArrayLike) -> np.ndarray:
    """C(S, V) = S * (1 + lambda * V): the cost of S solutions with V verifications each.

    Unit: solution-equivalents (one solution's tokens). ``verification_ratio``
    (lambda) = verification tokens / solution tokens, see
    :func:`verification_ratio`. (When To Solve, When To Verify, 2025.)
    """
    S, V, lam = _f(n_solutions), _f(n_verifications), _f(verification_ratio)
    if np.any(S < 0) or np.any(V < 0) or np.any(lam < 0):
        raise ValueError("solutions, verifications and lambda must be >= 0")
    return S * (1.0 + lam * V)


def self_consistency_samples(n_solutions: ArrayLike, n_verifications: ArrayLike,
                             verification_ratio: ArrayLike) -> np.ndarray:
    """Samples self-consistency gets for the same budget: floor(C(S, V)) solutions.

    Self-consistency spends the whole budget on solutions, so it draws C
    samples; a fractional solution cannot be drawn, hence the floor (a small
    epsilon absorbs float error, so 4 * (1 + 0.5 * 2) is 8, not 7).
    """
    return np.floor(solution_equivalents(n_solutions, n_verifications, verification_ratio) + 1e-9)


def verification_ratio(verification_tokens: ArrayLike, solution_tokens: ArrayLike) -> np.ndarray:
    """lambda = mean verification tokens / mean solution tokens (scalars or arrays of means)."""
    v, s = _f(verification_tokens), _f(solution_tokens)
    if np.any(s <= 0):
        raise ValueError("solution_tokens must be > 0 to form lambda = verification / solution tokens")
    return v / s
