"""Tests for the scaling analytics: coverage law, saturation, ARISE, s1, difficulty, paired comparison.

Worked examples come from shared/reference/metrics.md (sections 2, 6, 7, 8,
14) and are checked exactly (to rounding); fits are checked on curves
generated from known parameters, without and with seeded noise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tts_bench.metrics import per_problem_estimates, reduce_per_problem
from tts_bench.metrics.compare import compare_runs, summarize_comparison
from tts_bench.metrics.difficulty import (
    compute_optimal_by_difficulty,
    difficulty_bins,
    oracle_difficulty,
    predicted_difficulty,
)
from tts_bench.metrics.scaling import (
    CoverageLaw,
    arise,
    arise_adaptive_runs,
    arise_needs_another_run,
    arise_per_problem,
    coefficient_of_variation,
    fit_coverage_law,
    s1_metrics,
    saturation_budget,
    saturation_point,
)

A_REF, B_REF = -1.33, -0.43
KS = np.unique(np.round(np.logspace(0, 4, 30)).astype(int))  # 1 .. 10,000


def law(a: float, b: float) -> CoverageLaw:
    return CoverageLaw(a=a, b=b, r2=1.0, rmse=0.0, n_used=0, n_excluded=0, method="given",
                       converged=True)


# ---------------------------------------------------------------- coverage law


def test_coverage_law_reference_values():
    c100, c10k = law(A_REF, B_REF).predict([100, 10_000])
    assert round(c100, 3) == 0.832
    assert round(c10k, 3) == 0.975
    assert law(A_REF, B_REF).predict(1) == pytest.approx(math.exp(A_REF))


@pytest.mark.parametrize("method", ["lm", "loglog"])
def test_fit_recovers_noise_free_parameters(method):
    fit = fit_coverage_law(KS, law(A_REF, B_REF).predict(KS), method=method)
    assert fit.a == pytest.approx(A_REF, abs=1e-9)
    assert fit.b == pytest.approx(B_REF, abs=1e-9)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.rmse < 1e-12
    assert (fit.n_used, fit.n_excluded, fit.converged) == (len(KS), 0, True)


def test_fit_recovers_parameters_under_noise():
    # Noise sd 0.003 in coverage (about a 1,000-problem benchmark's sampling noise at c ~ 0.9).
    # Tolerances: |a - a0| <= 0.03 and |b - b0| <= 0.01, about 5 standard deviations of the fit
    # (measured over 200 seeds: sd 0.0062 for a, 0.0018 for b; worst 0.018 and 0.005).
    rng = np.random.default_rng(1234)
    clean = law(A_REF, B_REF).predict(KS)
    noisy = np.clip(clean + rng.normal(0.0, 0.003, KS.size), 0.0, 1.0)
    fit = fit_coverage_law(KS, noisy)
    assert fit.converged
    assert abs(fit.a - A_REF) <= 0.03
    assert abs(fit.b - B_REF) <= 0.01
    assert fit.r2 > 0.999
    # Levenberg-Marquardt minimises the squared error in coverage, so it never does worse there
    # than the log-log start it refines.
    start = fit_coverage_law(KS, noisy, method="loglog")
    assert fit.rmse <= start.rmse + 1e-15


def test_fit_excludes_zero_and_one():
    ks = np.array([1, 2, 4, 8, 16, 32, 64])
    cov = law(-2.0, -0.5).predict(ks)
    cov[0], cov[-1] = 0.0, 1.0
    fit = fit_coverage_law(ks, cov)
    assert (fit.n_used, fit.n_excluded) == (5, 2)
    assert fit.a == pytest.approx(-2.0, abs=1e-9)
    assert fit.b == pytest.approx(-0.5, abs=1e-9)


def test_fit_rejects_too_few_points_and_bad_method():
    with pytest.raises(ValueError, match="at least two points with 0 < coverage < 1"):
        fit_coverage_law([1, 2, 4], [0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="method must be one of"):
        fit_coverage_law([1, 2], [0.2, 0.3], method="gauss")


# ---------------------------------------------------------------- saturation


def test_saturation_budget_reference():
    assert saturation_budget(0.2, 0.01) == 14
    # Its meaning: the 15th sample gains p (1 - p)^14 < eps, the 14th did not.
    assert 0.2 * 0.8**14 < 0.01 <= 0.2 * 0.8**13


@pytest.mark.parametrize("p, expected", [(0.005, 1), (0.0, 1), (1.0, 1), (0.5, 6)])
def test_saturation_budget_edges(p, expected):
    # p = 0.5, eps = 0.01: ln(0.02)/ln(0.5) = 5.64 -> 6.
    assert saturation_budget(p, 0.01) == expected


def test_saturation_budget_vectorised_and_matches_curve_rule():
    ps = np.array([0.05, 0.2, 0.5, 0.9])
    got = saturation_budget(ps, 0.01)
    k = np.arange(1, 500)
    for p, n_star in zip(ps, got):
        assert saturation_point(k, 1 - (1 - p) ** k, 0.01) == n_star


def test_saturation_point_on_sparse_grid_and_fitted_law():
    ks = [1, 2, 4, 8]
    values = [0.5, 0.7, 0.8, 0.84]  # gains per sample 0.2, 0.05, 0.01
    assert saturation_point(ks, values, 0.06) == 2
    assert saturation_point(ks, values, 0.15) == 2
    assert saturation_point(ks, values, 0.001) is None
    fitted = law(A_REF, B_REF)
    n_star = fitted.saturation(1e-4)
    assert fitted.predict(n_star + 1) - fitted.predict(n_star) < 1e-4
    assert fitted.predict(n_star) - fitted.predict(n_star - 1) >= 1e-4


# ---------------------------------------------------------------- ARISE


def arise_reference_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "problem_id": [1, 1, 1, 2, 2, 2],
            "level": [0, 1, 2, 0, 1, 2],
            "accuracy": [0, 1, 1, 1, 0, 1],
            "tokens": [1000, 2000, 3000, 1000, 3000, 4000],
        }
    )


def test_arise_reference_example():
    per = arise_per_problem(arise_reference_table())
    assert per.loc[1] == 0.5
    assert per.loc[2] == -2.25
    assert arise(arise_reference_table()) == -0.875


def test_arise_orders_levels_averages_runs_and_skips():
    table = arise_reference_table().sample(frac=1.0, random_state=0)  # level order from the column
    assert arise(table) == -0.875
    runs = pd.DataFrame(
        {
            "problem_id": ["x"] * 5 + ["y"],
            "level": [0, 0, 1, 1, 2, 0],
            "accuracy": [0.0, 1.0, 1.0, 1.0, 0.0, 1.0],
            "tokens": [100, 300, 400, 400, 0, 50],
        }
    )
    per = arise_per_problem(runs)
    # x: level means a = [0.5, 1, 0], T = [200, 400, 0]; +0.5 * 200/400; the last term has T = 0.
    assert per.loc["x"] == 0.25
    assert per.loc["y"] == 0.0  # a single level scores 0
    assert arise(runs) == 0.125


def test_arise_custom_columns_and_missing_columns():
    t = arise_reference_table().rename(columns={"tokens": "completion_tokens"})
    assert arise(t, tokens_col="completion_tokens") == -0.875
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['tokens'\]"):
        arise(t)


@pytest.mark.parametrize(
    "acc, tok, expected",
    [
        ([1, 1], [100, 100], True),  # fewer than 3 runs
        ([1, 1, 1], [100, 100, 100], False),  # CV 0
        ([1, 0, 1], [100, 100, 100], True),  # CV(acc) = 0.707
        ([1, 1, 1], [100, 200, 300], False),  # CV(tokens) = 0.408
        ([1, 0] * 5, [100] * 10, False),  # 10 runs: stop whatever the CV
        ([1, 0, 1, 1, 1, 1, 1, 1, 1], [100] * 9, False),  # CV(acc) = 0.354
    ],
)
def test_arise_adaptive_rule(acc, tok, expected):
    assert arise_needs_another_run(acc, tok) is expected


def test_coefficient_of_variation_is_population_cv():
    assert coefficient_of_variation([1, 0, 1]) == pytest.approx(
        np.std([1, 0, 1]) / (2 / 3 + 1e-8)
    )
    assert coefficient_of_variation([5.0]) == 0.0
    assert coefficient_of_variation([0, 0, 0]) == 0.0


def test_arise_adaptive_runs_plans_per_problem_and_level():
    runs = pd.DataFrame(
        {
            "problem_id": ["a"] * 3 + ["b"] * 3 + ["b"] * 2,
            "level": [0, 0, 0, 0, 0, 0, 1, 1],
            "accuracy": [1, 1, 1, 1, 0, 1, 1, 1],
            "tokens": [100, 110, 90, 100, 100, 100, 200, 200],
        }
    )
    plan = arise_adaptive_runs(runs).set_index(["problem_id", "level"])
    assert plan["runs"].to_dict() == {("a", 0): 3, ("b", 0): 3, ("b", 1): 2}
    assert plan["need_more"].to_dict() == {("a", 0): False, ("b", 0): True, ("b", 1): True}
    assert plan.loc[("b", 0), "accuracy"] == pytest.approx(2 / 3)
    assert plan.loc[("a", 0), "tokens"] == 100.0
    # The planner's means feed ARISE directly.
    assert arise(plan.reset_index()) == pytest.approx(arise(runs))


# ---------------------------------------------------------------- s1


def test_s1_reference_example():
    runs = pd.DataFrame(
        {"budget": [1000, 2000, 4000], "thinking_tokens": [1000, 2000, 4000],
         "accuracy": [0.30, 0.40, 0.45]}
    )
    m = s1_metrics(runs)
    assert round(m.scaling, 2) == 5.83
    assert m.scaling == pytest.approx(35 / 6)  # (10/1000 + 15/3000 + 5/2000) / 3 * 1000
    assert m.performance == pytest.approx(45.0)
    assert m.control == 1.0
    assert (m.n_runs, m.n_pairs) == (3, 3)


def test_s1_control_bounds_and_equal_lengths():
    runs = pd.DataFrame(
        {"budget": [1000, 2000, 4000, 4000], "thinking_tokens": [900, 2100, 4500, 4500],
         "accuracy": [0.2, 0.3, 0.3, 0.4]}
    )
    m = s1_metrics(runs)
    assert m.control == 0.25  # only 2100 lies in [1000, 4000]: 900 is below, 4500 above
    assert m.n_pairs == 5  # the two runs at 4500 tokens form no pair
    assert s1_metrics(runs, a_min=0, a_max=5000).control == 1.0
    by_budget = s1_metrics(runs.assign(thinking_tokens=[1000, 2000, 4000, 4000]))
    assert by_budget.control == 1.0


# ---------------------------------------------------------------- difficulty


def test_difficulty_bins_equal_quantiles_and_orientation():
    scores = pd.Series(np.linspace(1.0, 0.0, 10), index=[f"p{i}" for i in range(10)])
    levels = difficulty_bins(scores)
    assert levels.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # 1 = easiest
    assert levels.index.name == "problem_id"


def test_difficulty_bins_ties_deterministic():
    scores = pd.Series([0, 0, 0, 0, 0.5, 0.5, 1, 1, 1, 0.25], index=[f"p{i}" for i in range(10)])
    together = difficulty_bins(scores)
    assert together.to_dict() == {"p0": 5, "p1": 5, "p2": 5, "p3": 5, "p4": 3, "p5": 3,
                                  "p6": 1, "p7": 1, "p8": 1, "p9": 3}
    split = difficulty_bins(scores, ties="split")
    assert split.value_counts().sort_index().tolist() == [2, 2, 2, 2, 2]
    assert split.to_dict() == {"p0": 4, "p1": 4, "p2": 5, "p3": 5, "p4": 2, "p5": 3,
                               "p6": 1, "p7": 1, "p8": 2, "p9": 3}
    shuffled = scores.sample(frac=1.0, random_state=3)
    assert difficulty_bins(shuffled, ties="split").sort_index().equals(split.sort_index())
    assert difficulty_bins(shuffled).sort_index().equals(together.sort_index())


def test_oracle_and_predicted_difficulty():
    problems = pd.DataFrame({"problem_id": ["a", "b", "c", "d", "e"], "n": 4, "c": [4, 3, 2, 1, 0]})
    assert oracle_difficulty(problems).tolist() == [1, 2, 3, 4, 5]
    scored = pd.DataFrame({"problem_id": ["a", "a", "b", "b"], "score": [0.9, 0.7, 0.1, 0.3]})
    assert predicted_difficulty(scored, n_bins=2).to_dict() == {"a": 1, "b": 2}


def planted_table(seed: int = 0):
    """300 problems, 3 budgets, 3 strategies; strategy best_of[level] wins in each level."""
    rng = np.random.default_rng(seed)
    pids = [f"q{i:03d}" for i in range(300)]
    levels = pd.Series(np.repeat([1, 2, 3], 100), index=pids)
    best_of = {1: "majority", 2: "best_of_n", 3: "beam"}
    rows = []
    for pid, level in levels.items():
        for budget in (4, 16, 64):
            for strategy in ("beam", "best_of_n", "majority"):
                mean = 0.7 if strategy == best_of[level] else 0.4
                value = float(np.clip(mean + rng.normal(0, 0.2), 0, 1))
                rows.append((pid, budget, strategy, value))
    table = pd.DataFrame(rows, columns=["problem_id", "budget", "strategy", "value"])
    return table, levels, best_of


def test_compute_optimal_recovers_planted_strategy():
    table, levels, best_of = planted_table()
    out = compute_optimal_by_difficulty(table, "budget", "strategy", "value", levels, folds=2, seed=0)
    assert len(out) == 9
    for row in out.itertuples(index=False):
        assert row.choice_fold_0 == row.choice_fold_1 == row.oracle_strategy == best_of[row.bin]
        assert row.n_problems == 100
        assert abs(row.cv_value - 0.7) < 0.05
        assert row.oracle_value >= 0.6
    again = compute_optimal_by_difficulty(table, "budget", "strategy", "value", levels, seed=0)
    pd.testing.assert_frame_equal(out, again)


def test_compute_optimal_cv_is_held_out():
    # Pure noise, no true best: the in-sample pick is optimistic, cross-validation is not.
    table, levels, _ = planted_table()
    rng = np.random.default_rng(7)
    table = table.assign(value=rng.normal(0.5, 0.3, len(table)))
    out = compute_optimal_by_difficulty(table, "budget", "strategy", "value", levels, folds=2)
    assert (out["oracle_value"] >= out["cv_value"] - 1e-12).mean() > 0.5
    assert out["cv_value"].mean() < out["oracle_value"].mean()


def test_compute_optimal_rejects_incomplete_grid():
    table, levels, _ = planted_table()
    with pytest.raises(ValueError, match="lacks a value for some"):
        compute_optimal_by_difficulty(table.iloc[1:], "budget", "strategy", "value", levels)
    with pytest.raises(ValueError, match="has a difficulty level but no rows"):
        compute_optimal_by_difficulty(
            table, "budget", "strategy", "value", pd.concat([levels, pd.Series({"zz": 1})])
        )


# ---------------------------------------------------------------- paired comparison


def synthetic_problems(seed: int, problems: int = 60, n: int = 8, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = np.clip(rng.beta(1.0, 1.0, problems) + shift, 0, 1)
    rows = []
    for i in range(problems):
        for s in range(n):
            ok = rng.random() < p[i]
            rows.append((f"p{i:03d}", s, 10, 100, "stop", "right" if ok else f"w{s % 3}", ok))
    cols = ["problem_id", "sample_index", "prompt_tokens", "completion_tokens", "finish_reason",
            "answer_class", "correct"]
    return reduce_per_problem(pd.DataFrame(rows, columns=cols))


def test_compare_identical_runs_is_zero():
    est = per_problem_estimates(synthetic_problems(0), ks=[1, 4])
    res = compare_runs(est, est, n_boot=500, seed=0)
    assert (res.table["delta"] == 0).all()
    assert (res.table["ci_low"] <= 0).all() and (res.table["ci_high"] >= 0).all()
    assert (res.table["verdict"] == "no clear difference").all()
    assert (res.table["ties"] == 60).all()
    assert res.only_baseline == res.only_candidate == []


def test_compare_shifted_run_recovers_shift():
    base = per_problem_estimates(synthetic_problems(0), ks=[1, 4])
    cand = base.assign(value=base["value"] + 0.1)
    res = compare_runs(base, cand, n_boot=500, seed=0).table
    assert np.allclose(res["delta"], 0.1, atol=1e-12)
    assert np.allclose(res["ci_low"], 0.1, atol=1e-9) and np.allclose(res["ci_high"], 0.1, atol=1e-9)
    assert (res["verdict"] == "candidate higher").all()
    assert (res["wins"] == 60).all()


def test_compare_pairs_on_common_problems_and_reports_dropped():
    a = per_problem_estimates(synthetic_problems(1), ks=[1, 2])
    b = per_problem_estimates(synthetic_problems(2, shift=0.2), ks=[1, 2, 4])
    a = a[a.problem_id != "p000"]
    b = b[b.problem_id != "p059"]
    res = compare_runs(a, b, n_boot=400, seed=1)
    assert res.only_baseline == ["p059"] and res.only_candidate == ["p000"]
    t = res.table
    assert t[["metric", "k"]].apply(tuple, axis=1).tolist() == [
        (m, k) for m in ("maj@k", "pass@k", "tokens@k") for k in (1, 2)
    ]
    assert (t["n_problems"] == 58).all()
    common = sorted(set(a.problem_id) & set(b.problem_id))
    pa = a[(a.metric == "pass@k") & (a.k == 1) & a.problem_id.isin(common)]["value"].mean()
    pb = b[(b.metric == "pass@k") & (b.k == 1) & b.problem_id.isin(common)]["value"].mean()
    row = t[(t.metric == "pass@k") & (t.k == 1)].iloc[0]
    assert row["delta"] == pytest.approx(pb - pa)
    assert row["ci_low"] < row["delta"] < row["ci_high"]
    text = summarize_comparison(res)
    assert "58 common problems (1 only in baseline, 1 only in candidate, dropped)" in text
    assert "p-value" not in text


def test_compare_errors():
    est = per_problem_estimates(synthetic_problems(0), ks=[1])
    other = est.assign(problem_id="x" + est["problem_id"])
    with pytest.raises(ValueError, match="share no problem_id"):
        compare_runs(est, other)
    with pytest.raises(ValueError, match="duplicate"):
        compare_runs(pd.concat([est, est.iloc[:1]]), est)
