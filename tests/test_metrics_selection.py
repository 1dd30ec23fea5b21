"""Tests for tts_bench.metrics.selection: best-of-N, weighted vote, PRM step
aggregation, RPC, first finish search, multi-temperature coverage and the
table-level entry point.

Exact estimators are checked against the reference examples, hand values,
and brute force over every k-subset (and, for score ties, every tie order)
of small seeded pools, to 1e-12. Monte Carlo paths are checked against the
exact value within five times their worst-case standard error,
0.5/sqrt(replicates).
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from tts_bench.metrics import maj_at_k
from tts_bench.metrics.selection import (
    aggregate_steps,
    bon_at_k,
    first_finish,
    rpc_at_k,
    rpc_pruned,
    rpc_vote,
    selection_curves,
    union_coverage,
    union_vote_at_k,
    weighted_vote_at_k,
)

TOL = 1e-12


def mc_tol(replicates: int) -> float:
    return 5 * 0.5 / math.sqrt(replicates)


# ---------------------------------------------------------------- brute force


def brute_bon(scores, correct, k):
    """Mean over k-subsets of the mean correctness of the subset's top-scored samples."""
    s = [-math.inf if v is None or math.isnan(v) else v for v in scores]
    total = 0.0
    subsets = list(itertools.combinations(range(len(s)), k))
    for sub in subsets:
        top = max(s[i] for i in sub)
        best = [i for i in sub if s[i] == top]
        total += sum(correct[i] for i in best) / len(best)
    return total / len(subsets)


def brute_bon_tie_orders(scores, correct, k):
    """Average over every order of the tied samples, then over k-subsets (first wins)."""
    blocks: dict = {}
    for i, v in enumerate(scores):
        blocks.setdefault(v, []).append(i)
    keys = sorted(blocks, reverse=True)
    orders = [
        [i for block in combo for i in block]
        for combo in itertools.product(*(itertools.permutations(blocks[v]) for v in keys))
    ]
    total, count = 0.0, 0
    for order in orders:
        rank = {i: r for r, i in enumerate(order)}
        for sub in itertools.combinations(range(len(scores)), k):
            total += correct[min(sub, key=rank.__getitem__)]
            count += 1
    return total / count


def vote_credit(totals: dict, good) -> float:
    if not totals:
        return 0.0
    top = max(totals.values())
    tied = [a for a, v in totals.items() if v == top]
    return 1.0 / len(tied) if good in tied else 0.0


def brute_weighted(classes, scores, good, k):
    total = 0.0
    subsets = list(itertools.combinations(range(len(classes)), k))
    for sub in subsets:
        totals: dict = {}
        for i in sub:
            if classes[i] is not None:
                totals[classes[i]] = totals.get(classes[i], 0.0) + scores[i]
        total += vote_credit(totals, good)
    return total / len(subsets)


def brute_ffs(lengths, correct, reasons, k):
    acc = tok = lat = mtok = mlat = 0.0
    subsets = list(itertools.combinations(range(len(lengths)), k))
    for sub in subsets:
        done = [i for i in sub if reasons[i] != "length"]
        mtok += sum(lengths[i] for i in sub)
        mlat += max(lengths[i] for i in sub)
        if done:
            t = min(lengths[i] for i in done)
            first = [i for i in done if lengths[i] == t]
            acc += sum(correct[i] for i in first) / len(first)
            tok += sum(min(lengths[i], t) for i in sub)
            lat += t
        else:
            tok += sum(lengths[i] for i in sub)
            lat += max(lengths[i] for i in sub)
    m = len(subsets)
    return acc / m, tok / m, lat / m, mtok / m, mlat / m


def random_classes(rng, n, n_classes):
    codes = rng.integers(-1, n_classes, n)
    return [None if c < 0 else f"c{c}" for c in codes]


# ---------------------------------------------------------------- best-of-N

