"""Benchmark: the generation store at millions of samples, and its write path.

1. Writing: ``--write N`` one-sample groups (as llama.cpp yields them) through
   ``write_shard`` (each appended to the writer's journal, rolled into a
   Parquet shard every 1,000): samples/s and files per 1,000 samples, beside
   the old way (one fsync'd Parquet file per group) on a tenth as many.
2. Listing: the keys of the store (``existing_keys``, and ``key_locations``
   as a run's call layer does at start) in a fresh process: seconds and peak
   RSS (target at 5M: <= 10 s).
3. Store to report (skip with ``--repeats 0``).

The synthetic store holds N generations (problems x samples, realistic
reasoning text ending in \\boxed{answer}, zstd Parquet shards of 10,000 rows),
with a run directory that plans them all; part 3 times the path a real run takes
after generation: verify + collect from the store (the plan matched to the
store's keys; texts left in the store), grade (answers extracted file by file
in 2 worker processes, each distinct answer graded once with math-verify),
reduce per problem, every metric with 1,000 bootstrap resamples, and the
report files (samples.parquet written one store file at a time).
``--shuffled`` stores the rows in random order against the plan, as a real
run's completion order and interleaved writers do.

    python scripts/bench_store.py                    # 1000 problems x 1000 samples
    python scripts/bench_store.py --problems 100 --samples 1000 --repeats 1
    python scripts/bench_store.py --problems 500 --samples 10000 --repeats 1   # 5M (LLM Monkeys)
    python scripts/bench_store.py --problems 500 --samples 10000 --repeats 1 --shuffled
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

from tts_bench.store import ARROW_SCHEMA, SCHEMA_VERSION, GenerationStore

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


LIST_CHILD = """
import json, resource, sys, time
from tts_bench.store import GenerationStore
t = time.perf_counter()
n = len(GenerationStore(sys.argv[1]).existing_keys(sys.argv[2]))
keys_s = time.perf_counter() - t
t = time.perf_counter()
m = len(GenerationStore(sys.argv[1]).key_locations(sys.argv[2]))
print(json.dumps({"keys": n, "keys_s": keys_s, "locations": m, "locations_s": time.perf_counter() - t,
                  "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def bench_writes(root: Path, n: int) -> None:
    """One-sample groups through the journal, and (on n/10) as one Parquet file each."""
    text = "Let us work through the problem step by step. " * 8 + "\\boxed{42}"
    now = time.time()
    rows = [_row(os.urandom(32).hex(), f"p{i // 100:05d}", i % 100, text, 300, now) for i in range(n)]
    for label, count, write in (
            ("journal (rolled every 1,000)", n, "write_shard"),
            ("one Parquet file per group (before)", max(1, n // 10), "write_parquet_shard")):
        store = GenerationStore(root / label.split()[0])
        t = time.perf_counter()
        for r in rows[:count]:
            getattr(store, write)(FP, [r])
        store.close()
        wall = time.perf_counter() - t
        files = len(store.files(FP))
        assert len(store.existing_keys(FP)) == count
        print(f"write {count:,} one-sample groups, {label}: {count / wall:,.0f} samples/s, "
              f"{files} files = {files / (count / 1000):.1f} per 1,000 samples")


def bench_listing(store_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", LIST_CHILD, str(store_dir), FP],
                          capture_output=True, text=True, check=True)
    rep = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"list keys (fresh process): existing_keys {rep['keys']:,} in {rep['keys_s']:.1f}s, "
          f"key_locations {rep['locations']:,} in {rep['locations_s']:.1f}s (target <= 10 s at 5M); "
          f"peak RSS {rep['rss_gib']:.2f} GiB")


def _row(key: str, pid: str, j: int, text: str, tokens: int, now: float) -> dict:
    return {
        "key": key, "schema_version": SCHEMA_VERSION, "model_fp": FP, "model_id": "bench",
        "weights_hash": "w", "engine": "bench", "engine_version": "0", "dataset": "bench",
        "problem_id": pid, "prompt_sha": "s", "sample_index": j, "base_seed": 0, "seed": j,
        "params_json": "{}", "temperature": 0.7, "max_tokens": 1024, "text": text,
        "prompt_tokens": 40, "completion_tokens": tokens, "finish_reason": "stop",
        "mean_logprob": None, "token_logprobs": None, "latency_s": 0.0, "created_at": now,
    }


def build(root: Path, problems: int, samples: int, seed: int = 0, shuffled: bool = False) -> Path:
    """The store and run directory, built column-wise (5M generations in about a minute)."""
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    store = GenerationStore(root / "store")
    golds = rng.integers(1, 10_000, problems)
    p_correct = rng.beta(1.2, 1.5, problems)
    filler = ("Let us work through the problem step by step. First we set up the quantities "
              "and simplify the expression carefully, checking each intermediate result. So the result is ")
    n = problems * samples
    pid = np.repeat(np.array([f"p{i:05d}" for i in range(problems)]), samples)
    idx = np.tile(np.arange(samples), problems)
    correct = rng.random(n) < np.repeat(p_correct, samples)
    offset = np.array([1, -1, 10, 2])[rng.integers(0, 4, n)]
    answers = np.repeat(golds, samples) + np.where(correct, 0, offset)
    keys = np.frombuffer(rng.bytes(32 * n).hex().encode(), dtype="S64")  # random, so unique
    toks = rng.integers(80, 600, n)
    plan_pid, plan_idx, plan_key = pid, idx, keys
    if shuffled:  # as a real run's store is: completion order, several writers interleaved
        perm = rng.permutation(n)
        pid, idx, answers, keys, toks = pid[perm], idx[perm], answers[perm], keys[perm], toks[perm]
    now = time.time()
    shard_rows = 10_000
    const = {c: None for c in ARROW_SCHEMA.names} | _row("", "", 0, "", 0, now)  # later columns null
    for lo in range(0, n, shard_rows):
        hi = min(n, lo + shard_rows)
        ans = pa.array(answers[lo:hi]).cast(pa.string())
        cols = {c: pa.array([v] * (hi - lo), ARROW_SCHEMA.field(c).type) for c, v in const.items()}
        cols.update(key=pa.array(keys[lo:hi]).cast(pa.string()), problem_id=pa.array(pid[lo:hi]),
                    sample_index=pa.array(idx[lo:hi], pa.int32()), seed=pa.array(idx[lo:hi], pa.int64()),
                    completion_tokens=pa.array(toks[lo:hi], pa.int32()),
                    text=pc.binary_join_element_wise(filler, ans, ". Therefore the answer is \\boxed{",
                                                     ans, "}.", ""))
        cols = {c: cols[c].cast(ARROW_SCHEMA.field(c).type) for c in cols}
        store.write_parquet_shard(FP, pa.table(cols, schema=ARROW_SCHEMA))
    golds = [str(int(g)) for g in golds]
    run = root / "runs" / "bench"
    run.mkdir(parents=True)
    import pandas as pd
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"problem_id": plan_pid, "sample_index": plan_idx,
                             "key": pa.array(plan_key).cast(pa.string())}), run / "plan.parquet")
    pd.DataFrame({"problem_id": [f"p{i:05d}" for i in range(problems)], "answer": golds,
                  "level": [None] * problems}).astype({"level": "object"}).to_parquet(
        run / "problems.parquet", index=False)
    (run / "manifest.json").write_text(json.dumps({
        "strategy": "parallel",
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
    ap.add_argument("--repeats", type=int, default=3, help="store-to-report runs (0: none)")
    ap.add_argument("--shuffled", action="store_true",
                    help="store rows in random order against the plan (a real run's completion order)")
    ap.add_argument("--write", type=int, default=20_000, help="one-sample groups to write (0: skip)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tts_bench_store_"))
    try:
        if args.write:
            bench_writes(tmp / "writes", args.write)
            shutil.rmtree(tmp / "writes")
        t = time.perf_counter()
        run = build(tmp, args.problems, args.samples, shuffled=args.shuffled)
        build_s = time.perf_counter() - t
        size = sum(p.stat().st_size for p in (tmp / "store").rglob("*.parquet"))
        print(f"store: {args.problems * args.samples:,} generations, "
              f"{len(list((tmp / 'store').rglob('part-*.parquet')))} shards, "
              f"{size / 2**20:.1f} MiB on disk (built in {build_s:.1f}s)")
        bench_listing(tmp / "store")
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
        if walls:
            print(f"store -> metrics, median of {args.repeats}: {statistics.median(walls):.1f}s "
                  f"(target <= 60 s); peak RSS of the pipeline process is per run above "
                  f"(target <= 4 GiB at 5M; grading workers are separate processes of ~0.15 GiB each)")
        print(f"load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
