"""Benchmark: harness overhead of strategies on the call layer against calling the engine directly.

For each strategy (parallel, budget-forcing, revise by default) it runs the
strategy through the cached call layer into a fresh store with the embedded
model, recording every GenerationRequest the engine received. Then it
replays exactly those requests, in the same order, straight into the
engine (same prompts, prefixes, seeds and parameters, so the same tokens).
The difference is what the harness adds around the engine: keys, store
reads and writes (one atomic Parquet shard per group), trajectory
bookkeeping, progress. Target: at most 5% of engine time. Median of
--repeats, alternating the order.

    python scripts/bench_overhead.py --problems 6 --n 2 --strategies parallel,budget-forcing
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

OVERRIDES = {
    "parallel": ["strategy=parallel-short"],
    "budget-forcing": ["strategy=budget-forcing-short", "strategy.budgets=[8,16,32]"],
    "revise": ["strategy=parallel-short", "strategy=revise", "strategy.depth=3", "strategy.max_tokens=32"],
    "adaptive": ["strategy=adaptive", "strategy.max_tokens=32", "strategy.confidence=0.9"],
}


class Recording:
    """Wraps an engine: records every request and the time spent inside its generator."""

    def __init__(self, engine):
        self.engine = engine
        self.requests = []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def generate(self, requests):
        self.requests += list(requests)
        yield from self.engine.generate(requests)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=6)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategies", default="parallel,budget-forcing,revise")
    args = ap.parse_args()

    from tts_bench.calls import CallLayer
    from tts_bench.config import compose
    from tts_bench.dataset import load_problems, load_task
    from tts_bench.engines import make_engine
    from tts_bench.store import GenerationStore
    from tts_bench.strategies import AnswerReader, StrategyProblem, make_strategy

    tmp = Path(tempfile.mkdtemp(prefix="tts_bench_overhead_"))
    engine = None
    print(f"{args.problems} problems x n={args.n}; load average {os.getloadavg()[0]:.2f}")
    for name in args.strategies.split(","):
        cfg = compose([f"dataset.size={args.problems}", f"budget.n={args.n}", *OVERRIDES[name]])
        if engine is None:
            engine = make_engine(cfg.engine, cfg.model)
        problems = [StrategyProblem(p.id, p.messages) for p in load_problems(cfg.dataset)]
        answers = AnswerReader(load_task(cfg.dataset.name).extractor)

        def harness(cfg=cfg, problems=problems, answers=answers, engine=engine):
            shutil.rmtree(tmp / "store", ignore_errors=True)
            rec = Recording(engine)
            t = time.perf_counter()
            layer = CallLayer(rec, GenerationStore(tmp / "store"), base_seed=0, dataset="arith",
                              batch_size=cfg.engine.batch_size)
            make_strategy(cfg, answers).run(problems, layer)
            return time.perf_counter() - t, layer.stats, rec.requests

        def direct(requests, engine=engine):
            t = time.perf_counter()
            tokens = 0
            for group in engine.generate(requests):
                tokens += sum(c.completion_tokens for c in group)
            return time.perf_counter() - t, tokens

        _, _, requests = harness()  # warm-up, and the requests to replay
        h_times, d_times = [], []
        for r in range(args.repeats):
            for side in (("h", "d") if r % 2 == 0 else ("d", "h")):
                if side == "h":
                    ht, stats, requests = harness()
                    h_times.append(ht)
                else:
                    dt, dtok = direct(requests)
                    d_times.append(dt)
        assert dtok == stats.completion_tokens, (dtok, stats.completion_tokens)
        h, d = statistics.median(h_times), statistics.median(d_times)
        print(f"{name:<15} {stats.generated} samples in {stats.engine_calls} rounds, {dtok} tokens: "
              f"direct {d:.2f}s, harness {h:.2f}s -> overhead {100 * (h - d) / d:+.1f}% "
              f"(target <= 5%); runs direct {[round(x, 2) for x in d_times]} "
              f"harness {[round(x, 2) for x in h_times]}")
    if engine is not None:
        engine.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