BON_CASES = [
    # scores, correct, k, expected
    ([4, 3, 2, 1], [1, 0, 0, 1], 2, 0.5),  # reference: sorted correctness [1,0,0,1], 3/6
    ([4, 3, 2, 1], [1, 0, 0, 1], 1, 0.5),  # k = 1: c/n
    ([4, 3, 2, 1], [1, 0, 0, 1], 4, 1.0),  # k = n: the top sample
    ([4, 3, 2, 1], [0, 0, 0, 1], 4, 0.0),
    ([0.3, 0.4, 0.9, 0.2], [0, 0, 1, 0], 4, 1.0),  # reference pool: BoN -> B
    ([1, 1, 1, 1], [1, 0, 0, 0], 2, 0.25),  # all tied: c/n at every k
    ([1, 1, 1, 1], [1, 0, 0, 0], 4, 0.25),
    ([2, 1, 1, 0], [0, 1, 0, 1], 2, 0.5 * 3 / 6),  # tied block {1,2}: mean 1/2, weight 3/6
    ([5.0, float("nan"), 1.0], [0, 1, 1], 3, 0.0),  # NaN ranks last
    ([float("nan"), float("nan")], [1, 0], 2, 0.5),  # all unscored: tied
    ([7.0], [1], 1, 1.0),
]


@pytest.mark.parametrize("scores,correct,k,expected", BON_CASES)
def test_bon_hand_values(scores, correct, k, expected):
    got = bon_at_k(scores, correct, k)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, abs=TOL)
    assert brute_bon(scores, correct, k) == pytest.approx(expected, abs=TOL)


def test_bon_matches_enumeration_over_subsets_and_tie_orders():
    rng = np.random.default_rng(7)
    for _ in range(60):
        n = int(rng.integers(1, 8))
        scores = rng.integers(0, 4, n).astype(float).tolist()  # many ties
        correct = rng.integers(0, 2, n).tolist()
        for k in range(1, n + 1):
            want = brute_bon(scores, correct, k)
            assert bon_at_k(scores, correct, k) == pytest.approx(want, abs=TOL)
            if n <= 6:
                assert brute_bon_tie_orders(scores, correct, k) == pytest.approx(want, abs=TOL)


def test_bon_list_of_pools_is_vectorised():
    rng = np.random.default_rng(3)
    pools = [(rng.random(n).tolist(), rng.integers(0, 2, n).tolist()) for n in (3, 5, 9, 4)]
    got = bon_at_k([s for s, _ in pools], [c for _, c in pools], 3)
    assert got.shape == (4,)
    for g, (s, c) in zip(got, pools):
        assert g == pytest.approx(brute_bon(s, c, 3), abs=TOL)
    grid = bon_at_k(np.array([[3, 2, 1], [1, 2, 3]]), np.array([[1, 0, 0], [1, 0, 0]]), 2)
    np.testing.assert_allclose(grid, [2 / 3, 0.0], atol=TOL)


def test_bon_large_pool_matches_fraction():
    n = 10_000
    correct = np.zeros(n)
    correct[[0, 17, 500, 4999, 9000]] = 1
    scores = -np.arange(n, dtype=float)  # rank = index
    for k in (1, 2, 100, 5000, 9999, 10_000):
        want = sum(Fraction(math.comb(n - i - 1, k - 1), math.comb(n, k))
                   for i in np.flatnonzero(correct))
        assert bon_at_k(scores, correct, k) == pytest.approx(float(want), abs=TOL)


def test_bon_k_errors_name_the_problem():
    with pytest.raises(ValueError) as err:
        bon_at_k([1, 2], [1, 0], 3)
    assert str(err.value) == (
        "bon@k needs k <= n (k samples drawn from a pool of n); problem the pool has n=2 < k=3"
    )
    with pytest.raises(ValueError, match=r"problem #1 has n=1 < k=2"):
        bon_at_k([[1, 2], [1]], [[1, 0], [1]], 2)
    with pytest.raises(ValueError, match=r"k >= 1; got k=0"):
        bon_at_k([1, 2], [1, 0], 0)
    with pytest.raises(ValueError, match="differ in pool sizes"):
        bon_at_k([[1, 2], [1]], [[1, 0], [1, 1]], 1)


# ---------------------------------------------------------------- weighted vote

REF_CLASSES = ["A", "A", "B", "C"]
REF_SCORES = [0.3, 0.4, 0.9, 0.2]


def test_weighted_vote_reference_example():
    # Weighted: A = 0.7, B = 0.9 -> B at k = n; majority would say A.
    assert weighted_vote_at_k(REF_CLASSES, REF_SCORES, "B", 4).value == 1.0
    assert weighted_vote_at_k(REF_CLASSES, REF_SCORES, "A", 4).value == 0.0
    assert maj_at_k({"A": 2, "B": 1, "C": 1}, "A", 4, 4).value == 1.0
    est = weighted_vote_at_k(REF_CLASSES, REF_SCORES, "B", 4)
    assert est.is_mc is False and est.stderr == 0.0


