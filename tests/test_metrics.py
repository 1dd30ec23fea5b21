"""Tests for tts_bench.metrics: estimators, the per-problem table, curves.

Estimators are checked three ways: hand-computed tables (edge cases
included), brute-force enumeration of every k-subset of small seeded pools,
and closed forms on large pools (which exercise the exact method's pruning
and windows). Monte Carlo is checked against the exact method within five
times its worst-case standard error, 0.5/sqrt(replicates).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Optional

import numpy as np
import pandas as pd
import pytest

from tts_bench.metrics import (
    AnswerPools,
    bootstrap_ci,
    compute_curves,
    estimate_matrix,
    maj_at_k,
    maj_at_k_batch,
    mc_rng,
    pass_at_k,
    per_problem_estimates,
    reduce_per_problem,
)
from tts_bench.metrics import estimators as est
from tts_bench.metrics.estimators.exact import _plan_exact
from tts_bench.metrics.estimators.monte_carlo import _mc_credits_index, _mc_credits_marginal

# ---------------------------------------------------------------- helpers


def brute_force(labels: list, good: Optional[str], k: int) -> "tuple[float, float]":
    """(pass@k, maj@k) by enumerating every k-subset; None labels abstain."""
    passed = voted = 0.0
    total = 0
    for subset in itertools.combinations(labels, k):
        total += 1
        votes: dict = {}
        for lab in subset:
            if lab is not None:
                votes[lab] = votes.get(lab, 0) + 1
        if good is not None and votes.get(good, 0) > 0:
            passed += 1
            top = max(votes.values())
            if votes[good] == top:
                voted += 1 / sum(1 for v in votes.values() if v == top)
    return passed / total, voted / total


def random_pool(rng: np.random.Generator, n: int, n_classes: int) -> "tuple[list, dict, str]":
    """n labels over classes c0.. (c0 correct) and None (abstain)."""
    codes = rng.integers(-1, n_classes, n)
    labels = [None if c < 0 else f"c{c}" for c in codes]
    counts = {lab: labels.count(lab) for lab in set(labels) if lab is not None}
    return labels, counts, "c0"


def zipf_pool(rng: np.random.Generator, n: int, p_correct: float, n_wrong: int) -> dict:
    probs = np.concatenate([[0.05, p_correct], 1.0 / np.arange(1, n_wrong + 1)])
    probs[2:] *= (1 - 0.05 - p_correct) / probs[2:].sum()
    counts = rng.multinomial(n, probs)
    return {f"c{j}": int(v) for j, v in enumerate(counts[1:]) if v > 0}


def graded_table(rng: np.random.Generator, problems: int, samples: int) -> pd.DataFrame:
    rows = []
    for p in range(problems):
        p_correct = rng.beta(1.0, 1.0)
        for i in range(samples):
            u = rng.random()
            cls = None if u < 0.05 else ("right" if u < 0.05 + p_correct else f"w{rng.integers(3)}")
            tokens = int(rng.integers(10, 200))
            rows.append(
                {
                    "problem_id": f"p{p:03d}",
                    "sample_index": i,
                    "prompt_tokens": 30,
                    "completion_tokens": tokens,
                    "finish_reason": "length" if tokens > 190 else "stop",
                    "answer_class": cls,
                    "correct": cls == "right",
                    "grade_status": "ok" if cls else "no_answer",
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- pass@k

PASS_CASES = [
    # n, c, k, expected
    (10, 3, 2, 1 - 21 / 45),  # the reference example: 0.5333
    (10, 3, 1, 0.3),  # pass@1 = c/n
    (10, 0, 5, 0.0),  # c = 0
    (10, 10, 1, 1.0),  # c = n
    (10, 10, 10, 1.0),
    (10, 3, 10, 1.0),  # k = n
    (5, 2, 4, 1.0),  # n - c < k: every subset holds a correct sample
    (100, 1, 10, 0.1),
    (1, 1, 1, 1.0),
    (1, 0, 1, 0.0),
]


@pytest.mark.parametrize("n,c,k,expected", PASS_CASES)
def test_pass_at_k_hand_values(n, c, k, expected):
    got = pass_at_k(n, c, k)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_vectorised_and_broadcast():
    n = np.array([10, 10, 10, 5])
    c = np.array([0, 3, 10, 2])
    got = pass_at_k(n, c, 2)
    want = [1 - math.comb(ni - ci, 2) / math.comb(ni, 2) for ni, ci in zip(n, c)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    grid = pass_at_k(n[:, None], c[:, None], np.array([[1, 2, 5]]))
    assert grid.shape == (4, 3)
    np.testing.assert_allclose(grid[:, 1], want, atol=1e-12)
    assert not np.signbit(pass_at_k(10, 0, 3))  # 0.0, not -0.0


def test_pass_at_k_large_pool_matches_exact_fraction():
    n, c = 10_000, 37
    for k in (1, 100, 1000, 9000):
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)


@pytest.mark.parametrize(
    "n,c,k,message",
    [
        (10, 3, 12, "pass@k needs k <= n (k samples drawn from a pool of n); got k=12 > n=10"),
        (10, 3, 0, "pass@k needs k >= 1; got k=0"),
        (10, 11, 2, "pass@k needs 0 <= c <= n; got c=11, n=10"),
    ],
)
def test_pass_at_k_errors(n, c, k, message):
    with pytest.raises(ValueError) as err:
        pass_at_k(n, c, k)
    assert str(err.value) == message


# ---------------------------------------------------------------- maj@k, by hand

MAJ_CASES = [
    # class counts, correct class, n, k, expected; n - sum(counts) abstain
    ({"A": 2, "B": 1, "C": 1}, "A", 4, 1, 1 / 2),  # one voter: P(pick A)
    ({"A": 2, "B": 1, "C": 1}, "A", 4, 2, 1 / 2),  # AA 1; AB, AC x4 ties 1/2; BC 0 -> 3/6
    ({"A": 2, "B": 1, "C": 1}, "A", 4, 3, 2 / 3),  # AAB, AAC 1; ABC x2 3-way ties -> 8/3 / 4
    ({"A": 2, "B": 1, "C": 1}, "A", 4, 4, 1.0),  # k = n: A has 2 of 4
    ({"A": 2, "B": 2}, "A", 4, 4, 1 / 2),  # k = n two-way tie
    ({"A": 1, "B": 1, "C": 1}, "A", 3, 3, 1 / 3),  # k = n three-way tie
    ({"A": 2, "B": 1}, "A", 3, 2, 2 / 3),  # AA 1; AB x2 ties 1/2 -> 2/3
    ({"A": 1, "B": 2}, "A", 3, 3, 0.0),  # k = n, correct in the minority
    ({"A": 1}, "A", 3, 1, 1 / 3),  # two abstain: one voter
    ({"A": 1}, "A", 3, 2, 2 / 3),  # any subset holding A wins: abstainers do not vote
    ({"A": 1}, "A", 3, 3, 1.0),
    ({"A": 1, "B": 1}, "A", 3, 2, 1 / 2),  # AB tie 1/2; A_ 1; B_ 0 -> 1.5/3
    ({}, None, 3, 2, 0.0),  # every sample abstains: the vote fails
    ({"B": 3}, None, 4, 2, 0.0),  # c = 0
    ({"A": 5}, "A", 5, 1, 1.0),  # c = n
    ({"A": 5}, "A", 5, 3, 1.0),
    ({"A": 5}, "A", 5, 5, 1.0),
]


@pytest.mark.parametrize("counts,good,n,k,expected", MAJ_CASES)
def test_maj_at_k_hand_values(counts, good, n, k, expected):
    for method in ("auto", "exact"):
        got = maj_at_k(counts, good, n, k, method=method)
        assert got.value == pytest.approx(expected, abs=1e-12)
        assert got.method == "exact"
        assert got.replicates == 0 and got.stderr == 0.0


@pytest.mark.parametrize("counts,good,n,k,expected", MAJ_CASES)
def test_maj_at_k_hand_values_brute_force(counts, good, n, k, expected):
    labels = [cl for cl, v in counts.items() for _ in range(v)] + [None] * (n - sum(counts.values()))
    assert brute_force(labels, good, k)[1] == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- exact vs enumeration


def test_exact_estimators_match_enumeration():
    rng = np.random.default_rng(20240601)
    checked = 0
    for _ in range(150):
        n = int(rng.integers(1, 10))
        labels, counts, good = random_pool(rng, n, int(rng.integers(1, 5)))
        c = labels.count(good)
        for k in range(1, n + 1):
            want_pass, want_maj = brute_force(labels, good, k)
            assert pass_at_k(n, c, k) == pytest.approx(want_pass, abs=1e-12)
            for tol in (est.DEFAULT_TOL, 0.0):
                got = maj_at_k(counts, good, n, k, method="exact", tol=tol)
                assert got.value == pytest.approx(want_maj, abs=1e-12), (counts, n, k)
            checked += 1
    assert checked > 400


def maj2_closed_form(counts: dict, good: str, n: int) -> float:
    """k = 2: AA wins, A+abstain wins, A+wrong ties (1/2)."""
    a = counts.get(good, 0)
    wrong = sum(v for cl, v in counts.items() if cl != good)
    z = n - a - wrong
    return float(Fraction(math.comb(a, 2) + a * z) + Fraction(a * wrong, 2)) / math.comb(n, 2)


def maj_leave_one_out(counts: dict, good: str, n: int) -> float:
    """k = n - 1: average the whole-pool vote over the one sample left out."""
    z = n - sum(counts.values())
    total = Fraction(0)
    for left_out, times in list(counts.items()) + [(None, z)]:
        if times == 0:
            continue
        rest = dict(counts)
        if left_out is not None:
            rest[left_out] -= 1
        top = max(rest.values())
        if rest.get(good, 0) == top and top > 0:
            total += Fraction(times, sum(1 for v in rest.values() if v == top))
    return float(total / n)


def test_exact_large_pools_match_closed_forms():
    # Pools of thousands: the exact method prunes classes and trims windows here.
    rng = np.random.default_rng(7)
    for trial in range(6):
        n = int(rng.integers(1000, 6000))
        counts = zipf_pool(rng, n, float(rng.uniform(0.05, 0.6)), int(rng.integers(3, 80)))
        for k, want in ((2, maj2_closed_form(counts, "c0", n)),
                        (n - 1, maj_leave_one_out(counts, "c0", n))):
            got = maj_at_k(counts, "c0", n, k, method="exact")
            assert got.value == pytest.approx(want, abs=1e-12), (trial, n, k)


def test_exact_pruning_agrees_with_no_pruning():
    # tol = 0 keeps every class and every count; the default prunes what
    # bounds prove negligible. They must agree far below tol's 1e-12.
    rng = np.random.default_rng(11)
    for _ in range(8):
        n = int(rng.integers(300, 2000))
        counts = zipf_pool(rng, n, float(rng.uniform(0.1, 0.7)), int(rng.integers(2, 30)))
        for k in (3, 17, n // 3, n - 5):
            pruned = maj_at_k(counts, "c0", n, k, method="exact").value
            whole = maj_at_k(counts, "c0", n, k, method="exact", tol=0.0).value
            assert pruned == pytest.approx(whole, abs=1e-12)


# ---------------------------------------------------------------- Monte Carlo


def mc_tolerance(replicates: int) -> float:
    # A credit lies in [0, 1], so its standard deviation is at most 0.5.
    return 5 * 0.5 / math.sqrt(replicates)


@pytest.mark.parametrize("sampler", ["index", "marginal"])
def test_monte_carlo_samplers_agree_with_exact(sampler):
    rng = np.random.default_rng(3)
    reps = 4000
    for trial in range(6):
        n = int(rng.integers(60, 3000))
        counts = zipf_pool(rng, n, float(rng.uniform(0.1, 0.5)), int(rng.integers(2, 40)))
        pools = AnswerPools.from_counts([counts], ["c0"], [n])
        for k in (2, 5, int(math.sqrt(n)), n // 3):
            exact = maj_at_k(counts, "c0", n, k, method="exact").value
            gen = np.random.default_rng([trial, k])
            if sampler == "index":
                credit = _mc_credits_index(pools, k, gen, reps)
            else:
                plan = _plan_exact(pools, k, est.DEFAULT_TOL)
                credit = _mc_credits_marginal(pools, plan.n_rel, k, gen, reps)
            assert credit.shape == (1, reps)
            assert abs(credit.mean() - exact) <= mc_tolerance(reps), (trial, n, k)


def test_maj_at_k_mc_method_records_itself_and_is_seeded():
    counts, n, k = {"A": 40, "B": 35, "C": 20}, 100, 9
    exact = maj_at_k(counts, "A", n, k, method="exact")
    mc = maj_at_k(counts, "A", n, k, method="mc", mc_replicates=3000, seed=1)
    assert mc.method == "mc" and mc.replicates == 3000
    assert 0 < mc.stderr <= 0.5 / math.sqrt(3000)
    assert abs(mc.value - exact.value) <= mc_tolerance(3000)
    again = maj_at_k(counts, "A", n, k, method="mc", mc_replicates=3000, seed=1)
    other = maj_at_k(counts, "A", n, k, method="mc", mc_replicates=3000, seed=2)
    assert again.value == mc.value
    assert other.value != mc.value


def test_auto_method_choice():
    rng = np.random.default_rng(5)
    counts = zipf_pool(rng, 10_000, 0.3, 200)
    assert maj_at_k(counts, "c0", 10_000, 2).method == "exact"  # cheap
    contested = maj_at_k(counts, "c0", 10_000, 64)  # hundreds of classes compete
    assert contested.method == "mc" and contested.replicates == est.DEFAULT_MC_REPLICATES
    forced = maj_at_k(counts, "c0", 10_000, 64, exact_work_cap=float("inf"))
    assert forced.method == "exact"
    assert abs(forced.value - contested.value) <= mc_tolerance(contested.replicates)
    # A wrong class that dominates settles maj@k = 0 without sampling, even under "mc".
    settled = maj_at_k({"A": 100, "B": 5000}, "A", 6000, 3000, method="mc")
    assert settled.method == "exact" and settled.value == pytest.approx(0.0, abs=1e-12)


def test_batch_equals_single_problem_calls():
    rng = np.random.default_rng(9)
    counts = [zipf_pool(rng, 500, p, 10) for p in (0.1, 0.3, 0.6)] + [{"x": 500}]
    good = ["c0", "c0", "c0", None]
    pools = AnswerPools.from_counts(counts, good, [500] * 4)
    for k in (1, 4, 250, 500):
        batch = maj_at_k_batch(pools, k, rng=mc_rng(0, k), method="exact")
        single = [maj_at_k(c, g, 500, k, method="exact").value for c, g in zip(counts, good)]
        np.testing.assert_allclose(batch.value, single, atol=1e-12)
        assert not batch.is_mc.any()


@pytest.mark.parametrize(
    "args,message",
    [
        (({"A": 2}, "A", 3, 4), "maj@k needs 1 <= k <= n (k samples drawn from a pool of n); "
                                "got k=4, n=3"),
        (({"A": 2, "B": 2}, "A", 3, 2), "class counts add up to 4 > n=3 (problem #0); "
                                        "n must count every sample, abstentions included"),
    ],
)
def test_maj_at_k_errors(args, message):
    with pytest.raises(ValueError) as err:
        maj_at_k(*args)
    assert str(err.value) == message


def test_maj_at_k_rejects_unknown_method():
    with pytest.raises(ValueError, match="maj@k method must be one of"):
        maj_at_k({"A": 1}, "A", 2, 1, method="fast")


# ---------------------------------------------------------------- per-problem table


def hand_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "problem_id": ["q2", "q1", "q1", "q1", "q2", "q1", "q2", "q1"],
            "sample_index": [0, 3, 0, 1, 1, 2, 2, 5],
            "prompt_tokens": [7, 5, 5, 5, 7, 5, 7, 5],
            "completion_tokens": [10, 20, 30, 40, 50, 60, 70, 80],
            "finish_reason": ["stop", "length", "stop", "stop", "length", "stop", "stop", "stop"],
            "answer_class": ["7", "42", "42", None, "8", "41", None, "42"],
            "correct": [False, True, True, False, False, False, False, True],
            "grade_status": ["ok", "ok", "ok", "no_answer", "ok", "ok", "no_answer", "ok"],
            "text": ["..."] * 8,  # other columns are ignored
        }
    )


def test_reduce_per_problem_hand_table():
    got = reduce_per_problem(hand_table())
    assert list(got.columns) == [
        "problem_id", "n", "c", "correct_class", "class_counts", "n_no_answer",
        "n_truncated", "prompt_tokens_total", "completion_tokens_total",
        "completion_tokens_mean", "completion_tokens_sq_mean",
    ]
    q1, q2 = got.iloc[0], got.iloc[1]
    assert q1.problem_id == "q1" and q2.problem_id == "q2"
    assert (q1.n, q1.c, q1.correct_class) == (5, 3, "42")
    assert q1.class_counts == {"42": 3, "41": 1}
    assert (q1.n_no_answer, q1.n_truncated) == (1, 1)
    assert (q1.prompt_tokens_total, q1.completion_tokens_total) == (25, 230)
    assert q1.completion_tokens_mean == pytest.approx(46.0)
    # (20^2 + 30^2 + 40^2 + 60^2 + 80^2) / 5 and (10^2 + 50^2 + 70^2) / 3
    assert (q1.completion_tokens_sq_mean, q2.completion_tokens_sq_mean) == (2580.0, 2500.0)
    assert (q2.n, q2.c, q2.correct_class) == (3, 0, None)
    assert q2.class_counts == {"7": 1, "8": 1}
    assert (q2.n_no_answer, q2.n_truncated, q2.completion_tokens_total) == (1, 1, 130)


def test_reduce_per_problem_max_samples_keeps_first_by_sample_index():
    got = reduce_per_problem(hand_table(), max_samples=2).set_index("problem_id")
    # q1's first two by sample_index are 0 ("42", correct) and 1 (no answer).
    assert (got.loc["q1", "n"], got.loc["q1", "c"], got.loc["q1", "n_no_answer"]) == (2, 1, 1)
    assert got.loc["q1", "class_counts"] == {"42": 1}
    assert got.loc["q1", "completion_tokens_total"] == 70
    assert got.loc["q2", "class_counts"] == {"7": 1, "8": 1}


def test_reduce_per_problem_does_not_mutate_input():
    table = hand_table()
    before = table.copy()
    reduce_per_problem(table, max_samples=3)
    pd.testing.assert_frame_equal(table, before)


def test_reduce_per_problem_rejects_two_correct_classes():
    table = hand_table()
    table.loc[5, "correct"] = True  # q1 sample with class "41"
    with pytest.raises(ValueError) as err:
        reduce_per_problem(table)
    assert str(err.value) == (
        "problem 'q1' has correct samples in more than one answer_class; "
        "the grader must put all correct answers of a problem in one class"
    )


def test_reduce_per_problem_rejects_missing_columns():
    with pytest.raises(ValueError, match=r"lack column\(s\) \['correct'\]"):
        reduce_per_problem(hand_table().drop(columns=["correct"]))


# ---------------------------------------------------------------- curves


def test_compute_curves_values_and_shape():
    problems = reduce_per_problem(graded_table(np.random.default_rng(1), 30, 12))
    ks = [1, 2, 4, 12]
    curves = compute_curves(problems, ks, n_boot=200, seed=3)
    assert list(curves.columns) == [
        "metric", "k", "value", "ci_low", "ci_high", "n_problems", "method",
    ]
    assert list(curves.metric) == ["pass@k"] * 4 + ["maj@k"] * 4 + ["tokens@k"] * 4
    assert list(curves.k) == ks * 3
    assert (curves.n_problems == 30).all()
    by = curves.set_index(["metric", "k"])
    for k in ks:
        want = pass_at_k(problems.n.to_numpy(), problems.c.to_numpy(), k).mean()
        assert by.loc[("pass@k", k), "value"] == pytest.approx(want, abs=1e-12)
        want_maj = np.mean([
            maj_at_k(cc, good, n, k, method="exact").value
            for cc, good, n in zip(problems.class_counts, problems.correct_class, problems.n)
        ])
        assert by.loc[("maj@k", k), "value"] == pytest.approx(want_maj, abs=1e-12)
        assert by.loc[("maj@k", k), "method"] == "exact"  # small pools: always exact
        assert by.loc[("tokens@k", k), "value"] == pytest.approx(
            k * problems.completion_tokens_mean.mean()
        )
    assert (curves.ci_low <= curves.value + 1e-12).all()
    assert (curves.value <= curves.ci_high + 1e-12).all()


def test_compute_curves_without_bootstrap_and_reproducible():
    problems = reduce_per_problem(graded_table(np.random.default_rng(2), 10, 8))
    plain = compute_curves(problems, [1, 8], n_boot=0)
    assert plain.ci_low.isna().all() and plain.ci_high.isna().all()
    a = compute_curves(problems, [1, 8], n_boot=100, seed=4)
    b = compute_curves(problems, [1, 8], n_boot=100, seed=4)
    pd.testing.assert_frame_equal(a, b)


def test_k_larger_than_a_pool_names_the_problem():
    problems = reduce_per_problem(hand_table())
    with pytest.raises(ValueError) as err:
        compute_curves(problems, [1, 4])
    assert str(err.value) == (
        "k=4 is larger than the n=3 samples of problem 'q2'; every k comes from the "
        "one pool of n samples per problem, so set budget.n >= 4 or drop k=4 from budget.ks"
    )


def test_per_problem_estimates_is_tidy_and_matches_the_matrix():
    problems = reduce_per_problem(graded_table(np.random.default_rng(3), 6, 10))
    tidy = per_problem_estimates(problems, [1, 3])
    assert list(tidy.columns) == ["problem_id", "metric", "k", "value", "method"]
    assert len(tidy) == 6 * 2 * 3
    matrix = estimate_matrix(problems, [1, 3])
    maj = tidy[tidy.metric == "maj@k"].pivot(index="problem_id", columns="k", values="value")
    np.testing.assert_allclose(maj.loc[problems.problem_id].to_numpy(), matrix.values["maj@k"])


def test_bootstrap_ci_narrows_with_more_problems():
    rng = np.random.default_rng(8)
    widths = {}
    for P in (40, 640):
        problems = reduce_per_problem(graded_table(rng, P, 6))
        curves = compute_curves(problems, [1], n_boot=1000, seed=0).set_index("metric")
        row = curves.loc["pass@k"]
        assert row.ci_low <= row.value <= row.ci_high
        widths[P] = row.ci_high - row.ci_low
    # Width shrinks like 1/sqrt(P): 4x here; allow sampling slack.
    assert widths[640] < widths[40] / 2.5


def test_bootstrap_ci_matches_normal_theory():
    values = np.random.default_rng(12).random((400, 1))
    lo, hi = bootstrap_ci(values, n_boot=4000, seed=0)
    se = values.std() / math.sqrt(len(values))
    assert hi[0] - lo[0] == pytest.approx(2 * 1.96 * se, rel=0.1)
    const = np.full((50, 2), 0.25)
    lo, hi = bootstrap_ci(const, n_boot=100, seed=0)
    np.testing.assert_allclose([lo, hi], 0.25)
