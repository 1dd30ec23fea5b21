"""The whole pipeline with the scripted engine, as real processes: run, rerun,
top-up, kill -9 and Ctrl-C midway and resume, grade, report, import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import cli, write_arith_script

from tts_bench.store import GenerationStore


def _run_args(script: Path, *extra: str) -> list[str]:
    return ["run", "--no-progress", "engine=scripted", f"engine.script={script}",
            "dataset.size=6", "bootstrap=200", *extra]


def _only_run(cwd: Path) -> Path:
    runs = sorted((cwd / "results" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def _stored_rows(cwd: Path) -> int:
    store = GenerationStore(cwd / "results" / "store")
    return sum(store.read(fp, columns=["key"]).num_rows for fp in store.partitions())


def _shard_rows(cwd: Path) -> int:
    """Rows in all shard files, duplicates included."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows
               for p in (cwd / "results" / "store" / "generations").glob("*/part-*.parquet"))


def test_end_to_end_files_and_metrics(tmp_path):
    script = write_arith_script(tmp_path / "script.jsonl")
    out = cli(*_run_args(script), cwd=tmp_path).stdout
    assert "48 samples planned (6 problems x n=8); 0 already stored; 48 to generate" in out
    run = _only_run(tmp_path)
    for name in ("manifest.json", "config.yaml", "plan.parquet", "problems.parquet",
                 "samples.parquet", "per_problem.parquet", "metrics.csv", "metrics.json", "plot.png"):
        assert (run / name).is_file(), name
    m = pd.read_csv(run / "metrics.csv")
    assert {"metric", "k", "value", "ci_low", "ci_high"} <= set(m.columns)
    # Problem i is right on sample j iff (j + i) % 3 == 0, j in 0..7:
    # i%3==0 -> j in {0,3,6}; i%3==1 -> {2,5}; i%3==2 -> {1,4,7}.
    samples = pd.read_parquet(run / "samples.parquet")
    c = samples.groupby("problem_id")["correct"].sum().tolist()
    assert c == [3, 2, 3, 3, 2, 3]
    pass1 = m[(m.metric == "pass@k") & (m.k == 1)].value.item()
    assert pass1 == pytest.approx(sum(c) / 48)
    for name in ("report.html", "per_problem_metrics.parquet", "analysis/cost.csv",
                 "analysis/frontier.csv", "analysis/coverage_fit.csv", "analysis/difficulty.csv",
                 "plots/curves.svg", "plots/frontier_tokens.png"):
        assert (run / name).is_file(), name
    assert "ffs@k" in set(m.metric)
    html = (run / "report.html").read_text()
    assert "Pareto frontier" in html and "https://" not in html
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model"]["engine"] == "scripted"
    assert manifest["totals"]["samples"] == 48
    assert manifest["versions"]["python"]
    assert "config" in manifest and manifest["config"]["budget"]["n"] == 8


def test_rerun_generates_nothing_and_topup_generates_the_difference(tmp_path):
    script = write_arith_script(tmp_path / "script.jsonl")
    cli(*_run_args(script), cwd=tmp_path)
    again = cli(*_run_args(script), cwd=tmp_path).stdout
    assert "48 already stored; 0 to generate" in again
    assert _stored_rows(tmp_path) == 48
    up = cli(*_run_args(script, "budget.n=16"), cwd=tmp_path).stdout
    assert "96 samples planned (6 problems x n=16); 48 already stored; 48 to generate" in up
    assert _stored_rows(tmp_path) == 96 and _shard_rows(tmp_path) == 96


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_without_regenerating(tmp_path, sig):
    script = write_arith_script(tmp_path / "script.jsonl")
    # Reference: the same experiment, uninterrupted, in its own folder.
    ref = tmp_path / "ref"
    ref.mkdir()
    cli(*_run_args(script), cwd=ref)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "TTS_BENCH_SCRIPTED_DELAY": "0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "tts_bench", *_run_args(script)], cwd=work,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    gen_dir = work / "results" / "store" / "generations"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until some, not all, samples are stored
        if gen_dir.exists() and _stored_rows(work) >= 10:  # journaled, not yet rolled into shards
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    stored = _stored_rows(work)
    assert 10 <= stored < 48, stored
    assert not list(gen_dir.glob("*/.tmp-*")) or sig == signal.SIGKILL  # Ctrl-C cleans up
    out = cli(*_run_args(script), cwd=work).stdout
    assert f"{stored} already stored; {48 - stored} to generate" in out
    assert _stored_rows(work) == 48 and _shard_rows(work) == 48  # nothing generated twice
    a = pd.read_csv(_only_run(ref) / "metrics.csv")
    b = pd.read_csv(_only_run(work) / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)