WEIGHTED_CASES = [
    # classes, scores, correct class, k, expected
    (REF_CLASSES, REF_SCORES, "B", 1, 0.25),  # k = 1: share of the correct class
    (REF_CLASSES, REF_SCORES, "B", 2, 3 / 6),  # B beats any one other sample
    (REF_CLASSES, REF_SCORES, "A", 3, 1 / 4),  # only AAC wins (0.7 > 0.2)
    (["A", "B"], [0.5, 0.5], "A", 2, 0.5),  # tie: fractional credit
    (["A", "A", "B"], [0.1, 0.2, 0.3], "A", 3, 0.5),  # 0.1 + 0.2 ties 0.3 (tolerance)
    (["A", None, None], [1.0, 5.0, 5.0], "A", 2, 2 / 3),  # abstentions do not vote
    ([None, None], [1.0, 1.0], None, 2, 0.0),  # nobody votes
    (["A", "B"], [0.0, 0.0], "A", 2, 0.5),  # zero weights: present classes tie
    (["A", "B"], [-1.0, float("nan")], "B", 2, 1.0),  # NaN weighs 0 > -1
    (["A", "B", "B"], [0.9, 0.5, 0.5], None, 3, 0.0),  # no correct class
]


@pytest.mark.parametrize("classes,scores,good,k,expected", WEIGHTED_CASES)
def test_weighted_vote_hand_values(classes, scores, good, k, expected):
    got = weighted_vote_at_k(classes, scores, good, k, method="exact")
    assert got.value == pytest.approx(expected, abs=TOL)
    assert weighted_vote_at_k(classes, scores, good, k).value == pytest.approx(expected, abs=TOL)


def test_weighted_vote_exact_matches_enumeration():
    rng = np.random.default_rng(11)
    for _ in range(80):
        n = int(rng.integers(1, 9))
        classes = random_classes(rng, n, int(rng.integers(1, 4)))
        scores = (rng.integers(0, 5, n) / 4).tolist()  # dyadic: sums exact, ties real
        for k in range(1, n + 1):
            got = weighted_vote_at_k(classes, scores, "c0", k, method="exact")
            assert got.value == pytest.approx(brute_weighted(classes, scores, "c0", k), abs=TOL)
            assert not got.is_mc


def test_weighted_vote_equal_scores_is_maj_at_k():
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(2, 10))
        classes = random_classes(rng, n, 3)
        counts = {c: classes.count(c) for c in set(classes) if c is not None}
        for k in range(1, n + 1):
            want = maj_at_k(counts, "c0", n, k, method="exact").value
            got = weighted_vote_at_k(classes, [0.7] * n, "c0", k).value
            assert got == pytest.approx(want, abs=TOL)


def test_weighted_vote_monte_carlo_within_tolerance():
    rng = np.random.default_rng(12)
    reps = 4000
    pools, goods, exact = [], [], []
    for n in (12, 14, 16, 9):
        classes = random_classes(rng, n, 3)
        scores = rng.random(n).tolist()
        pools.append((classes, scores))
        goods.append("c0")
    for k in (2, 5, 8):
        exact = weighted_vote_at_k([c for c, _ in pools], [s for _, s in pools], goods, k,
                                   method="exact")
        mc = weighted_vote_at_k([c for c, _ in pools], [s for _, s in pools], goods, k,
                                method="mc", seed=1, replicates=reps)
        assert mc.is_mc.all() and not exact.is_mc.any()
        assert np.all(np.abs(mc.value - exact.value) <= mc_tol(reps))
        assert np.all(mc.stderr <= 0.5 / math.sqrt(reps) + 1e-12)
        again = weighted_vote_at_k([c for c, _ in pools], [s for _, s in pools], goods, k,
                                   method="mc", seed=1, replicates=reps)
        np.testing.assert_array_equal(mc.value, again.value)  # seeded


