"""The batch engine protocol every backend implements.

A runner hands an engine a list of :class:`GenerationRequest` (one rendered
prompt, explicit sampling parameters, and the sample indices and seeds it
wants) and receives :class:`Completion` objects, one per sample, as they
finish. Engines never choose a sampling default of their own: every value the
backend needs is built from :class:`SamplingParams` in the engine's adapter.

    engine = make_engine(cfg.engine, cfg.model)
    prompt = engine.render(messages)
    for done in engine.generate([GenerationRequest(...)]):
        store.add(done)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Iterator, Protocol, Sequence


@dataclass(frozen=True)
class Message:
    """One chat message: role is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """Every sampling parameter that can change a generation.

    All of them enter the store key, so two runs that differ in any one never
    share a sample.
    """

    temperature: float
    top_p: float
    max_tokens: int
    top_k: int = -1  # -1: disabled
    min_p: float = 0.0
    stop: tuple[str, ...] = ()
    logprobs: bool = False  # return per-token logprobs of the sampled tokens

    def canonical(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class ModelIdentity:
    """What identifies the weights a sample came from."""

    model_id: str  # path, hub id or served model name
    weights_hash: str  # sha256 of the weights file(s), or a hub revision
    engine: str  # engine name, e.g. "llamacpp"
    engine_version: str

    @property
    def fingerprint(self) -> str:
        """Stable short hash of the model (not the engine: same weights, same key)."""
        raw = json.dumps({"model_id": self.model_id, "weights": self.weights_hash}, sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GenerationRequest:
    """One rendered prompt and the samples wanted from it.

    ``sample_indices[i]`` and ``seeds[i]`` describe the i-th sample; an engine
    that cannot honour per-sample seeds says so through ``supports_seed``
    and the runner records ``seed=None`` for its samples.
    """

    request_id: str
    prompt: str  # the rendered prompt the key was computed from
    messages: tuple[Message, ...]
    params: SamplingParams
    sample_indices: tuple[int, ...]
    seeds: tuple[int | None, ...]

    @property
    def n(self) -> int:
        return len(self.sample_indices)


@dataclass
class Completion:
    """One finished sample."""

    request_id: str
    sample_index: int
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop", "length" or an engine-specific reason
    latency_s: float  # wall time attributed to this sample
    token_logprobs: list[float] | None = field(default=None)


class Engine(Protocol):
    """A generation backend. Heavy imports happen in ``__init__``, never at module import."""

    name: str
    supports_seed: bool

    def identity(self) -> ModelIdentity: ...

    def render(self, messages: Sequence[Message]) -> str:
        """The exact text the model sees for these chat messages."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[list[Completion]]:
        """Yield completions in groups as they finish (any order)."""
        ...

    def close(self) -> None: ...


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
