"""The verifier seam: score a solution, or each step of a partial one.

A verifier is handed :class:`ScoreRequest` objects (the question, the
solution cut into steps, the key of the generation that produced it) and
yields :class:`Score` objects: one score per step, with the tokens it read
and wrote. Reward models (``prm``, ``orm``, ``http``) score every step of
the text; a generative verifier (``genrm``) scores the whole solution once.
How step scores become one score (``last``, ``min``, ``prod``, ``mean``) is
configuration, applied by :func:`aggregate` for selection and search alike.

    verifier = make_verifier(cfg.verifier, cfg)          # verifiers/__init__.py
    for group in verifier.score([ScoreRequest("key", "p1", question, steps)]):
        for i, score in group: ...
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Iterator, Protocol, Sequence

from ..config import ConfigError


class VerifierError(ConfigError):
    """A verifier that cannot score (bad format, unreachable server); the message says what to fix."""


@dataclass(frozen=True)
class ScoreRequest:
    """One (partial) solution to score."""

    sample_key: str  # the generation scored (for a partial solution, its last call)
    problem_id: str
    question: str  # the problem statement as the policy saw it (the last user message)
    steps: tuple[str, ...]  # the solution cut into steps (one step: scored whole)



@dataclass
class Score:
    """A verifier's answer for one request."""

    step_scores: list[float]  # one per step (fewer when the input had to be cut)
    input_tokens: int  # tokens the verifier read
    output_tokens: int = 0  # tokens it generated (genrm)
    latency_s: float = 0.0
    verifications: list[float] | None = None  # genrm: each verification's P(Yes)
    verification_keys: list[str] | None = None  # genrm: their generation keys
    source: str | None = None  # genrm: how most verifications were read (logprob_yes, logprob_no, text)


@dataclass(frozen=True)
class VerifierIdentity:
    """What makes two verifiers give the same scores: kind, weights, input format."""

    name: str
    kind: str
    model_id: str
    weights_hash: str
    format: dict = field(default_factory=dict)  # every config field that changes a score

    @property
    def fingerprint(self) -> str:
        raw = json.dumps({"kind": self.kind, "model": self.model_id, "weights": self.weights_hash,
                          "format": self.format}, sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


class Verifier(Protocol):
    name: str
    kind: str

    def identity(self) -> VerifierIdentity: ...

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[tuple[int, Score]]]:
        """Yield (index into ``requests``, Score) in groups as they finish."""
        ...

    def close(self) -> None: ...


# Fields of a verifier config that never change a score (batching, where it runs, naming).
_NOT_IN_IDENTITY = {"name", "batch_size", "device", "aggregate", "base_url", "api_key_env", "timeout_s",
                    "max_retries", "concurrency", "model_name", "path", "revision", "served_model",
                    "step_delimiter"}


def format_of(vcfg) -> dict:
    """The config fields that shape what the verifier reads and how a score is read out."""
    return {k: v for k, v in sorted(asdict(vcfg).items()) if k not in _NOT_IN_IDENTITY}


def split_steps(text: str, delimiter: str) -> tuple[str, ...]:
    """A solution cut into steps at ``delimiter`` (not kept); empty pieces dropped.

    A text with no content is one empty step, so every solution gets a score.
    """
    if not delimiter:
        return (text.strip(),)
    steps = tuple(s.strip() for s in text.split(delimiter) if s.strip())
    return steps or ("",)


def aggregate(step_scores: Sequence[float], how: str) -> float:
    """One score from step scores: last, min, prod or mean (NaN for none)."""
    from ..metrics.selection import aggregate_steps

    return float(aggregate_steps([list(step_scores)], how)[0])