def test_weighted_vote_auto_switches_to_mc_on_large_pools():
    rng = np.random.default_rng(2)
    n = 200
    classes = ["A" if u < 0.5 else "B" for u in rng.random(n)]
    scores = rng.random(n)
    est = weighted_vote_at_k(classes, scores, "A", 10, replicates=500)
    assert est.is_mc and 0.0 <= est.value <= 1.0 and est.stderr > 0
    full = weighted_vote_at_k(classes, scores, "A", n)  # k = n: one subset, exact
    assert not full.is_mc
    a = sum(s for c, s in zip(classes, scores) if c == "A")
    b = sum(s for c, s in zip(classes, scores) if c == "B")
    assert full.value == (1.0 if a > b else 0.0)


def test_weighted_vote_errors():
    with pytest.raises(ValueError, match=r"problem the pool has n=4 < k=5"):
        weighted_vote_at_k(REF_CLASSES, REF_SCORES, "A", 5)
    with pytest.raises(ValueError, match="method must be one of"):
        weighted_vote_at_k(REF_CLASSES, REF_SCORES, "A", 2, method="fast")
    with pytest.raises(ValueError, match="limit is"):
        weighted_vote_at_k(["A"] * 60, [1.0] * 60, "A", 30, method="exact")


# ---------------------------------------------------------------- PRM steps

STEP_CASES = [
    ("min", 0.5),
    ("prod", 0.9 * 0.5 * 0.8),
    ("last", 0.8),
    ("mean", (0.9 + 0.5 + 0.8) / 3),
]


@pytest.mark.parametrize("how,expected", STEP_CASES)
def test_aggregate_steps(how, expected):
    assert aggregate_steps([0.9, 0.5, 0.8], how) == pytest.approx(expected, abs=TOL)
    got = aggregate_steps([[0.9, 0.5, 0.8], None, [], [0.3]], how)
    assert got[0] == pytest.approx(expected, abs=TOL)
    assert np.isnan(got[1]) and np.isnan(got[2]) and got[3] == pytest.approx(0.3)
    series = aggregate_steps(pd.Series([[0.9, 0.5, 0.8], None]), how)
    assert series[0] == pytest.approx(expected, abs=TOL) and np.isnan(series[1])


def test_aggregate_steps_errors():
    with pytest.raises(ValueError, match=r"how must be one of \('min', 'prod', 'last', 'mean'\)"):
        aggregate_steps([[0.5]], "max")


# ---------------------------------------------------------------- RPC

RPC_CLASSES = ["A", "A", "B", "B"]
RPC_LOGPROBS = [-0.10, -0.50, -0.05, -1.20]


def test_rpc_reference_example():
    a = math.exp(-0.10) + math.exp(-0.50)
    b = math.exp(-0.05) + math.exp(-1.20)
    # The reference rounds A = 1.5114 to 1.512; B = 1.2524.
    assert a == pytest.approx(1.512, abs=1e-3) and b == pytest.approx(1.252, abs=1e-3)
    assert rpc_vote(RPC_CLASSES, RPC_LOGPROBS) == "A"
    assert rpc_at_k(RPC_CLASSES, RPC_LOGPROBS, "A", 4).value == 1.0
    # k = 2: A wins AA and the B(-1.20) pairs; vs B(-0.05) A(-0.10) loses and A(-0.50) loses.
    assert rpc_at_k(RPC_CLASSES, RPC_LOGPROBS, "A", 2).value == pytest.approx(3 / 6, abs=TOL)


def test_rpc_vote_rules():
    assert rpc_vote(["A", None, "B"], [-1.0, 0.0, -0.5]) == "B"  # None abstains
    assert rpc_vote(["A", "B"], [None, -3.0]) == "B"  # missing logprob abstains
    assert rpc_vote([None, None], [-1.0, -1.0]) is None
    assert rpc_vote(["A", "B"], [-0.5, -0.5]) == "A"  # tie: first seen
    # Distinct samples: the two identical A completions count once.
    classes, lps = ["A", "A", "B"], [-0.2, -0.2, -0.1]
    assert rpc_vote(classes, lps) == "A"
    assert rpc_vote(classes, lps, sample_keys=["x", "x", "y"]) == "B"
    assert rpc_at_k(classes, lps, "B", 3, sample_keys=["x", "x", "y"]).value == 1.0
    assert rpc_at_k(classes, lps, "B", 3).value == 0.0


def test_rpc_at_k_matches_enumeration():
    rng = np.random.default_rng(21)
    for _ in range(40):
        n = int(rng.integers(1, 9))
        classes = random_classes(rng, n, 3)
        lps = (-rng.random(n) * 2).tolist()
        p = np.exp(lps).tolist()
        for k in range(1, n + 1):
            got = rpc_at_k(classes, lps, "c0", k, method="exact").value
            assert got == pytest.approx(brute_weighted(classes, p, "c0", k), abs=TOL)


