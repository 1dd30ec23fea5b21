"""The metric registry drives the report: every registered metric a run produces is in
metrics.csv, in the accuracy plots' legends, and in the tables; the gate and the paired
comparison read its direction of "better"."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import cli

from tts_bench.metrics import per_problem_estimates, reduce_per_problem, registry, selection_curves
from tts_bench.metrics.compare import compare_runs
from tts_bench.metrics.gate import parse_metric


def _pool(with_scores: bool, with_logprobs: bool) -> pd.DataFrame:
    rows = []
    for i in range(3):
        for s in range(4):
            ok = (s + i) % 3 == 0
            row = {"problem_id": f"p{i}", "sample_index": s, "prompt_tokens": 5,
                   "completion_tokens": 10 + s, "finish_reason": "length" if s == 3 else "stop",
                   "answer_class": "r" if ok else f"w{s % 2}", "correct": ok}
            if with_scores:
                row["verifier_score"] = 0.9 if ok else 0.2
            if with_logprobs:
                row["mean_logprob"] = -0.1 * (s + 1)
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("scores,logprobs", [(False, False), (True, False), (False, True), (True, True)])
def test_what_a_pool_produces_is_registered_with_what_it_needs(scores, logprobs):
    graded = _pool(scores, logprobs)
    ks = [1, 2, 4]
    produced = set(per_problem_estimates(reduce_per_problem(graded), ks)["metric"])
    produced |= set(selection_curves(graded, ks)["metric"])
    assert all(registry.is_registered(m) for m in produced), produced
    have = {"finish_reasons"} | ({"verifier_scores"} if scores else set())
    have |= {"logprobs"} if logprobs else set()
    # Exactly the registered metrics whose needs the pool meets.
    assert produced == {m.name for m in registry.METRICS if m.needs <= have}


def test_registry_groupings_and_order():
    assert registry.names(family="selection") == ("maj@k", "bon@k", "weighted@k", "rpc@k", "ffs@k")
    assert registry.names(source="problems") == ("pass@k", "maj@k", "tokens@k")
    assert registry.names(need="verifier_scores") == ("bon@k", "weighted@k")
    assert "tokens@k" not in registry.ACCURACY_METRICS and "rpc@k" in registry.ACCURACY_METRICS
    assert sorted(["zeta", "tokens@k", "ffs@k", "pass@k"], key=registry.rank) == \
        ["pass@k", "ffs@k", "tokens@k", "zeta"]
    with pytest.raises(KeyError, match="unknown metric 'pass@1'; registered: pass@k, maj@k"):
        registry.get("pass@1")


def test_gate_takes_only_metrics_where_a_drop_is_worse():
    assert parse_metric("rpc@k:4") == ("rpc@k", 4)
    with pytest.raises(ValueError, match=r"^bad --metric 'tokens@k:1': tokens@k cannot be gated "
                                         r"\(lower is better\); gate one of pass@k, maj@k, bon@k"):
        parse_metric("tokens@k:1")
    with pytest.raises(ValueError, match="bad --metric 'pass@1:1': pass@1 is not a metric; gate one of"):
        parse_metric("pass@1:1")


def test_comparison_reads_the_direction_of_better():
    base = per_problem_estimates(reduce_per_problem(_pool(False, False)), [1, 2])
    cand = base.assign(value=base["value"] + 0.1)  # more accurate, and more tokens
    t = compare_runs(base, cand, n_boot=200, seed=0).table.set_index(["metric", "k"])
    assert (t["verdict"] == "candidate higher").all()
    assert t.loc[("pass@k", 1), "better"] == "candidate" and t.loc[("maj@k", 2), "better"] == "candidate"
    assert t.loc[("tokens@k", 1), "better"] == "baseline"


def _svg_texts(path) -> set[str]:
    # matplotlib writes each text it draws as paths, preceded by the text in a comment.
    return set(re.findall(r"<!-- (.*?) -->", path.read_text()))


def test_every_metric_a_run_produces_is_in_its_csv_plots_and_tables(tmp_path, shared_data):
    rows = [json.loads(x) for x in (shared_data / "gsm8k_test.jsonl").read_text().splitlines()[:4]]
    lines = []
    for r in rows:
        for j in range(4):
            answer = r["answer"] if j % 2 == 0 else int(r["answer"]) + j
            lines.append(json.dumps({"problem_id": r["id"], "text": f"The answer is \\boxed{{{answer}}}.",
                                     "completion_tokens": 9 + j, "finish_reason": "stop",
                                     "verifier_score": 0.3 + 0.1 * j, "mean_logprob": -0.2 * (j + 1)}))
    f = tmp_path / "gens.jsonl"
    f.write_text("\n".join(lines) + "\n")
    cli("import", str(f), "--dataset", "gsm8k", "--model", "ext", f"dataset.data_dir={shared_data}",
        "dataset.limit=4", "bootstrap=100", cwd=tmp_path)
    run = next((tmp_path / "results" / "runs").iterdir())
    produced = set(pd.read_csv(run / "metrics.csv")["metric"])
    # Scores, logprobs and finish reasons given: the run produces every registered metric.
    assert produced == {m.name for m in registry.METRICS}
    accuracy = [m for m in registry.ACCURACY_METRICS if m in produced]
    assert {"rpc@k", "ffs@k"} <= set(accuracy)
    assert set(accuracy) <= _svg_texts(run / "plots" / "curves.svg")
    assert set(accuracy) <= _svg_texts(run / "plots" / "cost_tokens.svg")
    per_problem = pd.read_parquet(run / "per_problem_metrics.parquet")
    assert set(per_problem["metric"]) == produced
    html = (run / "report.html").read_text()
    for m in produced:  # a column of the metrics table
        assert f"<th scope=\"col\">{m}</th>" in html, m
    # The figures' order is the registry's: the legend lists accuracy metrics in report order.
    svg = (run / "plots" / "curves.svg").read_text()
    first = [svg.index(f"<!-- {m} -->") for m in accuracy]
    assert first == sorted(first)
    assert np.isfinite(pd.read_csv(run / "metrics.csv")["value"]).all()
