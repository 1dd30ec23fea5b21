"""The CI regression gate: hand-worked cases, exit codes of the commands, and its error rates
in a seeded simulation (false alarms on same-distribution reruns, power on a 10-point drop)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli

from tts_bench.metrics.gate import check_regression, holm, minimum_detectable_effect, parse_metric


def _pp(values: dict[str, float], metric: str = "pass@k", k: int = 1) -> pd.DataFrame:
    return pd.DataFrame({"problem_id": list(values), "metric": metric, "k": k,
                         "value": list(values.values())})


def test_reference_example_regresses():
    # metrics.md section 15: d = [-0.5, -0.25, -0.5, 0], alpha 0.05, margin 0 -> regressed.
    base = _pp({"a": 1.0, "b": 0.5, "c": 0.75, "d": 0.25})
    run = _pp({"a": 0.5, "b": 0.25, "c": 0.25, "d": 0.25})
    r = check_regression(run, base, [("pass@k", 1)], margin=0.0, alpha=0.05, n_boot=20_000)
    row = r.table.iloc[0]
    assert row.delta == pytest.approx(-0.3125) and row.upper_bound < 0 and row.regressed
    assert row.p_value == pytest.approx(1 / 256, abs=0.003)  # all four draws the last problem
    assert r.exit_code == 1
    # Within a margin that allows the drop, not regressed.
    assert check_regression(run, base, [("pass@k", 1)], margin=0.6, n_boot=2000).exit_code == 0


def test_holm_step_down_and_parsing():
    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    assert holm([0.01, 0.02, 0.04], 0.05) == [True, True, True]
    assert parse_metric("maj@k:8") == ("maj@k", 8)
    with pytest.raises(ValueError, match="expected METRIC:K"):
        parse_metric("pass@k")
    d = np.array([0.0, 1.0] * 50)
    assert minimum_detectable_effect(d, 0.05) == pytest.approx((1.6449 + 0.8416) * d.std(ddof=1) / 10, 1e-3)


def test_incomparable_when_problem_ids_differ():
    r = check_regression(_pp({"a": 1, "b": 0}), _pp({"a": 1, "c": 0}), [("pass@k", 1)])
    assert r.exit_code == 2 and r.only_run == ["b"] and r.only_base == ["c"]


def _simulate(rng, p: np.ndarray, drop: float, n: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"q{i}" for i in range(p.size)]
    base = rng.binomial(n, p) / n
    run = rng.binomial(n, np.clip(p - drop, 0, 1)) / n
    return (pd.DataFrame({"problem_id": ids, "metric": "pass@k", "k": 1, "value": run}),
            pd.DataFrame({"problem_id": ids, "metric": "pass@k", "k": 1, "value": base}))


def test_false_alarms_at_most_alpha_and_a_ten_point_drop_is_caught():
    rng = np.random.default_rng(0)
    sims, alpha = 200, 0.05
    alarms = alarms_margin = caught = 0
    for s in range(sims):
        p = rng.beta(2, 3, size=200)
        run, base = _simulate(rng, p, 0.0)
        alarms += check_regression(run, base, [("pass@k", 1)], margin=0.0, alpha=alpha, n_boot=2000,
                                   seed=s).exit_code == 1
        alarms_margin += check_regression(run, base, [("pass@k", 1)], margin=0.02, alpha=alpha,
                                          n_boot=2000, seed=s).exit_code == 1
        run, base = _simulate(rng, p, 0.10)
        caught += check_regression(run, base, [("pass@k", 1)], margin=0.02, alpha=alpha, n_boot=2000,
                                   seed=s).exit_code == 1
    slack = 2 * np.sqrt(alpha * (1 - alpha) / sims)  # two binomial standard errors of the rate
    assert alarms / sims <= alpha + slack, alarms
    assert alarms_margin / sims <= alpha
    assert caught / sims >= 0.95, caught


def _fake_run(root: Path, name: str, values: dict[str, float]) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({
        "run_name": name, "strategy": "parallel",
        "config": {"dataset": {"name": "arith"}, "strategy": {"name": "parallel"}, "budget": {"n": 8}},
        "model": {"model_id": "m", "fingerprint": "fp", "engine": "scripted", "engine_version": "1"},
        "task": {"name": "arith", "extractor": "number", "grader": "math"}, "store_dir": str(root)}))
    pp = pd.concat([_pp(values), _pp(values, "maj@k", 8)])
    pp.to_parquet(d / "per_problem_metrics.parquet", index=False)
    return d


def test_baseline_and_check_commands_exit_codes(tmp_path):
    good = {f"q{i}": float(i % 2) for i in range(40)}
    base_run = _fake_run(tmp_path, "base", good)
    cli("baseline", str(base_run), "-o", str(tmp_path / "b.json"), cwd=tmp_path)
    same = cli("check", str(_fake_run(tmp_path, "same", good)), "--baseline", str(tmp_path / "b.json"),
               "--metric", "pass@k:1", "--metric", "maj@k:8", "--junit", str(tmp_path / "j.xml"),
               "--markdown", str(tmp_path / "s.md"), cwd=tmp_path, check=False)
    assert same.returncode == 0 and "no regression" in same.stdout
    assert 'failures="0"' in (tmp_path / "j.xml").read_text()
    assert "| pass@k | 1 |" in (tmp_path / "s.md").read_text()
    worse = {k: 0.0 for k in good}
    bad = cli("check", str(_fake_run(tmp_path, "worse", worse)), "--baseline", str(tmp_path / "b.json"),
              "--junit", str(tmp_path / "j2.xml"), cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "REGRESSED" in bad.stdout
    assert 'failures="1"' in (tmp_path / "j2.xml").read_text()
    other = cli("check", str(_fake_run(tmp_path, "other", {"z1": 1.0})), "--baseline",
                str(tmp_path / "b.json"), cwd=tmp_path, check=False)
    assert other.returncode == 2 and "problem ids differ" in other.stdout
    missing = cli("check", str(base_run), "--baseline", str(tmp_path / "nope.json"), cwd=tmp_path,
                  check=False)
    assert missing.returncode == 2 and "write one with: tts-bench baseline RUN" in missing.stderr
