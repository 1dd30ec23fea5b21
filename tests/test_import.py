"""`tts-bench import`: every sample used (unequal n per problem), each format round-tripped.

The fixtures in tests/fixtures/imports are small files in the real layouts of
lm-evaluation-harness --log_samples, lighteval details and OpenAI Batch
output, written for the generated `arith` task (dataset.size=5, seed 0), so no
dataset text is copied. All hold the same samples:

    arith-0-0000 "7 + 7" = 14    ["14", "15", "15", "16"]          n=4, c=1
    arith-0-0001 "43 - 15" = 28  ["28", "28"]                      n=2, c=2
    arith-0-0002 "9 * 62" = 558  ["559", "560", "I do not know."]  n=3, c=0
    arith-0-0003, arith-0-0004: no samples

Hand-computed (Chen et al. pass@k = 1 - C(n-c, k)/C(n, k), averaged):
pass@1 = (1/4 + 1 + 0)/3 = 5/12, pass@2 = (1 - 3/6 + 1 + 0)/3 = 1/2.
maj@2 for arith-0-0000: of the 6 pairs, {14,15} x2 and {14,16} tie (credit 1/2),
{15,15} and {15,16} x2 lose: 3/2 / 6 = 1/4; so maj@2 = (1/4 + 1 + 0)/3 = 5/12.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli

from tts_bench.config import ConfigError
from tts_bench.runner.import_formats import parse_custom_id

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
TEXTS = {"arith-0-0000": ["14", "15", "15", "16"], "arith-0-0001": ["28", "28"],
         "arith-0-0002": ["559", "560", "I do not know."]}
ARITH = ["--dataset", "arith", "dataset.size=5"]


def _run(cwd: Path) -> Path:
    (run,) = sorted((cwd / "results" / "runs").iterdir())
    return run


def _metric(run: Path, metric: str) -> dict[int, float]:
    m = pd.read_csv(run / "metrics.csv")
    return m[m.metric == metric].set_index("k")["value"].to_dict()


def _assert_round_trip(out: str, run: Path) -> None:
    """The file's texts, in order, every one used; the hand-computed metrics."""
    samples = pd.read_parquet(run / "samples.parquet").sort_values(["problem_id", "sample_index"])
    got = {pid: g["text"].tolist() for pid, g in samples.groupby("problem_id")}
    assert got == TEXTS
    assert samples.groupby("problem_id")["sample_index"].apply(list).to_dict() == {
        pid: list(range(len(t))) for pid, t in TEXTS.items()}
    pp = pd.read_parquet(run / "per_problem.parquet").set_index("problem_id")
    assert pp["n"].to_dict() == {"arith-0-0000": 4, "arith-0-0001": 2, "arith-0-0002": 3}
    assert pp["c"].to_dict() == {"arith-0-0000": 1, "arith-0-0001": 2, "arith-0-0002": 0}
    assert _metric(run, "pass@k") == pytest.approx({1: 5 / 12, 2: 1 / 2})
    assert _metric(run, "maj@k") == pytest.approx({1: 5 / 12, 2: 5 / 12})
    assert "using 9 samples: n per problem 2 to 4 (mean 3.00); k grid 1, 2" in out
    assert "k stops at the smallest n (2, problem arith-0-0001)" in out
    assert "2 of the selected arith problems have no samples in the file and are not in this run" in out
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["import"]["samples_used"] == 9 and manifest["import"]["n_max"] == 4
    assert manifest["totals"]["samples"] == 9