def test_damaged_shard_is_regenerated_on_next_run(tmp_path):
    script = write_arith_script(tmp_path / "script.jsonl")
    cli(*_run_args(script), cwd=tmp_path)
    import pyarrow.parquet as pq

    shard = sorted((tmp_path / "results" / "store" / "generations").glob("*/part-*.parquet"))[0]
    lost = pq.read_metadata(shard).num_rows  # the run's journal rolled into one shard at exit
    shard.write_bytes(shard.read_bytes()[:100])
    out = cli(*_run_args(script), cwd=tmp_path)
    assert f"{48 - lost} already stored; {lost} to generate" in out.stdout
    assert "damaged shard" in out.stderr + out.stdout
    assert (tmp_path / "results" / "store" / "quarantine").exists()


def test_grade_and_report_commands_never_generate(tmp_path):
    script = write_arith_script(tmp_path / "script.jsonl")
    cli(*_run_args(script), cwd=tmp_path)
    run = _only_run(tmp_path)
    before = pd.read_csv(run / "metrics.csv")
    (run / "metrics.csv").unlink()
    (run / "plot.png").unlink()
    out = cli("grade", str(run), cwd=tmp_path).stdout
    assert "graded 48 samples" in out
    pd.testing.assert_frame_equal(before, pd.read_csv(run / "metrics.csv"), check_exact=False)
    (run / "plot.png").unlink()
    graded = pd.read_parquet(run / "samples.parquet")
    cli("report", str(run), "--bootstrap", "1000", cwd=tmp_path)
    assert (run / "plot.png").is_file()
    # report reads the graded samples without their texts and leaves the file whole.
    pd.testing.assert_frame_equal(graded, pd.read_parquet(run / "samples.parquet"))
    assert graded["text"].str.len().gt(0).all()
    assert _shard_rows(tmp_path) == 48


