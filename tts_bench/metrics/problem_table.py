"""Reduce graded samples (one row per generation) to one row per problem.

This is the middle level of scoring (STYLE: grade per generation -> reduction
per problem -> aggregate across problems): every metric at every k is later
computed from this table alone, so a report never re-reads the generations.

    problems = reduce_per_problem(graded)                  # all samples
    problems = reduce_per_problem(graded, max_samples=64)  # budget n = 64

Input columns: problem_id, sample_index, prompt_tokens, completion_tokens,
finish_reason, answer_class (None: no answer extracted or ungradable),
correct. Other columns are ignored. Output columns, one row per problem,
sorted by problem_id:

    problem_id               the problem
    n                        samples
    c                        correct samples
    correct_class            answer_class of the correct samples (None if c == 0)
    class_counts             dict answer_class -> samples, abstentions excluded
    n_no_answer              samples with answer_class None (they abstain in votes)
    n_truncated              samples with finish_reason == "length"
    prompt_tokens_total      sum over samples
    completion_tokens_total  sum over samples
    completion_tokens_mean   completion_tokens_total / n
    completion_tokens_sq_mean  mean of completion_tokens**2 (the cost models' attention terms)
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = (
    "problem_id",
    "sample_index",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "answer_class",
    "correct",
)


def reduce_per_problem(samples: pd.DataFrame, max_samples: Optional[int] = None) -> pd.DataFrame:
    """One row per problem_id: counts, answer classes and token totals.

    ``max_samples`` keeps each problem's first ``max_samples`` samples by
    sample_index, so that a budget n is scored on the same pool prefix
    whatever was generated beyond it. Raises ValueError when columns are
    missing or when a problem's correct samples disagree on answer_class
    (the grader puts all correct answers of a problem in one class, and
    maj@k needs that class).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.columns]
    if missing:
        raise ValueError(f"graded samples lack column(s) {missing}")
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1; got {max_samples}")
        samples = _first_samples(samples, max_samples)

    pid_codes, pids = pd.factorize(samples["problem_id"], sort=True)
    P = len(pids)
    correct = samples["correct"].to_numpy(dtype=bool, na_value=False)
    cls_codes, classes = pd.factorize(samples["answer_class"], use_na_sentinel=True)
    has_answer = cls_codes >= 0
    truncated = (samples["finish_reason"] == "length").to_numpy(dtype=bool, na_value=False)
    prompt = samples["prompt_tokens"].to_numpy(dtype=np.float64, na_value=0.0)
    completion = samples["completion_tokens"].to_numpy(dtype=np.float64, na_value=0.0)

    n = np.bincount(pid_codes, minlength=P)
    c = np.bincount(pid_codes, weights=correct, minlength=P).astype(np.int64)
    no_answer = n - np.bincount(pid_codes, weights=has_answer, minlength=P).astype(np.int64)
    n_trunc = np.bincount(pid_codes, weights=truncated, minlength=P).astype(np.int64)
    prompt_total = np.bincount(pid_codes, weights=prompt, minlength=P)
    completion_total = np.bincount(pid_codes, weights=completion, minlength=P)

    # (problem, class) pairs; a few per problem, so a Python pass over them is cheap.
    n_cls = max(1, len(classes))
    pair = pid_codes[has_answer].astype(np.int64) * n_cls + cls_codes[has_answer]
    keys, counts = _count_keys(pair, P * n_cls)
    class_counts: list[dict] = [{} for _ in range(P)]
    cls_list = list(classes)
    for key, cnt in zip(keys.tolist(), counts.tolist()):
        class_counts[key // n_cls][cls_list[key % n_cls]] = cnt

    correct_class = _correct_class(pid_codes, cls_codes, correct, cls_list, pids, n_cls)

    return pd.DataFrame(
        {
            "problem_id": np.asarray(pids, dtype=object),
            "n": n.astype(np.int64),
            "c": c,
            # object dtype keeps None (a str column would turn it into NaN)
            "correct_class": pd.Series(correct_class, dtype=object),
            "class_counts": class_counts,
            "n_no_answer": no_answer,
            "n_truncated": n_trunc,
            "prompt_tokens_total": _as_int_if_whole(prompt_total),
            "completion_tokens_total": _as_int_if_whole(completion_total),
            "completion_tokens_mean": completion_total / n,
            # mean of c**2: the attention terms of the cost models are quadratic in c
            "completion_tokens_sq_mean": np.bincount(pid_codes, weights=completion * completion,
                                                     minlength=P) / n,
        }
    )


def _first_samples(samples: pd.DataFrame, max_samples: int) -> pd.DataFrame:
    # Rank within the problem rather than test sample_index < max_samples:
    # a pool with gaps (failed generations) still gives max_samples samples.
    rank = samples.groupby("problem_id", sort=False)["sample_index"].rank(method="first")
    return samples[rank.to_numpy() <= max_samples]


def _count_keys(keys: np.ndarray, n_keys: int) -> "tuple[np.ndarray, np.ndarray]":
    """Distinct keys in [0, n_keys) and their counts."""
    if n_keys <= 4 * len(keys) + 1024:
        # A dense count is linear; sorting a million keys is not.
        counts = np.bincount(keys, minlength=n_keys)
        present = np.flatnonzero(counts)
        return present, counts[present]
    return np.unique(keys, return_counts=True)


def _correct_class(
    pid_codes: np.ndarray,
    cls_codes: np.ndarray,
    correct: np.ndarray,
    cls_list: list,
    pids: pd.Index,
    n_cls: int,
) -> list:
    P = len(pids)
    out: list = [None] * P
    good_pid = pid_codes[correct].astype(np.int64)
    good_cls = cls_codes[correct]
    if (good_cls < 0).any():
        bad = pids[good_pid[good_cls < 0][0]]
        raise ValueError(
            f"problem {bad!r} has a correct sample with no answer_class; the grader must "
            f"give every correct sample its answer's class"
        )
    keys, _ = _count_keys(good_pid * n_cls + good_cls, P * n_cls)
    key_pid, key_cls = keys // n_cls, keys % n_cls
    classes_per_problem = np.bincount(key_pid, minlength=P)
    if (classes_per_problem > 1).any():
        bad = pids[int(np.flatnonzero(classes_per_problem > 1)[0])]
        raise ValueError(
            f"problem {bad!r} has correct samples in more than one answer_class; "
            f"the grader must put all correct answers of a problem in one class"
        )
    for p, cl in zip(key_pid.tolist(), key_cls.tolist()):
        out[p] = cls_list[cl]
    return out


def _as_int_if_whole(values: np.ndarray) -> np.ndarray:
    # Token counts are integers; the float bincount is exact below 2**53.
    return values.astype(np.int64) if np.all(values == np.round(values)) else values