def test_unequal_n_uses_every_sample_through_every_metric(tmp_path):
    """jsonl with scores, logprobs and token counts: pass, maj, bon, ffs and tokens by hand."""
    scores = {"arith-0-0000": [0.9, 0.5, 0.4, 0.1], "arith-0-0001": [0.2, 0.3],
              "arith-0-0002": [0.5, 0.6, 0.7]}
    tokens = {"arith-0-0000": [10, 20, 30, 40], "arith-0-0001": [6, 8], "arith-0-0002": [3, 3, 3]}
    lines = [json.dumps({"problem_id": pid, "text": t, "verifier_score": scores[pid][j],
                         "completion_tokens": tokens[pid][j], "prompt_tokens": 5, "mean_logprob": -0.5})
             for pid, texts in TEXTS.items() for j, t in enumerate(texts)]
    f = tmp_path / "gens.jsonl"
    f.write_text("\n".join(lines) + "\n")
    out = cli("import", str(f), *ARITH, "--model", "ext", cwd=tmp_path).stdout
    run = _run(tmp_path)
    assert run.name == "arith__ext__imported-n2-4"
    _assert_round_trip(out, run)
    assert "read 9 samples of 3 problems from" in out and "matched by id of 'problem_id'" in out
    # best-of-N: sorted correctness of arith-0-0000 is [1,0,0,0]: BoN@2 = C(3,1)/C(4,2) = 1/2.
    assert _metric(run, "bon@k") == pytest.approx({1: 5 / 12, 2: 1 / 2})
    # first finish: the 10-token (right) sample of arith-0-0000 is in 3 of its 6 pairs.
    assert _metric(run, "ffs@k") == pytest.approx({1: 5 / 12, 2: 1 / 2})
    # tokens@k = k * mean completion tokens per problem, averaged: (25 + 7 + 3)/3 per sample.
    assert _metric(run, "tokens@k") == pytest.approx({1: 35 / 3, 2: 70 / 3})
    cost = pd.read_csv(run / "analysis" / "cost.csv")
    assert cost[cost.metric == "maj@k"].set_index("k")["tokens"].to_dict() == pytest.approx(
        {1: 35 / 3, 2: 70 / 3})
    html = (run / "report.html").read_text()
    assert "2 to 4 per problem (k ≤ 2)" in html
    again = cli("import", str(f), *ARITH, "--model", "ext", cwd=tmp_path).stdout
    assert "imported 0 new samples" in again


def test_budget_n_keeps_the_first_n_and_says_so(tmp_path):
    f = tmp_path / "gens.jsonl"
    f.write_text("".join(json.dumps({"problem_id": pid, "text": t}) + "\n"
                         for pid, texts in TEXTS.items() for t in texts))
    out = cli("import", str(f), *ARITH, "--model", "ext", "budget.n=2", cwd=tmp_path).stdout
    assert "budget.n=2: each problem's first 2 samples by sample index are used; 3 more are stored" in out
    assert "using 6 samples: n = 2 per problem; k grid 1, 2" in out
    run = _run(tmp_path)
    assert pd.read_parquet(run / "per_problem.parquet")["n"].tolist() == [2, 2, 2]
    assert _metric(run, "pass@k") == pytest.approx({1: (1 / 2 + 1 + 0) / 3, 2: (1 + 1 + 0) / 3})
    bad = cli("import", str(f), *ARITH, "--model", "ext", "budget.ks=[1,3]", cwd=tmp_path, check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: budget.ks has k=3 but problem arith-0-0001 has only 2 sample(s) "
                                  "to use; every k needs n_i >= k for every problem: drop that k")


def test_lm_eval_log_samples_round_trip(tmp_path):
    f = FIXTURES / "samples_arith_2025-06-01T12-00-00.000000.jsonl"
    out = cli("import", str(f), *ARITH, "--format", "lm-eval", "--model", "lm", cwd=tmp_path).stdout
    assert "matched by text of 'doc'" in out
    assert "2 filters (flexible-extract, strict-match) log the same raw generations" in out
    assert "no completion token count" in out  # lm-eval logs none: said, not invented
    _assert_round_trip(out, _run(tmp_path))
    assert "imported 0 new" in cli("import", str(f), *ARITH, "--format", "lm-eval", "--model", "lm",
                                   cwd=tmp_path).stdout


def test_lighteval_details_round_trip(tmp_path):
    f = FIXTURES / "details_arith_2025-06-01T12-00-00.000000.parquet"
    out = cli("import", str(f), *ARITH, "--format", "lighteval", "--model", "le", cwd=tmp_path).stdout
    assert "matched by text of 'doc.query'" in out  # the statement inside the prompt
    run = _run(tmp_path)
    _assert_round_trip(out, run)
    samples = pd.read_parquet(run / "samples.parquet").sort_values(["problem_id", "sample_index"])
    # token counts from model_response: len(input_tokens) and len(output_tokens[j])
    assert samples["prompt_tokens"].tolist() == [12] * 4 + [13] * 2 + [14] * 3
    assert samples["completion_tokens"].tolist() == [6, 7, 8, 9, 6, 7, 6, 7, 11]


