"""The cached score layer: every verifier score content-addressed in the score store.

Like the call layer for generations: the layer keys each request (verifier
fingerprint, the generation scored, its step texts, the question), answers
what the store holds without touching the verifier, sends only the rest,
and writes each group the verifier yields at once. A rerun scores nothing;
a killed pass resumes at the first unwritten group; every run and strategy
asking the same verifier about the same solution shares the row.

    layer = ScoreLayer(verifier, ScoreStore(store_dir), dataset="math500")
    scores = layer.score(requests)           # one Score per request, in order
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from ..store import ScoreRecord, ScoreStore, score_key, steps_sha
from .base import Score, ScoreRequest, Verifier

SCORE_COLUMNS = ["key", "step_scores", "verifications", "verification_keys", "score_source",
                 "input_tokens", "output_tokens", "latency_s"]


@dataclass
class ScoreStats:
    requested: int = 0
    cached: int = 0  # read from the score store
    scored: int = 0  # computed by the verifier now
    input_tokens: int = 0  # verifier input tokens of the scores computed now
    output_tokens: int = 0
    verifier_seconds: float = 0.0
    shards_written: int = 0


class ScoreLayer:
    def __init__(self, verifier: Verifier, store: ScoreStore, *, dataset: str, progress=None):
        self.verifier = verifier
        self.store = store
        self.identity = verifier.identity()
        self.fp = self.identity.fingerprint
        self.dataset = dataset
        self.progress = progress
        self.stats = ScoreStats()
        self._existing = dict(store.key_locations(self.fp))
        self._memo: dict[str, Score] = {}

    def key(self, req: ScoreRequest) -> str:
        return score_key(self.fp, req.sample_key, req.steps, req.question)

    def held(self, requests: Sequence[ScoreRequest]) -> int:
        """How many of these the store (or this layer) already holds."""
        return sum(1 for r in requests if (k := self.key(r)) in self._memo or k in self._existing)

    def score(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        keys = [self.key(r) for r in requests]
        self.stats.requested += len(keys)
        to_read = [k for k in dict.fromkeys(keys) if k not in self._memo and k in self._existing]
        if to_read:
            paths = list(dict.fromkeys(self._existing[k] for k in to_read if self._existing[k] is not None))
            for row in self.store.read_from(paths, keys=set(to_read), columns=SCORE_COLUMNS).to_pylist():
                self._memo[row["key"]] = _score_of(row)
            self.stats.cached += sum(1 for k in to_read if k in self._memo)
        todo: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in self._memo and k not in todo:
                todo[k] = i
        if todo:
            self._run(requests, todo)
        return [self._memo[k] for k in keys]

    def _run(self, requests: Sequence[ScoreRequest], todo: dict[str, int]) -> None:
        order = list(todo.items())
        batch = [requests[i] for _, i in order]
        if self.progress is not None:
            self.progress.add_total(len(batch))
        gen = self.verifier.score(batch)
        while True:
            t = time.perf_counter()
            try:
                group = next(gen)
            except StopIteration:
                break
            finally:
                self.stats.verifier_seconds += time.perf_counter() - t
            records = [self._record(order[j][0], batch[j], s) for j, s in group]
            if self.store.write_shard(self.fp, records) is not None:
                self.stats.shards_written += 1
            for (_, s), rec in zip(group, records):
                self._memo[rec.key] = s
                self._existing[rec.key] = None
                self.stats.input_tokens += s.input_tokens
                self.stats.output_tokens += s.output_tokens
            self.stats.scored += len(records)
            if self.progress is not None:
                self.progress.advance(len(records), sum(s.output_tokens for _, s in group))

    def _record(self, key: str, req: ScoreRequest, s: Score) -> ScoreRecord:
        return ScoreRecord(
            key=key, verifier_fp=self.fp, verifier=self.identity.name, kind=self.identity.kind,
            sample_key=req.sample_key, dataset=self.dataset, problem_id=req.problem_id,
            steps_sha=steps_sha(req.steps), n_steps=len(req.steps), step_scores=list(s.step_scores),
            verifications=s.verifications, verification_keys=s.verification_keys, score_source=s.source,
            input_tokens=int(s.input_tokens), output_tokens=int(s.output_tokens), latency_s=s.latency_s,
            created_at=time.time())


def _score_of(row: dict) -> Score:
    return Score(step_scores=list(row["step_scores"] or []), input_tokens=int(row["input_tokens"] or 0),
                 output_tokens=int(row["output_tokens"] or 0), latency_s=float(row["latency_s"] or 0.0),
                 verifications=row["verifications"], verification_keys=row["verification_keys"],
                 source=row["score_source"])
