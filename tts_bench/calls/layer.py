"""The cached call layer: every engine call content-addressed in the store.

A strategy never talks to an engine. It builds :class:`Call` objects (chat
messages, an optional assistant prefix, explicit sampling parameters, the
sample indices it wants) and asks :meth:`CallLayer.generate` for their
results. The layer keys every sample (model, rendered prompt, prefix,
parameters, seed, index), answers what the store already holds without
touching the engine, sends only the rest, and writes each group the engine
yields to the store at once. So every strategy built on it resumes after
kill -9 (a rerun finds the finished calls and replays the loop through
them), tops up, and shares calls with every other run of the same model.

    layer = CallLayer(engine, store, base_seed=0, dataset="arith", batch_size=8)
    [results] = layer.generate([Call("p1", messages, params, indices=(0, 1, 2))])
    [[more]] = layer.generate([Call("p1", messages, params, prefix=results[0].text + "Wait",
                                    parent_key=results[0].key, step=1)])
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..engines.base import (
    STOP_LENGTH,
    Completion,
    Engine,
    GenerationRequest,
    Message,
    SamplingParams,
    finish_reason_of,
)
from ..store import CallRecord, GenerationStore, call_key, derive_seed, prompt_sha
from ..store.schema import ids_sha

# Store columns a Result is rebuilt from.
RESULT_COLUMNS = ["key", "problem_id", "sample_index", "seed", "text", "token_ids", "prompt_tokens",
                  "prefix_tokens", "completion_tokens", "finish_reason", "stop_reason", "stop_string",
                  "mean_logprob", "latency_s"]


@dataclass(frozen=True)
class Call:
    """One request to the layer: ``len(indices)`` draws continuing prompt + ``prefix``.

    ``prefix_ids``, where given, is the prefix as the model's token ids (the
    layer feeds them to the engine as they are); ``parent_key`` and ``step``
    are lineage, stored with every sample but not part of its key.
    """

    problem_id: str
    messages: tuple[Message, ...]
    params: SamplingParams
    indices: tuple[int, ...] = (0,)
    prefix: str = ""
    prefix_ids: tuple[int, ...] | None = None
    parent_key: str | None = None
    step: int = 0


@dataclass(frozen=True)
class Result:
    """One finished sample of a call, fresh from the engine or read from the store."""

    key: str
    problem_id: str
    sample_index: int
    seed: int | None
    text: str
    token_ids: tuple[int, ...] | None
    prompt_tokens: int
    prefix_tokens: int
    completion_tokens: int
    finish_reason: str
    stop_reason: str
    stop_string: str | None
    mean_logprob: float | None
    latency_s: float
    cached: bool

    @property
    def truncated(self) -> bool:
        return self.stop_reason == STOP_LENGTH


@dataclass
class LayerStats:
    """What one layer did: samples asked for, answered from the store, generated."""

    requested: int = 0
    cached: int = 0
    generated: int = 0
    out_of_shard: int = 0  # missing samples another shard process generates
    completion_tokens: int = 0
    prompt_tokens: int = 0
    engine_seconds: float = 0.0  # time spent inside the engine's generator
    shards_written: int = 0
    engine_calls: int = 0  # engine.generate invocations (rounds)
    errors: list[str] = field(default_factory=list)


class CallLayer:
    """Content-addressed generation over one engine and one store partition."""

    def __init__(self, engine: Engine, store: GenerationStore, *, base_seed: int, dataset: str,
                 batch_size: int, progress=None, in_shard: Callable[[str], bool] | None = None):
        self.engine = engine
        self.store = store
        self.identity = engine.identity()
        self.model_fp = self.identity.fingerprint
        self.capabilities = engine.capabilities
        self.base_seed = int(base_seed)
        self.dataset = dataset
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self.in_shard = in_shard
        self.stats = LayerStats()
        self._existing = store.existing_keys(self.model_fp)
        self._memo: dict[str, Result] = {}
        self._rendered: dict[tuple[Message, ...], str] = {}
        self._tokens: dict[str, tuple[int, ...]] = {}
        self._params_json: dict[SamplingParams, str] = {}

    # -- helpers strategies use ---------------------------------------------
    def render(self, messages: Sequence[Message]) -> str:
        msgs = tuple(messages)
        if msgs not in self._rendered:
            self._rendered[msgs] = self.engine.render(msgs)
        return self._rendered[msgs]

    def tokenize(self, text: str) -> tuple[int, ...]:
        """Token ids of assistant text (no special tokens added), memoised."""
        if text not in self._tokens:
            self._tokens[text] = tuple(self.engine.tokenize(text))
        return self._tokens[text]

    def slots(self, call: Call) -> list[tuple[int, int | None, str]]:
        """(sample index, seed, key) of each sample the call asks for."""
        prompt = self.render(call.messages)
        canon = call.params.canonical()
        out = []
        for i in call.indices:
            seed = derive_seed(self.base_seed, prompt, i, call.prefix) if self.capabilities.seed else None
            key = call_key(self.model_fp, prompt, canon, self.base_seed, seed, i,
                           prefix=call.prefix, prefix_ids=call.prefix_ids)
            out.append((i, seed, key))
        return out

    def stored(self, keys: Sequence[str]) -> int:
        """How many of these keys the store (or this layer) already holds."""
        return sum(1 for k in keys if k in self._memo or k in self._existing)

    # -- the one entry point ------------------------------------------------
    def generate(self, calls: Sequence[Call]) -> list[list[Result | None]]:
        """Results per call, per index, in order; stored samples never reach the engine.

        A missing sample outside this process's shard (``in_shard``) is
        returned as None: another shard process generates it.
        """
        slots = [self.slots(c) for c in calls]
        wanted = [k for s in slots for _, _, k in s]
        self.stats.requested += len(wanted)
        to_read = [k for k in dict.fromkeys(wanted) if k not in self._memo and k in self._existing]
        if to_read:
            self._read(to_read)
        missing: dict[str, tuple[Call, int, int | None]] = {}
        for call, s in zip(calls, slots):
            for i, seed, key in s:
                if key in self._memo or key in missing:
                    continue
                if self.in_shard is not None and not self.in_shard(key):
                    self.stats.out_of_shard += 1
                    continue
                missing[key] = (call, i, seed)
        hits = sum(1 for k in wanted if k in self._memo)
        self.stats.cached += hits
        if missing:
            self._run_engine(missing)
        return [[self._memo.get(k) for _, _, k in s] for s in slots]

    # -- internals ------------------------------------------------------------
    def _read(self, keys: list[str]) -> None:
        table = self.store.read(self.model_fp, keys=set(keys), columns=RESULT_COLUMNS)
        for row in table.to_pylist():
            tids = row["token_ids"]
            stop = row["stop_reason"] or ("length" if row["finish_reason"] == "length" else "")
            self._memo[row["key"]] = Result(
                key=row["key"], problem_id=row["problem_id"], sample_index=int(row["sample_index"]),
                seed=row["seed"], text=row["text"] or "",
                token_ids=tuple(tids) if tids is not None else None,
                prompt_tokens=int(row["prompt_tokens"] or 0), prefix_tokens=int(row["prefix_tokens"] or 0),
                completion_tokens=int(row["completion_tokens"] or 0),
                finish_reason=row["finish_reason"] or finish_reason_of(stop), stop_reason=stop,
                stop_string=row["stop_string"], mean_logprob=row["mean_logprob"],
                latency_s=float(row["latency_s"] or 0.0), cached=True)

    def _params(self, params: SamplingParams) -> str:
        if params not in self._params_json:
            self._params_json[params] = json.dumps(params.canonical(), sort_keys=True, separators=(",", ":"))
        return self._params_json[params]

    def _run_engine(self, missing: dict[str, tuple[Call, int, int | None]]) -> None:
        # Group the missing samples of each call into requests of batch_size.
        by_call: dict[int, list[tuple[str, Call, int, int | None]]] = {}
        for key, (call, i, seed) in missing.items():
            by_call.setdefault(id(call), []).append((key, call, i, seed))
        requests: list[GenerationRequest] = []
        slot_of: dict[tuple[int, int], tuple[str, Call, int | None]] = {}
        for group in by_call.values():
            call = group[0][1]
            prompt = self.render(call.messages)
            for lo in range(0, len(group), self.batch_size):
                chunk = group[lo: lo + self.batch_size]
                rid = len(requests)
                requests.append(GenerationRequest(
                    request_id=rid, prompt=prompt, messages=call.messages, params=call.params,
                    sample_indices=tuple(i for _, _, i, _ in chunk),
                    seeds=tuple(seed for _, _, _, seed in chunk),
                    prefix=call.prefix, prefix_ids=call.prefix_ids))
                for key, c, i, seed in chunk:
                    slot_of[(rid, i)] = (key, c, seed)
        if self.progress is not None:
            self.progress.add_total(len(missing))
        self.stats.engine_calls += 1
        gen = self.engine.generate(requests)
        while True:
            te = time.perf_counter()
            try:
                group = next(gen)
            except StopIteration:
                break
            finally:
                self.stats.engine_seconds += time.perf_counter() - te
            records = []
            for c in group:
                slot = slot_of.pop((c.request_id, c.sample_index), None)
                if slot is None:
                    self.stats.errors.append(f"engine returned unplanned sample {c.sample_index}")
                    continue
                key, call, seed = slot
                records.append(self._record(key, call, seed, c))
            if self.store.write_shard(self.model_fp, records) is not None:
                self.stats.shards_written += 1
            tokens = 0
            for r in records:
                self._existing.add(r.key)
                self._memo[r.key] = _result_of(r)
                tokens += r.completion_tokens
                self.stats.prompt_tokens += r.prompt_tokens
            self.stats.generated += len(records)
            self.stats.completion_tokens += tokens
            if self.progress is not None:
                self.progress.advance(len(records), tokens)

    def _record(self, key: str, call: Call, seed: int | None, c: Completion) -> CallRecord:
        lps = c.token_logprobs
        prompt = self.render(call.messages)
        prefix_tokens = None
        if call.prefix_ids is not None:
            prefix_tokens = len(call.prefix_ids)
        elif call.prefix and self.capabilities.token_ids:
            prefix_tokens = len(self.tokenize(call.prefix))
        ident = self.identity
        return CallRecord(
            key=key, model_fp=self.model_fp, model_id=ident.model_id, weights_hash=ident.weights_hash,
            engine=ident.engine, engine_version=ident.engine_version, dataset=self.dataset,
            problem_id=call.problem_id, prompt_sha=prompt_sha(prompt), sample_index=c.sample_index,
            base_seed=self.base_seed, seed=seed, params_json=self._params(call.params),
            temperature=call.params.temperature, max_tokens=call.params.max_tokens, text=c.text,
            prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
            finish_reason=c.finish_reason, mean_logprob=(sum(lps) / len(lps)) if lps else None,
            token_logprobs=lps, latency_s=c.latency_s, created_at=time.time(),
            prefix_sha=(prompt_sha(call.prefix) if call.prefix else
                        (ids_sha(call.prefix_ids) if call.prefix_ids else None)),
            prefix_tokens=prefix_tokens, parent_key=call.parent_key, step=call.step,
            stop_reason=c.stop_reason or None, stop_string=c.stop_string,
            token_ids=list(c.token_ids) if c.token_ids is not None else None,
        )


def _result_of(r: CallRecord) -> Result:
    stop = r.stop_reason or ("length" if r.finish_reason == "length" else "")
    return Result(key=r.key, problem_id=r.problem_id, sample_index=r.sample_index, seed=r.seed,
                  text=r.text, token_ids=tuple(r.token_ids) if r.token_ids is not None else None,
                  prompt_tokens=r.prompt_tokens, prefix_tokens=r.prefix_tokens or 0,
                  completion_tokens=r.completion_tokens, finish_reason=r.finish_reason,
                  stop_reason=stop, stop_string=r.stop_string, mean_logprob=r.mean_logprob,
                  latency_s=r.latency_s, cached=False)