def test_rpc_pruning_drops_the_low_cluster():
    high = [-0.05, -0.08, -0.10, -0.06, -0.07, -0.09, -0.04, -0.11]
    low = [-1.6, -1.8, -1.5, -2.0]
    drop = rpc_pruned(high + low)
    assert drop.tolist() == [False] * 8 + [True] * 4
    p = np.exp(high + low)
    assert (p[drop] < p.mean()).all()
    # Many low-probability B paths outvote C until they are pruned.
    pool = ["A"] * 2 + ["B"] * 6 + ["C"] * 4
    lp = [-0.05, -0.06] + [-1.6, -1.7, -1.8, -1.5, -1.65, -1.75] + [-0.2, -0.25, -0.22, -0.3]
    assert rpc_vote(pool, lp) == "C"
    assert rpc_pruned(lp)[2:8].all()
    # Few samples or no spread: nothing dropped.
    assert not rpc_pruned([-0.1, -2.0, -3.0]).any()
    assert not rpc_pruned([-0.5] * 6).any()
    assert not rpc_pruned([-0.1, None, -2.0, -3.0]).any()


def test_rpc_at_k_with_pruning_matches_per_subset_enumeration():
    rng = np.random.default_rng(4)
    for _ in range(3):
        n = 7
        classes = random_classes(rng, n, 3)
        lps = np.concatenate([-rng.random(4) * 0.2, -1.5 - rng.random(3)]).tolist()
        for k in (5, 7):
            want = 0.0
            subsets = list(itertools.combinations(range(n), k))
            for sub in subsets:
                drop = rpc_pruned([lps[i] for i in sub])
                totals: dict = {}
                for i, d in zip(sub, drop):
                    if classes[i] is not None and not d:
                        totals[classes[i]] = totals.get(classes[i], 0.0) + math.exp(lps[i])
                want += vote_credit(totals, "c0")
            got = rpc_at_k(classes, lps, "c0", k, method="exact", prune=True).value
            assert got == pytest.approx(want / len(subsets), abs=TOL)


def test_rpc_at_k_monte_carlo_within_tolerance():
    rng = np.random.default_rng(8)
    reps = 4000
    classes = random_classes(rng, 15, 3)
    lps = (-rng.random(15) * 2).tolist()
    for k in (3, 9, 14):
        exact = rpc_at_k(classes, lps, "c0", k, method="exact").value
        mc = rpc_at_k(classes, lps, "c0", k, method="mc", replicates=reps, seed=3)
        assert mc.is_mc and abs(mc.value - exact) <= mc_tol(reps)


# ---------------------------------------------------------------- first finish


def test_first_finish_reference_example():
    got = first_finish([1200, 800, 1500, 950], [0, 1, 0, 1], ["stop"] * 4, 4)
    assert got.accuracy == 1.0  # the 800-token sample
    assert got.tokens == 3200.0  # 4 streams x 800
    assert got.latency == 800.0
    assert got.majority_tokens == 4450.0
    assert got.majority_latency == 1500.0


FFS_CASES = [
    # lengths, correct, finish reasons, k
    ([1200, 800, 1500, 950], [0, 1, 0, 1], ["stop"] * 4, 1),
    ([1200, 800, 1500, 950], [0, 1, 0, 1], ["stop"] * 4, 2),
    ([100, 100, 100], [1, 0, 0], ["stop"] * 3, 2),  # all tied: random tie-break
    ([300, 300, 300], [1, 1, 0], ["length"] * 3, 2),  # all truncated: failure
    ([50, 400, 200, 400], [1, 1, 0, 1], ["length", "length", "stop", "stop"], 2),
    ([50, 400, 200, 400], [1, 1, 0, 1], ["length", "length", "stop", "stop"], 4),
]


@pytest.mark.parametrize("lengths,correct,reasons,k", FFS_CASES)
def test_first_finish_hand_cases_match_enumeration(lengths, correct, reasons, k):
    got = first_finish(lengths, correct, reasons, k)
    np.testing.assert_allclose(got, brute_ffs(lengths, correct, reasons, k), atol=TOL, rtol=0)


