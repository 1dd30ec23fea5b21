"""What every strategy shares: the problem it sees, the trajectory it returns, the registry.

A strategy is a loop over :meth:`CallLayer.generate` (``tts_bench.calls``).
It sees each problem as a :class:`StrategyProblem` (id and chat messages;
never the reference answer: the gold reaches grading only) and may read
answers as the task extracts and classes them through an
:class:`AnswerReader`. It returns :class:`Trajectory` rows, which the runner
writes to ``trajectories.parquet`` and grading reads as it reads samples.

    @strategy("parallel", needs=(), shard_by="key")
    class Parallel(Strategy): ...
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..calls import CallLayer, Result
from ..config import ConfigError, RunConfig
from ..engines.base import Message, SamplingParams


@dataclass(frozen=True)
class StrategyProblem:
    """A problem as a strategy sees it: no reference answer, no metadata."""

    id: str
    messages: tuple[Message, ...]


class AnswerReader:
    """Text -> the task's extracted answer and its vote class, without the gold."""

    def __init__(self, extractor: str):
        from ..grading.extract import get_extractor, normalize_answer, vote_class

        self._extract = get_extractor(extractor)
        self._normalize = normalize_answer
        self._vote = vote_class

    def answer_class(self, text: str) -> str | None:
        raw = self._extract(text) if text else None
        if raw is None:
            return None
        norm = self._normalize(raw)
        return self._vote(norm) if norm else None


@dataclass
class Trajectory:
    """One graded unit: a final text and the calls that made it."""

    problem_id: str
    trajectory: int  # sample / chain index within the problem
    level: int  # the scaling level: thinking budget, revision depth, or 0
    calls: list[Result]
    text: str  # what grading reads
    main: bool = True  # part of the run's main pass@k/maj@k analysis
    phase_tokens: dict = field(default_factory=dict)  # e.g. {"thinking": t, "answer": a, "extension": e}
    extra: dict = field(default_factory=dict)  # strategy-specific columns (search: score, tree cost)

    @property
    def key(self) -> str:
        """The single call's key, or a hash of the call keys and the level."""
        if len(self.calls) == 1 and self.level == 0:
            return self.calls[0].key
        raw = f"{self.level}|" + "|".join(c.key for c in self.calls)
        return hashlib.sha256(raw.encode()).hexdigest()

    def row(self) -> dict:
        last = self.calls[-1]
        lps = [c.mean_logprob for c in self.calls if c.mean_logprob is not None]
        return {
            "repeat": 0,
            "problem_id": self.problem_id,
            "trajectory": self.trajectory,
            "sample_index": self.trajectory,
            "level": self.level,
            "main": self.main,
            "key": self.key,
            "call_keys": [c.key for c in self.calls],
            "text": self.text,
            # The first call's input: what a single continuous generation reads
            # (the cost tables' prompt); read_tokens counts every call's input.
            "prompt_tokens": self.calls[0].prompt_tokens,
            "read_tokens": sum(c.prompt_tokens for c in self.calls),
            "prefix_tokens": sum(c.prefix_tokens for c in self.calls),
            "completion_tokens": sum(c.completion_tokens for c in self.calls),
            "thinking_tokens": int(self.phase_tokens.get("thinking", 0)),
            "answer_tokens": int(self.phase_tokens.get("answer", last.completion_tokens)),
            "extension_tokens": int(self.phase_tokens.get("extension", 0)),
            "n_calls": len(self.calls),
            "stop_reasons": [c.stop_reason for c in self.calls],
            "finish_reason": last.finish_reason,
            "mean_logprob": (sum(lps) / len(lps)) if lps and len(self.calls) == 1 else None,
            "seed": last.seed,
            "latency_s": sum(c.latency_s for c in self.calls),
            **self.extra,
        }


class Strategy:
    """Base class: ``run`` the loop for some problems on a call layer."""

    name: str = ""
    needs: tuple[str, ...] = ()  # Capabilities the engine must have
    shard_by: str = "problem"  # "key": shard processes split samples; "problem": split problems
    summary: str = ""

    def __init__(self, cfg: RunConfig, answers: AnswerReader):
        self.cfg = cfg
        self.s = cfg.strategy
        self.answers = answers

    def params(self, **changes) -> SamplingParams:
        s = self.s
        base = SamplingParams(temperature=float(s.temperature), top_p=float(s.top_p),
                              max_tokens=int(s.max_tokens), top_k=int(s.top_k), min_p=float(s.min_p),
                              stop=tuple(s.stop), logprobs=bool(s.logprobs))
        return base.replace(**changes) if changes else base

    def describe(self, problems: Sequence[StrategyProblem], layer: CallLayer) -> str:
        return f"{self.name}: {len(problems)} problems x n={self.cfg.budget.n}"

    def run(self, problems: Sequence[StrategyProblem], layer: CallLayer) -> list[Trajectory]:
        raise NotImplementedError


STRATEGIES: dict[str, type[Strategy]] = {}


def strategy(name: str, *, needs: tuple[str, ...] = (), shard_by: str = "problem",
             summary: str = "") -> Callable[[type[Strategy]], type[Strategy]]:
    def register(cls: type[Strategy]) -> type[Strategy]:
        cls.name, cls.needs, cls.shard_by, cls.summary = name, tuple(needs), shard_by, summary
        STRATEGIES[name] = cls
        return cls

    return register


def get_strategy(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}'. Valid strategies: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]


def check_capabilities(cfg: RunConfig) -> None:
    """Compose-time check: the engine can do what the strategy needs (no model loads)."""
    from ..engines import engine_capabilities

    cls = get_strategy(cfg.strategy.name)
    caps = engine_capabilities(cfg.engine)
    needs = list(cls.needs) + (["logprobs"] if cfg.strategy.logprobs else [])
    lacking = caps.missing(needs)
    if lacking:
        raise ConfigError(
            f"strategy={cfg.strategy.name} needs an engine with {', '.join(needs)}; "
            f"engine={cfg.engine.name} lacks {', '.join(lacking)}. "
            f"Use engine=llamacpp or engine=vllm"
        )
    if cfg.verifier.kind == "genrm" and not caps.logprobs:
        raise ConfigError(f"verifier=genrm reads P(Yes) from logprobs; engine={cfg.engine.name} returns "
                          f"none. Use engine=llamacpp, engine=vllm or engine=openai")
