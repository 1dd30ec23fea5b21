"""Benchmark: the embedded engine's tokens/s against raw llama.cpp decode loops, side by side.

In one process, with the same GGUF model, the same thread count and the same
sampler (temperature 0.7, top_p 0.95, seeded ``dist``), it measures

  (a) a raw single-sequence loop: llama.cpp's low-level API, one token per
      ``llama_decode``, --samples sequences one after another;
  (b) the raw multi-sequence loop: one ``llama_batch`` per step, one seq_id per
      sequence, the prompt evaluated once for all, at 4, 8 and 16 sequences;
  (c) the embedded default through the engine: the plan ``tts-bench run``
      makes (arith, 20 problems, n=8) through the call layer into a fresh
      store, as the runner does (no grading or report); with --engine-single
      also with ``engine.parallel_sequences=1`` (one sequence at a time).

Raw loops decode --tokens tokens per sequence past EOS, so each sees the same
lengths. Every figure is the median of --repeats rounds (the machine is
shared: each line also gives the load average when it was measured), and the
run ends with (c)/(a), the issue's target being >= 1.6.

    python scripts/bench_batched_decode.py                 # engine defaults
    python scripts/bench_batched_decode.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


class Raw:
    """A bare llama.cpp context for the raw loops (no tts-bench code on the hot path)."""

    def __init__(self, llama_cpp, model, threads: int, flash_attn: bool):
        self.lc, self.model, self.threads, self.flash_attn = llama_cpp, model, threads, flash_attn

    def run(self, prompt: list[int], n_seq: int, tokens: int, seed0: int) -> float:
        """Seconds to decode ``tokens`` tokens for each of ``n_seq`` sequences (prompt excluded)."""
        from llama_cpp import _internals

        lc = self.lc
        cp = lc.llama_context_default_params()
        cp.n_ctx = n_seq * (len(prompt) + tokens) + 256
        cp.n_batch = cp.n_ubatch = max(512, len(prompt))
        cp.n_seq_max = n_seq
        cp.kv_unified = True
        cp.n_threads = cp.n_threads_batch = self.threads
        cp.flash_attn_type = (lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.flash_attn
                              else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        ctx = _internals.LlamaContext(model=self.model, params=cp, verbose=False)
        batch = lc.llama_batch_init(cp.n_batch, 0, n_seq)
        chains = []
        try:
            for i, t in enumerate(prompt):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = t, i, n_seq
                for s in range(n_seq):
                    batch.seq_id[i][s] = s
                batch.logits[i] = i == len(prompt) - 1
            batch.n_tokens = len(prompt)
            assert lc.llama_decode(ctx.ctx, batch) == 0
            for s in range(n_seq):
                ch = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
                for stage in (lc.llama_sampler_init_top_k(0), lc.llama_sampler_init_top_p(0.95, 1),
                              lc.llama_sampler_init_min_p(0.0, 1), lc.llama_sampler_init_temp(0.7),
                              lc.llama_sampler_init_dist(seed0 + s)):
                    lc.llama_sampler_chain_add(ch, stage)
                chains.append(ch)
            row = [len(prompt) - 1] * n_seq
            t0 = time.perf_counter()
            for step in range(tokens):
                toks = [lc.llama_sampler_sample(chains[s], ctx.ctx, row[s]) for s in range(n_seq)]
                if step == tokens - 1:
                    break  # the last token is sampled, not fed
                for s in range(n_seq):
                    batch.token[s], batch.pos[s], batch.n_seq_id[s] = toks[s], len(prompt) + step, 1
                    batch.seq_id[s][0], batch.logits[s] = s, True
                batch.n_tokens = n_seq
                assert lc.llama_decode(ctx.ctx, batch) == 0
                row = list(range(n_seq))
            return time.perf_counter() - t0
        finally:
            for ch in chains:
                lc.llama_sampler_free(ch)
            lc.llama_batch_free(batch)
            ctx.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="default: the engine's default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=48, help="tokens per raw sequence (the default max_tokens)")
    ap.add_argument("--samples", type=int, default=16, help="sequences per raw measurement")
    ap.add_argument("--engine-single", action="store_true",
                    help="also run the default plan with engine.parallel_sequences=1")
    args = ap.parse_args()

    import llama_cpp

    from tts_bench.calls import CallLayer
    from tts_bench.config import compose
    from tts_bench.dataset import load_problems, load_task
    from tts_bench.engines import make_engine
    from tts_bench.store import GenerationStore
    from tts_bench.strategies import AnswerReader, StrategyProblem, make_strategy

    tmp = Path(tempfile.mkdtemp(prefix="tts_bench_batched_"))
    base = [] if args.threads is None else [f"engine.n_threads={args.threads}"]
    cfg = compose(base)
    engine = make_engine(cfg.engine, cfg.model)
    single = None
    if args.engine_single:
        one = compose([*base, "engine.parallel_sequences=1"])
        single = make_engine(one.engine, one.model)
    threads = engine.n_threads
    problems = [StrategyProblem(p.id, p.messages) for p in load_problems(cfg.dataset)]
    answers = AnswerReader(load_task(cfg.dataset.name).extractor)
    prompt = engine._prompt_ids(engine.render(problems[0].messages))
    raw = Raw(llama_cpp, engine._model, threads, cfg.engine.flash_attn)
    print(f"threads={threads} flash_attn={cfg.engine.flash_attn} parallel_sequences="
          f"{cfg.engine.parallel_sequences}; cpu_count={os.cpu_count()}; load average {_load()}")

    def through_engine(eng):
        shutil.rmtree(tmp / "store", ignore_errors=True)
        t = time.perf_counter()
        layer = CallLayer(eng, GenerationStore(tmp / "store"), base_seed=int(cfg.strategy.seed),
                          dataset=cfg.dataset.name, batch_size=cfg.engine.batch_size)
        make_strategy(cfg, answers).run(problems, layer)
        return layer.stats.completion_tokens / (time.perf_counter() - t)

    cases = {"(a) raw, 1 sequence at a time": lambda r: _raw(raw, prompt, 1, args, r)}
    for n in (4, 8, 16):
        cases[f"(b) raw, {n} sequences per step"] = lambda r, n=n: _raw(raw, prompt, n, args, r)
    cases["(c) engine, embedded default"] = lambda r: through_engine(engine)
    if single is not None:
        cases["    engine, parallel_sequences=1"] = lambda r: through_engine(single)
    rates: dict[str, list[float]] = {k: [] for k in cases}
    loads: dict[str, list[str]] = {k: [] for k in cases}
    for r in range(args.repeats):  # rounds interleave the cases, so load hits all alike
        for name, fn in cases.items():
            rates[name].append(fn(r))
            loads[name].append(f"{os.getloadavg()[0]:.2f}")
    med = {k: statistics.median(v) for k, v in rates.items()}
    for name in cases:
        print(f"{name:<36} {med[name]:7.1f} tokens/s  (runs {[round(x, 1) for x in rates[name]]}, "
              f"load {' '.join(loads[name])})")
    a, c = med["(a) raw, 1 sequence at a time"], med["(c) engine, embedded default"]
    print(f"(c)/(a) = {c / a:.2f}  (target >= 1.6); engine decoder steps {engine._decoder.steps}, "
          f"prompt tokens evaluated {engine._decoder.prompt_tokens}; load average {_load()}")
    engine.close()
    if single is not None:
        single.close()
    shutil.rmtree(tmp, ignore_errors=True)


def _raw(raw: Raw, prompt: list[int], n_seq: int, args, r: int) -> float:
    seconds = 0.0
    for k in range(max(1, args.samples // n_seq)):
        seconds += raw.run(prompt, n_seq, args.tokens, seed0=1000 * r + 100 * k)
    return max(1, args.samples // n_seq) * n_seq * args.tokens / seconds


if __name__ == "__main__":
    main()
