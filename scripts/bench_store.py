"""Benchmark: a 1,000,000-generation store to metrics (target: <= 60 s, <= 2 GiB RSS).

Builds a synthetic store of N generations (problems x samples, realistic
reasoning text ending in \\boxed{answer}, zstd Parquet shards of 10,000 rows),
a run directory that plans them all, then times the path a real run takes
after generation: verify + collect from the store, grade (each distinct
answer once, math-verify in 2 worker processes), reduce per problem, pass@k
and maj@k curves with 1,000 bootstrap resamples, and the report files.

    python scripts/bench_store.py                    # 1000 problems x 1000 samples
    python scripts/bench_store.py --problems 100 --samples 1000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from tts_bench.store import ARROW_SCHEMA, SCHEMA_VERSION, GenerationStore, sample_key

FP = "benchstorefp0000"

CHILD = """
import json, resource, sys, time
from pathlib import Path
from tts_bench.runner import evaluate
t = time.perf_counter()
res = evaluate(Path(sys.argv[1]))
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "timings": res.timings,
                  "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "grader_calls": res.grade_stats["grader_calls"],
                  "samples": res.grade_stats["samples"]}))
"""


def build(root: Path, problems: int, samples: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    store = GenerationStore(root / "store")
    golds = [str(int(x)) for x in rng.integers(1, 10_000, problems)]
    p_correct = rng.beta(1.2, 1.5, problems)
    plan_pid, plan_idx, plan_key = [], [], []
    shard_rows = 10_000
    buf: dict[str, list] = {c: [] for c in ARROW_SCHEMA.names}
    filler = ("Let us work through the problem step by step. First we set up the quantities "
              "and simplify the expression carefully, checking each intermediate result. ")
    now = time.time()
    for i in range(problems):
        pid = f"p{i:05d}"
        prompt = f"Problem {i}: compute the value."
        wrong = [str(int(golds[i]) + d) for d in (1, -1, 10, 2)]
        correct = rng.random(samples) < p_correct[i]
        choice = rng.integers(0, len(wrong), samples)
        toks = rng.integers(80, 600, samples)
        for j in range(samples):
            key = sample_key(FP, prompt, {"temperature": 0.7}, 0, j, j)
            ans = golds[i] if correct[j] else wrong[choice[j]]
            row = {
                "key": key, "schema_version": SCHEMA_VERSION, "model_fp": FP, "model_id": "bench",
                "weights_hash": "w", "engine": "bench", "engine_version": "0", "dataset": "bench",
                "problem_id": pid, "prompt_sha": "s", "sample_index": j, "base_seed": 0, "seed": j,
                "params_json": "{}", "temperature": 0.7, "max_tokens": 1024,
                "text": f"{filler}So the result is {ans}. Therefore the answer is \\boxed{{{ans}}}.",
                "prompt_tokens": 40, "completion_tokens": int(toks[j]),
                "finish_reason": "stop", "mean_logprob": None, "token_logprobs": None,
                "latency_s": 0.0, "created_at": now,
            }
            for c, v in row.items():
                buf[c].append(v)
            plan_pid.append(pid)
            plan_idx.append(j)
            plan_key.append(key)
            if len(buf["key"]) >= shard_rows:
                store.write_shard(FP, pa.table(buf, schema=ARROW_SCHEMA))
                buf = {c: [] for c in ARROW_SCHEMA.names}
    if buf["key"]:
        store.write_shard(FP, pa.table(buf, schema=ARROW_SCHEMA))
    run = root / "runs" / "bench"
    run.mkdir(parents=True)
    import pandas as pd

    pd.DataFrame({"problem_id": plan_pid, "sample_index": plan_idx, "key": plan_key}).to_parquet(
        run / "plan.parquet", index=False)
    pd.DataFrame({"problem_id": [f"p{i:05d}" for i in range(problems)], "answer": golds,
                  "level": [None] * problems}).astype({"level": "object"}).to_parquet(
        run / "problems.parquet", index=False)
    (run / "manifest.json").write_text(json.dumps({
        "config": {"budget": {"n": samples, "ks": None}, "grade_workers": 2,
                   "grade_timeout_s": 10.0, "bootstrap": 1000, "plot": True},
        "task": {"name": "bench", "extractor": "boxed", "grader": "math"},
        "model": {"fingerprint": FP}, "store_dir": str(root / "store"),
    }))
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tts_bench_store_"))
    try:
        t = time.perf_counter()
        run = build(tmp, args.problems, args.samples)
        build_s = time.perf_counter() - t
        size = sum(p.stat().st_size for p in (tmp / "store").rglob("*.parquet"))
        print(f"store: {args.problems * args.samples:,} generations, "
              f"{len(list((tmp / 'store').rglob('part-*.parquet')))} shards, "
              f"{size / 2**20:.1f} MiB on disk (built in {build_s:.1f}s)")
        walls = []
        for r in range(args.repeats):
            shutil.rmtree(tmp / "store" / "grades", ignore_errors=True)  # grade from scratch
            # A fresh process per repeat, so its peak RSS is the pipeline's own,
            # not the store builder's.
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, str(run)], capture_output=True, text=True, check=True)
            rep = json.loads(proc.stdout.strip().splitlines()[-1])
            walls.append(rep["wall_s"])
            print(f"  run {r + 1}: {rep['wall_s']:.1f}s  " + "  ".join(
                f"{k.removesuffix('_s')} {v:.1f}s" for k, v in rep["timings"].items())
                + f"  peak RSS {rep['rss_gib']:.2f} GiB"
                + f"  (grader calls {rep['grader_calls']:,} for {rep['samples']:,} samples)")
        print(f"store -> metrics, median of {args.repeats}: {statistics.median(walls):.1f}s "
              f"(target <= 60 s); peak RSS of the pipeline process is per run above "
              f"(target <= 2 GiB; grading workers are separate processes of ~0.15 GiB each)")
        print(f"load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
