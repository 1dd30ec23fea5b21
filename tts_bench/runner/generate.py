"""Generate the planned samples the store lacks, writing them as they finish.

    stats = generate_missing(plan, jobs, engine, store, batch_size=16, dataset="math500")

Every group of completions the engine yields becomes one store shard right
away (write-then-rename), so an interrupted run (Ctrl-C, kill -9, a crash)
loses only samples that were still in flight; rerunning plans exactly those.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from ..engines.base import Completion, Engine
from ..plan import Job, Plan, request_problem_id, to_requests
from ..store import SCHEMA_VERSION, GenerationStore
from ..store.schema import prompt_sha


@dataclass
class GenerationStats:
    planned: int = 0
    generated: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0  # time spent inside the engine's generator
    shards_written: int = 0
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)


def _record(c: Completion, job: Job, plan: Plan, ident, dataset: str, params_json: str) -> dict:
    lps = c.token_logprobs
    return {
        "key": job.key,
        "schema_version": SCHEMA_VERSION,
        "model_fp": plan.model_fp,
        "model_id": ident.model_id,
        "weights_hash": ident.weights_hash,
        "engine": ident.engine,
        "engine_version": ident.engine_version,
        "dataset": dataset,
        "problem_id": job.problem_id,
        "prompt_sha": prompt_sha(job.prompt),
        "sample_index": job.sample_index,
        "base_seed": plan.base_seed,
        "seed": job.seed,
        "params_json": params_json,
        "temperature": plan.params.temperature,
        "max_tokens": plan.params.max_tokens,
        "text": c.text,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
        "finish_reason": c.finish_reason,
        "mean_logprob": (sum(lps) / len(lps)) if lps else None,
        "token_logprobs": lps,
        "latency_s": c.latency_s,
        "created_at": time.time(),
    }


def _params_json(plan: Plan) -> str:
    import json

    return json.dumps(plan.params.canonical(), sort_keys=True, separators=(",", ":"))


def generate_missing(
    plan: Plan,
    jobs: Sequence[Job],
    engine: Engine,
    store: GenerationStore,
    *,
    batch_size: int,
    dataset: str,
    progress: bool = True,
) -> GenerationStats:
    stats = GenerationStats(planned=len(jobs))
    if not jobs:
        return stats
    ident = engine.identity()
    params_json = _params_json(plan)
    by_slot = {(j.problem_id, j.sample_index): j for j in jobs}
    requests = to_requests(jobs, plan, batch_size)
    t0 = time.perf_counter()
    bar = _Progress(len(jobs), enabled=progress)
    try:
        with bar:
            gen = engine.generate(requests)
            while True:
                te = time.perf_counter()
                try:
                    group = next(gen)
                except StopIteration:
                    break
                finally:
                    stats.engine_seconds += time.perf_counter() - te
                records = []
                for c in group:
                    job = by_slot.get((request_problem_id(c.request_id), c.sample_index))
                    if job is None:
                        stats.errors.append(f"engine returned unplanned sample {c.sample_index}")
                        continue
                    records.append(_record(c, job, plan, ident, dataset, params_json))
                    stats.completion_tokens += c.completion_tokens
                    stats.prompt_tokens += c.prompt_tokens
                if store.write_shard(plan.model_fp, records) is not None:
                    stats.shards_written += 1
                stats.generated += len(records)
                bar.advance(len(records), sum(r["completion_tokens"] for r in records))
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        stats.seconds = time.perf_counter() - t0
    return stats


class _Progress:
    """Rich progress bar: samples, tokens/s, ETA. Silent when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.enabled = enabled
        self.tokens = 0
        self.t0 = time.perf_counter()

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._p = Progress(
                TextColumn("[bold]generating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("samples"),
                TextColumn("{task.fields[tps]:>7.1f} tok/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._p.__enter__()
            self._task = self._p.add_task("gen", total=self.total, tps=0.0)
        return self

    def advance(self, samples: int, tokens: int) -> None:
        self.tokens += tokens
        if self.enabled:
            dt = max(time.perf_counter() - self.t0, 1e-9)
            self._p.update(self._task, advance=samples, tps=self.tokens / dt)

    def __exit__(self, *exc):
        if self.enabled:
            self._p.__exit__(*exc)
        return False
