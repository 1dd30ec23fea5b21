"""Verifier scores: one row per (verifier, scored call, step boundaries), content-addressed.

A score is a stage after generation, like a grade, but it costs a model call,
so it is stored like a generation: append-only, checksummed Parquet shards
under ``scores/<verifier_fp>/``, written as each batch finishes, deduplicated
by key on read. Every run and every strategy that asks the same verifier
about the same solution (the same call, cut into the same steps) reads the
same row, and a killed scoring pass resumes where it stopped.

    store = ScoreStore("results/store")
    key = score_key(verifier_fp, sample_key, steps)
    store.write_shard(verifier_fp, [ScoreRecord(key=key, ...)])
    table = store.read(verifier_fp, keys={key})
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Sequence

import pyarrow as pa

from .schema import _f, arrow_schema_of
from .store import ShardStore

SCORE_KEY_VERSION = 1
SCORE_ROW_VERSION = 1


@dataclass
class ScoreRecord:
    """One verifier's scores for one (partial) solution, as stored."""

    key: str = _f(pa.string(), "sha256 hex of (verifier, scored call, step boundaries): see score_key")
    schema_version: int = _f(pa.int16(), "row version of this record (SCORE_ROW_VERSION)", SCORE_ROW_VERSION)
    verifier_fp: str = _f(pa.string(), "VerifierIdentity.fingerprint: kind, weights, input format")
    verifier: str = _f(pa.string(), "the verifier config's name (informational)")
    kind: str = _f(pa.string(), '"prm", "orm", "genrm" or "http"')
    sample_key: str = _f(pa.string(), "key of the generation scored (its last call, for a partial one)")
    dataset: str = _f(pa.string(), "task name (informational)")
    problem_id: str = _f(pa.string(), "problem id (informational)")
    steps_sha: str = _f(pa.string(), "sha256 of the step texts scored (the boundaries are in the key)")
    n_steps: int = _f(pa.int32(), "steps scored")
    step_scores: list = _f(pa.list_(pa.float64()), "one score in [0, 1] (or a raw reward) per step")
    verifications: list | None = _f(pa.list_(pa.float64()), "genrm: each verification's P(Yes), in order")
    verification_keys: list | None = _f(pa.list_(pa.string()), "genrm: generation keys of the verifications")
    score_source: str | None = _f(pa.string(), 'genrm: "logprob_yes", "logprob_no", "text" per majority')
    input_tokens: int = _f(pa.int64(), "tokens the verifier read for this score (all verifications)")
    output_tokens: int = _f(pa.int64(), "tokens the verifier generated (genrm; 0 for reward models)")
    latency_s: float = _f(pa.float32(), "wall time attributed to this score")
    created_at: float = _f(pa.float64(), "unix time the record was made")

    def row(self) -> dict:
        return asdict(self)


SCORE_SCHEMA = arrow_schema_of(ScoreRecord, SCORE_ROW_VERSION, SCORE_KEY_VERSION)


def steps_sha(steps: Sequence[str]) -> str:
    """Hash of the step texts: boundaries matter (the same text cut differently is another key)."""
    return hashlib.sha256(json.dumps(list(steps), ensure_ascii=False).encode("utf-8")).hexdigest()


def score_key(verifier_fp: str, sample_key: str, steps: Sequence[str], question: str = "") -> str:
    """Content address of one score: the verifier, the call scored and how it was cut into steps.

    The question the verifier is shown is in the key too: the same text
    scored against another problem statement is another score.
    """
    ident = {"v": SCORE_KEY_VERSION, "verifier": verifier_fp, "sample": sample_key,
             "steps": steps_sha(steps), "question": hashlib.sha256(question.encode()).hexdigest()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ScoreStore(ShardStore):
    """Verifier scores (:class:`ScoreRecord`), one partition per verifier fingerprint."""

    SUBDIR = "scores"
    SCHEMA = SCORE_SCHEMA
    ROW_VERSION = SCORE_ROW_VERSION
    QUARANTINE = "scores"
    INFO_COLUMNS = ("verifier", "kind", "dataset")