def test_first_finish_edge_values():
    allcut = first_finish([300, 300, 300], [1, 1, 0], ["length"] * 3, 2)
    assert allcut.accuracy == 0.0 and allcut.tokens == 600.0 and allcut.latency == 300.0
    tied = first_finish([100, 100, 100], [1, 0, 0], ["stop"] * 3, 3)
    assert tied.accuracy == pytest.approx(1 / 3, abs=TOL)
    one = first_finish([10, 20, 30], [1, 0, 0], ["stop", "stop", "length"], 1)
    assert one.accuracy == pytest.approx(1 / 3) and one.tokens == pytest.approx(20.0)
    with pytest.raises(ValueError, match=r"ffs@k needs k <= n .* n=4 < k=5"):
        first_finish([1200, 800, 1500, 950], [0, 1, 0, 1], ["stop"] * 4, 5)
    with pytest.raises(ValueError, match="finite lengths >= 0"):
        first_finish([-1, 5], [0, 1], ["stop"] * 2, 1)


def test_first_finish_matches_enumeration_on_random_pools():
    rng = np.random.default_rng(99)
    pools = []
    for _ in range(50):
        n = int(rng.integers(1, 9))
        lengths = rng.integers(1, 6, n) * 100  # ties
        reasons = np.where(rng.random(n) < 0.3, "length", "stop")
        correct = rng.integers(0, 2, n)
        pools.append((lengths.tolist(), correct.tolist(), reasons.tolist()))
        for k in range(1, n + 1):
            got = first_finish(lengths, correct, reasons, k)
            np.testing.assert_allclose(got, brute_ffs(lengths, correct, reasons, k),
                                       atol=1e-9, rtol=TOL)
    # A list of pools gives the same values, vectorised.
    batch = first_finish([p[0] for p in pools], [p[1] for p in pools], [p[2] for p in pools], 1)
    for j, p in enumerate(pools):
        np.testing.assert_allclose([v[j] for v in batch], brute_ffs(*p, 1), atol=1e-9, rtol=TOL)


# ---------------------------------------------------------------- temperatures


def test_union_coverage_reference_example():
    groups = {0.6: (8, 0), 0.9: (8, 0), 1.2: (8, 2)}
    assert union_coverage(groups, {0.6: 8}) == 0.0  # single-T pass@8 at 0.6
    assert union_coverage(groups, {0.6: 8, 0.9: 8, 1.2: 8}) == 1.0


def test_union_coverage_matches_enumeration():
    groups = {0.6: (6, 1), 0.9: (5, 2), 1.2: (7, 0)}
    ks = {0.6: 2, 0.9: 1, 1.2: 3}
    fail = Fraction(1)
    for t, (n, c) in groups.items():
        fail *= Fraction(math.comb(n - c, ks[t]), math.comb(n, ks[t]))
    assert union_coverage(groups, ks) == pytest.approx(float(1 - fail), abs=TOL)
    vec = union_coverage({0.6: (np.array([6, 6]), np.array([1, 0])), 0.9: (5, 2)},
                         {0.6: 2, 0.9: 1})
    np.testing.assert_allclose(vec, [1 - (10 / 15) * (3 / 5), 1 - 3 / 5], atol=TOL)
    assert union_coverage(groups, {0.6: 0}) == 0.0  # nothing drawn


def test_union_coverage_errors():
    with pytest.raises(ValueError, match=r"k=9 samples at T=0.6 exceed the n=8 drawn there"):
        union_coverage({0.6: (8, 1)}, {0.6: 9})
    with pytest.raises(ValueError, match=r"\(problem #1\)"):
        union_coverage({0.6: (np.array([8, 4]), np.array([1, 1]))}, {0.6: 5})
    with pytest.raises(ValueError, match=r"no samples for temperature\(s\) \[0.7\]"):
        union_coverage({0.6: (8, 1)}, {0.7: 2})


