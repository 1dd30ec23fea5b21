"""Plan a run: which samples it needs, which the store lacks, which this shard does.

    plan = make_plan(cfg, problems, engine)         # every sample of the run
    todo = plan.missing(store.existing_keys(plan.model_fp))
    todo = shard_jobs(todo, cfg.shard.index, cfg.shard.count)
    requests = to_requests(todo, batch_size)

A job is one sample: (problem, sample index) with its rendered prompt, seed
and store key. Raising budget.n from 8 to 16 plans 16 jobs per problem; the
first 8 keys are already stored, so only the other 8 are missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..config import RunConfig
from ..dataset import Problem
from ..engines.base import Engine, GenerationRequest, SamplingParams
from ..store.schema import derive_seed, sample_key

__all__ = ["Job", "Plan", "make_plan", "request_problem_id", "sampling_params", "shard_jobs", "to_requests"]


@dataclass(frozen=True)
class Job:
    key: str
    problem_id: str
    sample_index: int
    prompt: str
    seed: int | None


@dataclass
class Plan:
    model_fp: str
    params: SamplingParams
    base_seed: int
    jobs: list[Job]
    problems: dict[str, Problem]
    prompts: dict[str, str]  # problem id -> rendered prompt

    @property
    def keys(self) -> set[str]:
        return {j.key for j in self.jobs}

    def missing(self, existing: set[str]) -> list[Job]:
        return [j for j in self.jobs if j.key not in existing]


def sampling_params(cfg: RunConfig) -> SamplingParams:
    s = cfg.strategy
    return SamplingParams(
        temperature=float(s.temperature),
        top_p=float(s.top_p),
        max_tokens=int(s.max_tokens),
        top_k=int(s.top_k),
        min_p=float(s.min_p),
        stop=tuple(s.stop),
        logprobs=bool(s.logprobs),
    )


def make_plan(cfg: RunConfig, problems: Sequence[Problem], engine: Engine) -> Plan:
    params = sampling_params(cfg)
    canon = params.canonical()
    fp = engine.identity().fingerprint
    base_seed = int(cfg.strategy.seed)
    jobs: list[Job] = []
    prompts: dict[str, str] = {}
    for p in problems:
        prompt = engine.render(p.messages)
        prompts[p.id] = prompt
        for i in range(cfg.budget.n):
            seed = derive_seed(base_seed, prompt, i) if engine.supports_seed else None
            key = sample_key(fp, prompt, canon, base_seed, seed, i)
            jobs.append(Job(key, p.id, i, prompt, seed))
    return Plan(fp, params, base_seed, jobs, {p.id: p for p in problems}, prompts)


def shard_jobs(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Deterministic split by key hash: every process computes the same partition."""
    if count == 1:
        return list(jobs)
    return [j for j in jobs if int(j.key[:8], 16) % count == index]


def to_requests(jobs: Sequence[Job], plan: Plan, batch_size: int) -> list[GenerationRequest]:
    """Group jobs of one prompt into requests of at most ``batch_size`` samples."""
    by_prompt: dict[str, list[Job]] = {}
    for j in jobs:
        by_prompt.setdefault(j.problem_id, []).append(j)
    requests = []
    for pid, group in by_prompt.items():
        group.sort(key=lambda j: j.sample_index)
        for start in range(0, len(group), max(1, batch_size)):
            chunk = group[start : start + batch_size]
            requests.append(
                GenerationRequest(
                    request_id=f"{pid}|{chunk[0].sample_index}|{len(chunk)}",
                    prompt=plan.prompts[pid],
                    messages=plan.problems[pid].messages,
                    params=plan.params,
                    sample_indices=tuple(j.sample_index for j in chunk),
                    seeds=tuple(j.seed for j in chunk),
                )
            )
    return requests


def request_problem_id(request_id: str) -> str:
    return request_id.rsplit("|", 2)[0]
