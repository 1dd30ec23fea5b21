"""Benchmark: harness overhead against calling the engine directly (target <= 5%).

Same prompts, same seeds, same sampling parameters, so both sides generate
the same tokens with the embedded model (llama-cpp-python, SmolLM2-135M):

  direct   Llama.create_completion for every (prompt, seed), nothing else;
  harness  plan + generate_missing into a fresh store (key hashing, record
           building, one atomic Parquet shard per sample, progress
           accounting), i.e. what `tts-bench run` adds around the engine.

Grading, metrics and report are timed separately (they run once per run,
not per token). Median of --repeats runs, alternating the order.

    python scripts/bench_overhead.py --problems 10 --n 4 --max-tokens 32
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=10)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from tts_bench.config import compose
    from tts_bench.dataset import load_problems, load_task
    from tts_bench.engines import make_engine
    from tts_bench.plan import make_plan
    from tts_bench.runner.generate import generate_missing
    from tts_bench.runner.pipeline import _write_run_files, evaluate
    from tts_bench.store import GenerationStore

    tmp = Path(tempfile.mkdtemp(prefix="tts_bench_overhead_"))
    cfg = compose([f"dataset.size={args.problems}", f"budget.n={args.n}",
                   f"strategy.max_tokens={args.max_tokens}", f"store_dir={tmp}/store",
                   f"runs_dir={tmp}/runs", "bootstrap=1000"])
    problems = load_problems(cfg.dataset)
    engine = make_engine(cfg.engine, cfg.model)
    plan = make_plan(cfg, problems, engine)
    p = plan.params
    llm = engine._llm  # the same loaded model for both sides

    def direct() -> tuple[float, int]:
        tokens = 0
        t = time.perf_counter()
        for job in plan.jobs:
            out = llm.create_completion(
                job.prompt, max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p,
                top_k=0, min_p=p.min_p, typical_p=1.0, repeat_penalty=1.0,
                frequency_penalty=0.0, presence_penalty=0.0, tfs_z=1.0, mirostat_mode=0,
                seed=job.seed)
            tokens += out["usage"]["completion_tokens"]
        return time.perf_counter() - t, tokens

    def harness() -> tuple[float, int, float]:
        shutil.rmtree(tmp / "store", ignore_errors=True)
        store = GenerationStore(tmp / "store")
        t = time.perf_counter()
        fresh = make_plan(cfg, problems, engine)
        todo = fresh.missing(store.existing_keys(fresh.model_fp))
        stats = generate_missing(fresh, todo, engine, store, batch_size=cfg.engine.batch_size,
                                 dataset=cfg.dataset.name, progress=True)
        return time.perf_counter() - t, stats.completion_tokens, stats.engine_seconds

    direct()  # warm-up: page in the weights, build caches
    d_times, h_times, e_times = [], [], []
    for r in range(args.repeats):
        order = (direct, harness) if r % 2 == 0 else (harness, direct)
        for fn in order:
            if fn is direct:
                dt, dtok = direct()
                d_times.append(dt)
            else:
                ht, htok, et = harness()
                h_times.append(ht)
                e_times.append(et)
        assert dtok == htok, f"token counts differ: direct {dtok}, harness {htok}"
    d, h = statistics.median(d_times), statistics.median(h_times)
    print(f"{len(plan.jobs)} samples ({args.problems} problems x n={args.n}), "
          f"{dtok} completion tokens per pass; load average {os.getloadavg()[0]:.2f}")
    print(f"direct engine calls : median {d:.2f}s  ({dtok / d:.1f} tok/s)  "
          f"runs {[round(x, 2) for x in d_times]}")
    print(f"harness generation  : median {h:.2f}s  ({htok / h:.1f} tok/s)  "
          f"runs {[round(x, 2) for x in h_times]}")
    print(f"harness overhead    : {100 * (h - d) / d:+.1f}% of engine time (target <= 5%)")
    print(f"  (time outside the engine's generator inside the harness: "
          f"{statistics.median([h_ - e for h_, e in zip(h_times, e_times)]):.3f}s)")
    run_dir = Path(cfg.runs_dir) / "overhead"
    _write_run_files(run_dir, cfg, plan, problems, load_task(cfg.dataset.name), engine.identity())
    engine.close()
    t = time.perf_counter()
    res = evaluate(run_dir)
    print(f"once per run: grade + metrics + report {time.perf_counter() - t:.2f}s "
          + str({k: round(v, 2) for k, v in res.timings.items()}))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