def test_union_vote_exact_and_monte_carlo():
    pool = {0.6: ["A", "B", "B", None], 0.9: ["A", "A", "C"], 1.2: ["B", "A", "C", "C"]}
    ks = {0.6: 2, 0.9: 1, 1.2: 2}
    per_t = [
        [[pool[t][i] for i in sub] for sub in itertools.combinations(range(len(pool[t])), ks[t])]
        for t in pool
    ]
    want, count = 0.0, 0
    for parts in itertools.product(*per_t):
        totals: dict = {}
        for lab in itertools.chain(*parts):
            if lab is not None:
                totals[lab] = totals.get(lab, 0) + 1
        want += vote_credit(totals, "A")
        count += 1
    exact = union_vote_at_k(pool, "A", ks)
    assert not exact.is_mc and exact.value == pytest.approx(want / count, abs=TOL)
    reps = 4000
    mc = union_vote_at_k(pool, "A", ks, method="mc", replicates=reps, seed=5)
    assert mc.is_mc and abs(mc.value - exact.value) <= mc_tol(reps)
    batch = union_vote_at_k([pool, pool], ["A", "C"], ks)
    assert batch.value[0] == pytest.approx(exact.value, abs=TOL)
    with pytest.raises(ValueError, match=r"k=5 samples at T=0.6 exceed the n=4 of problem #0"):
        union_vote_at_k(pool, "A", {0.6: 5})


# ---------------------------------------------------------------- table entry point


def graded(rng, problems=4, samples=6, *, with_scores=True, with_logprob=True, steps=False):
    rows = []
    for p in range(problems):
        for i in range(samples):
            cls = rng.choice(["right", "w1", "w2", None])
            rows.append({
                "problem_id": f"p{p}",
                "sample_index": i,
                "correct": cls == "right",
                "answer_class": cls,
                "completion_tokens": int(rng.integers(1, 5)) * 100,
                "prompt_tokens": 20,
                "finish_reason": "length" if rng.random() < 0.2 else "stop",
                "temperature": 0.8,
                "latency_s": None,
                "mean_logprob": float(-rng.random()) if with_logprob else None,
                **({"verifier_score": float(rng.integers(0, 4) / 4)} if with_scores else {}),
                **({"step_scores": [float(x) for x in rng.random(3)]} if steps else {}),
            })
    return pd.DataFrame(rows)


def test_selection_curves_matches_the_estimators():
    rng = np.random.default_rng(0)
    df = graded(rng)
    # Shuffle rows: the entry point orders pools by problem and sample_index.
    out = selection_curves(df.sample(frac=1.0, random_state=1), ks=[1, 3, 6])
    assert list(out.columns) == ["problem_id", "metric", "k", "value", "method", "score",
                                 "tokens", "latency", "majority_tokens", "majority_latency"]
    assert set(out["metric"]) == {"bon@k", "weighted@k", "rpc@k", "ffs@k"}
    assert len(out) == 4 * 4 * 3
    for pid, g in df.groupby("problem_id"):
        g = g.sort_values("sample_index")
        cls = [c if isinstance(c, str) else None for c in g["answer_class"]]  # NaN: no answer
        for k in (1, 3, 6):
            row = out[(out.problem_id == pid) & (out.k == k)].set_index("metric")
            assert row.loc["bon@k", "value"] == pytest.approx(
                brute_bon(g["verifier_score"].tolist(), g["correct"].astype(int).tolist(), k),
                abs=TOL)
            assert row.loc["weighted@k", "value"] == pytest.approx(
                brute_weighted(cls, g["verifier_score"].tolist(), "right", k), abs=TOL)
            assert row.loc["rpc@k", "value"] == pytest.approx(
                brute_weighted(cls, np.exp(g["mean_logprob"]).tolist(), "right", k), abs=TOL)
            want = brute_ffs(g["completion_tokens"].tolist(), g["correct"].astype(int).tolist(),
                             g["finish_reason"].tolist(), k)
            got = row.loc["ffs@k", ["value", "tokens", "latency", "majority_tokens",
                                    "majority_latency"]].to_numpy(dtype=float)
            np.testing.assert_allclose(got, want, atol=1e-9)
            assert row.loc["bon@k", "score"] == "verifier_score"
            assert np.isnan(row.loc["bon@k", "tokens"])
    assert (out["method"] == "exact").all()


def test_selection_curves_skips_metrics_without_inputs():
    rng = np.random.default_rng(1)
    df = graded(rng, with_scores=False, with_logprob=False)
    out = selection_curves(df, ks=[2])
    assert set(out["metric"]) == {"ffs@k"}
    df = graded(rng, with_scores=False, steps=True)
    out = selection_curves(df, ks=[2], step_aggregate="min")
    assert set(out["metric"]) == {"bon@k", "weighted@k", "rpc@k", "ffs@k"}
    assert set(out.loc[out.metric == "bon@k", "score"]) == {"step_scores:min"}


