"""The engine seam: continue *prompt + assistant prefix*, n times, with explicit parameters.

An engine does one thing. The cached call layer (``tts_bench.calls``) hands
it a list of :class:`GenerationRequest` (a rendered prompt, an optional
assistant prefix as text and, where the engine takes them, as token ids,
explicit sampling parameters, and the sample indices and seeds it wants) and
receives :class:`Completion` objects, one per sample, as they finish: text,
token ids, token counts, a stop reason (``eos``, ``stop_string`` with the
string, ``stop_token``, ``length``), optional logprobs and timing. Engines
never choose a sampling default of their own and never learn a strategy.

    engine = make_engine(cfg.engine, cfg.model)
    prompt = engine.render(messages)
    for done in engine.generate([GenerationRequest(0, prompt, messages, params, (0,), (7,))]):
        ...

Each engine declares :class:`Capabilities` (``engine_capabilities`` in
``engines/__init__.py`` answers from the config alone, before any model
loads), so a strategy that needs prefix continuation or token ids fails at
compose time with one line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Iterator, Protocol, Sequence

from ..models.files import sha256_file  # noqa: F401 (engines hash weights with it)

# Why a completion ended. ``finish_reason`` keeps the OpenAI spelling ("stop",
# "length") that stores written before stop reasons existed hold.
STOP_EOS = "eos"  # the model's end-of-sequence token
STOP_STRING = "stop_string"  # one of SamplingParams.stop (Completion.stop_string says which)
STOP_TOKEN = "stop_token"  # one of SamplingParams.stop_token_ids (Completion.stop_string holds its id)
STOP_LENGTH = "length"  # max_tokens reached
STOP_REASONS = (STOP_EOS, STOP_STRING, STOP_TOKEN, STOP_LENGTH)


class EngineError(RuntimeError):
    """An engine failed in a way its message explains in full (a server that cannot be
    reached, a request the server rejected): the CLI prints the message as one line."""


@dataclass(frozen=True)
class Message:
    """One chat message: role is "system", "user" or "assistant"."""

    role: str
    content: str


# Fields added after key version 1. They enter a key only when set away from
# their default, so every key written before they existed stays the same.
_V1_EXTRA_DEFAULTS = {"min_tokens": 0, "stop_token_ids": [], "include_stop_str_in_output": False,
                      "ignore_eos": False}


@dataclass(frozen=True)
class SamplingParams:
    """Every sampling parameter that can change a generation.

    All of them enter the store key, so two calls that differ in any one never
    share a sample.
    """

    temperature: float
    top_p: float
    max_tokens: int
    top_k: int = -1  # -1: disabled
    min_p: float = 0.0
    stop: tuple[str, ...] = ()
    logprobs: bool = False  # return per-token logprobs of the sampled tokens
    min_tokens: int = 0  # EOS and stop_token_ids are held back until this many tokens
    stop_token_ids: tuple[int, ...] = ()  # stop when one of these token ids is sampled
    include_stop_str_in_output: bool = False  # keep the matched stop string in the text
    ignore_eos: bool = False  # keep generating past EOS (benchmarks of fixed length)

    def canonical(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        d["stop_token_ids"] = list(self.stop_token_ids)
        for name, default in _V1_EXTRA_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return d

    def replace(self, **changes) -> SamplingParams:
        from dataclasses import replace

        return replace(self, **changes)


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do; every strategy states which of these it needs."""

    seed: bool = False  # honours a per-sample seed
    prefix: bool = False  # continues an assistant prefix (text)
    token_ids: bool = False  # returns token ids, takes prefix token ids, tokenize/detokenize
    logprobs: bool = False  # returns per-token logprobs of the sampled tokens
    min_tokens: bool = False  # honours min_tokens, stop_token_ids and ignore_eos

    def missing(self, needs: Sequence[str]) -> list[str]:
        return [n for n in needs if not getattr(self, n)]

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


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
    """One rendered prompt (plus assistant prefix) and the samples wanted from it.

    ``request_id`` is the caller's handle, echoed in every completion;
    ``sample_indices[i]`` and ``seeds[i]`` describe the i-th sample. The model
    continues ``prompt + prefix``; where ``prefix_ids`` is given the engine
    feeds exactly those ids for the prefix (never re-tokenised text).
    """

    request_id: int
    prompt: str  # the rendered prompt the key was computed from
    messages: tuple[Message, ...]
    params: SamplingParams
    sample_indices: tuple[int, ...]
    seeds: tuple[int | None, ...]
    prefix: str = ""  # assistant text the model continues
    prefix_ids: tuple[int, ...] | None = None  # the same prefix as token ids (token_ids engines)

    @property
    def n(self) -> int:
        return len(self.sample_indices)


@dataclass
class Completion:
    """One finished sample of one request."""

    request_id: int
    sample_index: int
    text: str  # the generated continuation only (never the prompt or prefix)
    prompt_tokens: int  # tokens the model read: prompt + prefix
    completion_tokens: int  # tokens generated, as the engine counts them (llama.cpp: without EOS)
    finish_reason: str  # "stop" or "length" (OpenAI spelling, as stored before stop reasons)
    latency_s: float  # wall time attributed to this sample
    token_logprobs: list[float] | None = field(default=None)
    token_ids: list[int] | None = None  # generated token ids, without an EOS/stop token
    stop_reason: str = ""  # one of STOP_REASONS ("" when the engine cannot tell)
    stop_string: str | None = None  # which stop string (or stop token id, as text) ended it


class Engine(Protocol):
    """A generation backend. Heavy imports happen in ``__init__``, never at module import."""

    name: str
    capabilities: Capabilities

    def identity(self) -> ModelIdentity: ...

    def render(self, messages: Sequence[Message]) -> str:
        """The exact text the model sees for these chat messages (generation prompt included)."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of assistant text, no special tokens added (token_ids engines)."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[list[Completion]]:
        """Yield completions in groups as they finish (any order)."""
        ...

    def close(self) -> None: ...


def finish_reason_of(stop_reason: str) -> str:
    """The OpenAI-style finish reason for a stop reason."""
    return "length" if stop_reason == STOP_LENGTH else "stop"


def match_stop_string(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """``text`` cut at the earliest stop string, and which one (None if none matched)."""
    best: tuple[int, str] | None = None
    for s in stops:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    if best is None:
        return text, None
    return text[: best[0]], best[1]