def test_grade_of_a_missing_run_is_a_clear_error(tmp_path):
    proc = cli("grade", str(tmp_path / "nope"), cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "is not a run directory (no manifest.json)" in proc.stderr


def test_unknown_dataset_cli_error(tmp_path):
    proc = cli("run", "dataset=foo", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "unknown dataset 'foo'. Valid choices: aime24, aime25, arith" in proc.stderr
    assert not (tmp_path / "results").exists()  # nothing touched


def test_multirun_sweeps(tmp_path):
    script = write_arith_script(tmp_path / "script.jsonl")
    out = cli(*_run_args(script, "budget.n=2,4", "strategy.temperature=0.5,1.0"), "-m",
              cwd=tmp_path).stdout
    assert "job 4/4" in out
    assert len(list((tmp_path / "results" / "runs").iterdir())) == 4


def test_import_grades_external_generations(tmp_path, shared_data):
    rows = [json.loads(x) for x in (shared_data / "gsm8k_test.jsonl").read_text().splitlines()[:4]]
    lines = []
    for r in rows:
        for j in range(4):
            text = f"So the answer is \\boxed{{{r['answer'] if j < 2 else int(r['answer']) + 1}}}."
            lines.append(json.dumps({"problem_id": r["id"], "text": text, "completion_tokens": 9,
                                     "verifier_score": 0.9 if j < 2 else 0.1,
                                     "mean_logprob": -0.5}))
    f = tmp_path / "gens.jsonl"
    f.write_text("\n".join(lines) + "\n")
    out = cli("import", str(f), "--dataset", "gsm8k", "--model", "ext",
              f"dataset.data_dir={shared_data}", "dataset.limit=4", cwd=tmp_path).stdout
    assert "imported 16 new samples" in out
    run = _only_run(tmp_path)
    m = pd.read_csv(run / "metrics.csv")
    assert m[(m.metric == "pass@k") & (m.k == 1)].value.item() == pytest.approx(0.5)
    assert m[(m.metric == "pass@k") & (m.k == 4)].value.item() == pytest.approx(1.0)
    samples = pd.read_parquet(run / "samples.parquet")
    assert samples["verifier_score"].tolist() == [0.9, 0.9, 0.1, 0.1] * 4
    assert (samples["mean_logprob"] == -0.5).all()
    # The verifier ranks both right answers first: BoN@2 = 1 - C(2,2)/C(4,2) = 5/6.
    bon = m[m.metric == "bon@k"].set_index("k")["value"]
    assert bon[1] == pytest.approx(0.5) and bon[2] == pytest.approx(5 / 6) and bon[4] == 1.0
    assert {"weighted@k", "rpc@k", "ffs@k"} <= set(m.metric)
    again = cli("import", str(f), "--dataset", "gsm8k", "--model", "ext",
                f"dataset.data_dir={shared_data}", "dataset.limit=4", cwd=tmp_path).stdout
    assert "imported 0 new samples" in again
    # Other texts under the same model name: refused, nothing changed.
    f.write_text("\n".join(x.replace("So the answer", "Thus the answer") for x in lines) + "\n")
    clash = cli("import", str(f), "--dataset", "gsm8k", "--model", "ext",
                f"dataset.data_dir={shared_data}", "dataset.limit=4", cwd=tmp_path, check=False)
    assert clash.returncode == 2
    assert "16 generation(s) differ from the ones already imported as model 'ext'" in clash.stderr
    assert pd.read_csv(run / "metrics.csv").equals(m)


def test_config_list_cache_commands(tmp_path):
    script = write_arith_script(tmp_path / "script.jsonl")
    cfg = cli("config", "dataset=gsm8k", "budget.n=3", cwd=tmp_path).stdout
    assert "name: gsm8k" in cfg and "'n': 3" in cfg
    assert "vllm-cpu" in cli("list", cwd=tmp_path).stdout
    cli(*_run_args(script), cwd=tmp_path)
    out = cli("cache", cwd=tmp_path).stdout
    assert "48" in out and "scripted" in out


def test_two_shards_share_one_store(tmp_path):
    script = write_arith_script(tmp_path / "script.jsonl")
    first = cli(*_run_args(script, "shard.index=0", "shard.count=2"), cwd=tmp_path).stdout
    assert "(shard 0/2)" in first
    assert "planned samples are not in the store yet" in first.replace("\n", " ")
    part = _stored_rows(tmp_path)
    assert 0 < part < 48
    second = cli(*_run_args(script, "shard.index=1", "shard.count=2"), cwd=tmp_path).stdout
    assert f"{part} already stored; {48 - part} to generate (shard 1/2)" in second
    assert _stored_rows(tmp_path) == 48 and _shard_rows(tmp_path) == 48
    run = _only_run(tmp_path)
    assert "graded 48 samples" in cli("grade", str(run), cwd=tmp_path).stdout


def test_report_compares_runs_on_shared_problems(tmp_path):
    script = write_arith_script(tmp_path / "script.jsonl")
    cli(*_run_args(script), cwd=tmp_path)
    cli(*_run_args(script, "strategy.temperature=1.0"), cwd=tmp_path)
    a, b = sorted((tmp_path / "results" / "runs").iterdir())
    out = cli("report", str(a), str(b), "--compare-out", str(tmp_path / "cmp"), cwd=tmp_path).stdout
    assert f"{b.name} vs baseline {a.name}" in out or f"{a.name} vs baseline {b.name}" in out
    paired = pd.read_csv(tmp_path / "cmp" / "paired.csv")
    # The scripted engine answers alike at every temperature: no difference anywhere.
    assert set(paired.metric) >= {"pass@k", "maj@k"}
    assert (paired.delta.abs() < 1e-12).all()
    assert (tmp_path / "cmp" / "comparison.html").is_file()
    union = pd.read_csv(tmp_path / "cmp" / "multi_temperature.csv").set_index("k_per_temperature")
    front = pd.read_csv(tmp_path / "cmp" / "frontier.csv")
    assert set(front.run) == {a.name, b.name} and front.on_frontier.any()
    kin = pd.read_csv(tmp_path / "cmp" / "kinetics_frontier.csv")
    assert (kin.accuracy.diff().dropna() >= -1e-12).all()  # more budget never hurts
    # Identical pools at both temperatures, drawn independently: 1 - (1 - pass@4)^2.
    from tts_bench.metrics import pass_at_k

    pp = pd.read_parquet(a / "per_problem.parquet")
    expected = (1 - (1 - pass_at_k(pp["n"].to_numpy(), pp["c"].to_numpy(), 4)) ** 2).mean()
    assert union.loc[4, "union_coverage"] == pytest.approx(expected)


def test_hub_unreachable_is_a_clear_error(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TTS_BENCH_DATA_DIR": ""}
    env_clean = {k: v for k, v in os.environ.items() if k != "TTS_BENCH_DATA_DIR"}
    proc = subprocess.run([sys.executable, "-m", "tts_bench", "run", "dataset=aime24", "engine=scripted"],
                          cwd=tmp_path, env={**env_clean, **{k: v for k, v in env.items() if v}},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: could not load aime24 from the hub (HuggingFaceH4/aime_2024): ")
    assert ("Offline? Point dataset.data_dir (or TTS_BENCH_DATA_DIR) at a folder with aime24.jsonl"
            in proc.stderr)


def test_report_keeps_the_runs_bootstrap_setting(tmp_path):
    """`tts-bench report RUN` recomputes with the run's own bootstrap (here 0: no CIs), not 1000."""
    script = write_arith_script(tmp_path / "script.jsonl")
    cli("run", "--no-progress", "engine=scripted", f"engine.script={script}", "dataset.size=6",
        "bootstrap=0", "plot=false", cwd=tmp_path)
    run = _only_run(tmp_path)
    assert pd.read_csv(run / "metrics.csv")[["ci_low", "ci_high"]].isna().all().all()
    cli("report", str(run), "--no-html", cwd=tmp_path)
    assert pd.read_csv(run / "metrics.csv")[["ci_low", "ci_high"]].isna().all().all()
    cli("report", str(run), "--no-html", "--bootstrap", "50", cwd=tmp_path)  # asked for: CIs
    assert pd.read_csv(run / "metrics.csv")[["ci_low", "ci_high"]].notna().all().all()


def test_unreachable_server_is_one_line(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli("run", "--no-progress", "engine=openai", f"engine.base_url=http://127.0.0.1:{port}/v1",
               "engine.max_retries=0", "dataset.size=2", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: GET http://127.0.0.1:{port}/v1/models for the model list failed after 1 tries "
        f"(engine.max_retries=0); last error: ConnectError: All connection attempts failed. Check that "
        f"the server is running and reachable and that engine.base_url (http://127.0.0.1:{port}/v1) "
        f"points at its OpenAI API root (usually ending in /v1)."]


def test_engine_text_with_a_lone_surrogate_is_stored_and_the_batch_kept(tmp_path):
    """An engine answer holding "\\ud800" (as a server can send) used to fail the store write
    and lose the batch: now every sample is stored, that character as U+FFFD, and a warning says so."""
    script = write_arith_script(tmp_path / "script.jsonl")
    lines = [json.loads(x) for x in script.read_text().splitlines()]
    lines[0]["texts"][1] = lines[0]["texts"][1] + " \ud800"  # problem 0, sample 1 (a wrong answer)
    script.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = cli(*_run_args(script), cwd=tmp_path).stdout
    assert "warning: 1 sample(s) held 1 lone surrogate(s)" in out
    assert _stored_rows(tmp_path) == 48
    run = _only_run(tmp_path)
    samples = pd.read_parquet(run / "samples.parquet")
    assert samples["text"].str.contains("\ufffd").sum() == 1
    c = samples.groupby("problem_id")["correct"].sum().tolist()
    assert c == [3, 2, 3, 3, 2, 3]  # the same grades as the clean script
    assert "48 already stored; 0 to generate" in cli(*_run_args(script), cwd=tmp_path).stdout


def test_a_store_in_another_order_than_the_plan_grades_and_reports_the_same(tmp_path):
    """Texts stay in the store while grading: each sample's text and grade follow its key, not row order."""
    import numpy as np
    import pyarrow as pa

    script = write_arith_script(tmp_path / "script.jsonl")
    cli(*_run_args(script), cwd=tmp_path)
    run = _only_run(tmp_path)
    before = pd.read_parquet(run / "samples.parquet").sort_values("key", ignore_index=True)
    metrics = pd.read_csv(run / "metrics.csv")
    store_dir = tmp_path / "results" / "store"
    store = GenerationStore(store_dir)
    (fp,) = store.partitions()
    table = store.read(fp)
    for p in store.files(fp):
        p.unlink()
    perm = np.random.default_rng(0).permutation(table.num_rows)
    for part in np.array_split(perm, 5):  # five shards, rows shuffled against the plan
        store.write_parquet_shard(fp, table.take(pa.array(part)))
    cli("grade", str(run), cwd=tmp_path)
    after = pd.read_parquet(run / "samples.parquet")
    assert list(after.columns) == list(before.columns)
    after = after.sort_values("key", ignore_index=True)
    pd.testing.assert_frame_equal(before, after)
    pd.testing.assert_frame_equal(metrics, pd.read_csv(run / "metrics.csv"))