def test_selection_curves_monte_carlo_is_seeded_and_flagged():
    rng = np.random.default_rng(2)
    df = graded(rng, problems=2, samples=40)
    a = selection_curves(df, ks=[20], seed=4, replicates=50)
    b = selection_curves(df, ks=[20], seed=4, replicates=50)
    pd.testing.assert_frame_equal(a, b)
    assert set(a.loc[a.metric.isin(["weighted@k", "rpc@k"]), "method"]) == {"mc"}
    assert set(a.loc[a.metric.isin(["bon@k", "ffs@k"]), "method"]) == {"exact"}


def test_selection_curves_k_larger_than_n_names_the_problem():
    rng = np.random.default_rng(3)
    df = graded(rng, problems=2, samples=4)
    df = df[~((df.problem_id == "p1") & (df.sample_index == 3))]
    with pytest.raises(ValueError, match=r"k=4 is larger than the n=3 samples of problem 'p1'"):
        selection_curves(df, ks=[4])


def test_rpc_distinct_keys_take_the_sorting_path_with_the_same_values():
    rng = np.random.default_rng(31)
    for _ in range(20):
        n = int(rng.integers(2, 9))
        classes = random_classes(rng, n, 3)
        lps = (-rng.random(n)).tolist()
        for k in range(1, n + 1):
            plain = rpc_at_k(classes, lps, "c0", k, method="exact").value
            keyed = rpc_at_k(classes, lps, "c0", k, method="exact", sample_keys=list(range(n)))
            assert keyed.value == pytest.approx(plain, abs=TOL)


@pytest.mark.parametrize("n,k", [(12, 2), (5, 2), (6, 4)])  # rejection; random keys
def test_random_subsets_are_uniform(n, k):
    from tts_bench.metrics.selection.vote import _random_subsets

    draws = 60_000
    rows = _random_subsets(np.full(draws, n), k, np.random.default_rng(0))
    assert (np.sort(rows, axis=1)[:, 1:] != np.sort(rows, axis=1)[:, :-1]).all()
    assert rows.min() >= 0 and rows.max() < n
    subsets = math.comb(n, k)
    codes = (np.sort(rows, axis=1) * n ** np.arange(k)).sum(axis=1)
    _, counts = np.unique(codes, return_counts=True)
    assert counts.size == subsets
    p = 1 / subsets
    assert np.all(np.abs(counts / draws - p) <= 5 * math.sqrt(p * (1 - p) / draws))


def test_particle_resampling_reference_example():
    # metrics.md section 11: r = [0.9, 0.6, 0.3] -> [0.824, 0.137, 0.039]
    from tts_bench.metrics.selection import particle_resample_probs

    p = particle_resample_probs([0.9, 0.6, 0.3])
    assert p == pytest.approx([0.824, 0.137, 0.039], abs=5e-4)
    odds = np.array([9.0, 1.5, 3 / 7])
    assert p == pytest.approx(odds / odds.sum(), rel=1e-12)
    flat = particle_resample_probs([0.9, 0.6, 0.3], tau=1e6)
    assert flat == pytest.approx([1 / 3] * 3, abs=1e-5)  # high tau: uniform
    with pytest.raises(ValueError, match="tau > 0"):
        particle_resample_probs([0.5], tau=0)


def test_multi_temperature_coverage_reference_example():
    # metrics.md section 10: 8 samples at each of T = 0.6, 0.9, 1.2, only
    # T = 1.2 has 2 correct: pass@8 at 0.6 is 0, union coverage with 8 each is 1.
    from tts_bench.metrics.selection import multi_temperature_coverage

    pools = {t: pd.DataFrame({"problem_id": ["p"], "n": [8], "c": [c]})
             for t, c in ((0.6, 0), (0.9, 0), (1.2, 2))}
    table = multi_temperature_coverage(pools, [1, 8]).set_index("k_per_temperature")
    assert table.loc[8, "union_coverage"] == 1.0
    assert table.loc[8, "total_samples"] == 24
    assert np.isnan(table.loc[8, "pass@total at T=0.6"])  # 24 > the 8 drawn
    assert table.loc[1, "union_coverage"] == pytest.approx(2 / 8)
    assert table.loc[1, "pass@total at T=1.2"] == pytest.approx(1 - math.comb(6, 3) / math.comb(8, 3))