def test_openai_batch_round_trip(tmp_path):
    f = FIXTURES / "batch_output_arith.jsonl"
    out = cli("import", str(f), *ARITH, "--format", "openai-batch", "--model", "oa", cwd=tmp_path).stdout
    assert "1 request(s) failed and were not imported: arith-0-0002-3 (server_error: The server had" in out
    assert "1 request(s) had several choices and one usage count" in out
    run = _run(tmp_path)
    _assert_round_trip(out, run)  # lines in reverse sample order still land at their sample numbers
    samples = pd.read_parquet(run / "samples.parquet").sort_values(["problem_id", "sample_index"])
    assert samples["completion_tokens"].tolist() == [1, 2, 3, 4, 2, 2, 3, 3, 3]
    assert samples["prompt_tokens"].tolist() == [21] * 4 + [22] * 2 + [20] * 3
    assert samples["finish_reason"].tolist() == ["stop"] * 6 + ["length", "stop", "stop"]


def test_custom_id_mapping():
    known = {"p-1", "q"}
    assert parse_custom_id("q", None, known) == ("q", None)
    assert parse_custom_id("p-1", None, known) == ("p-1", None)  # a whole id wins over the split
    assert parse_custom_id("p-1-7", None, known) == ("p-1", 7)
    assert parse_custom_id("test/algebra/1.json#12", None, known) == ("test/algebra/1.json", 12)
    pattern = r"^run3::(?P<problem>.+)::s(?P<sample>\d+)$"
    assert parse_custom_id("run3::p-1::s4", pattern, known) == ("p-1", 4)
    with pytest.raises(ConfigError) as e:
        parse_custom_id("request", None, known)
    assert str(e.value).startswith("custom_id 'request' does not match a problem id, or "
                                   "<problem id>-<sample number>; give --id-pattern")


def test_bad_input_is_one_line(tmp_path):
    f = tmp_path / "gens.jsonl"
    f.write_text('{"problem_id": "arith-0-0000", "text": "14", "sample_index": 0}\n'
                 '{"problem_id": "arith-0-0000", "text": "15", "sample_index": 0}\n')
    proc = cli("import", str(f), *ARITH, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: problem arith-0-0000 sample 0 appears twice ({f}:1 and {f}:2); "
                                   f"give each generation its own sample_index, or none")
    lm = FIXTURES / "samples_arith_2025-06-01T12-00-00.000000.jsonl"
    proc = cli("import", str(lm), *ARITH, "--format", "lm-eval", "--match", "id", "--id-field", "doc_id",
               cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: 3 problem id(s) in ")
    assert "are not in the dataset: 0, 1, 2 (read from 'doc_id'; ids look like arith-0-0000)" in proc.stderr
    proc = cli("import", str(lm), "--dataset", "arith", "dataset.size=5", "dataset.seed=1",
               "--format", "lm-eval", cwd=tmp_path, check=False)  # other problems: nothing matches
    assert proc.returncode == 2 and "generations in " in proc.stderr
    assert "match no problem statement of the dataset (first: " in proc.stderr
    proc = cli("import", str(lm), *ARITH, "--format", "lighteval", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "not a Parquet file" in proc.stderr
    assert not (tmp_path / "results" / "runs").exists()


def test_lone_surrogate_in_an_import_is_replaced_and_nothing_else_lost(tmp_path):
    """A JSON line with "\\ud800" used to crash the import with pyarrow's UnicodeEncodeError."""
    f = tmp_path / "gens.jsonl"
    f.write_text('{"problem_id": "arith-0-0000", "text": "14"}\n'
                 '{"problem_id": "arith-0-0000", "text": "15 \\ud800"}\n'
                 '{"problem_id": "arith-0-0001", "text": "28"}\n'
                 '{"problem_id": "arith-0-0001", "text": "\\udfff 28"}\n')
    out = cli("import", str(f), *ARITH, "--model", "ext", cwd=tmp_path).stdout
    assert "imported 4 new samples" in out
    assert "2 sample(s) held 2 lone surrogate(s)" in out
    run = _run(tmp_path)
    samples = pd.read_parquet(run / "samples.parquet").sort_values(["problem_id", "sample_index"])
    assert samples["text"].tolist() == ["14", "15 \ufffd", "28", "\ufffd 28"]
    assert samples["correct"].tolist() == [True, False, True, True]
    assert "imported 0 new samples" in cli("import", str(f), *ARITH, "--model", "ext", cwd=tmp_path).stdout
