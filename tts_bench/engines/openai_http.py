"""Batch engine for OpenAI-compatible HTTP servers (vllm serve, SGLang, llama.cpp server).

The server applies the chat template, so the "rendered prompt" this engine
reports (and the store keys on) is a canonical JSON string of the messages in
chat mode, or the plain prompt text in completions mode. Every sample is one
HTTP call with ``n=1`` and that sample's own seed, so each sample index can be
regenerated or resumed on its own. Calls run concurrently (up to
``engine.concurrency``) on an asyncio loop in a background thread; finished
samples stream back through :meth:`OpenAIEngine.generate` as they arrive.

Start a server, then point the engine at it::

    vllm serve Qwen/Qwen2.5-0.5B-Instruct --port 8000
    # or: python -m llama_cpp.server --model model.gguf --port 8000

    from tts_bench.config.schema import ModelConfig, OpenAIEngineConfig
    from tts_bench.engines.base import GenerationRequest, Message, SamplingParams
    from tts_bench.engines.openai_http import OpenAIEngine

    engine = OpenAIEngine(
        OpenAIEngineConfig(base_url="http://127.0.0.1:8000/v1", concurrency=16),
        ModelConfig(name="qwen0.5b", path="Qwen/Qwen2.5-0.5B-Instruct"),
    )
    msgs = (Message("user", "What is 2+3?"),)
    req = GenerationRequest("p1", engine.render(msgs), msgs,
                            SamplingParams(temperature=0.7, top_p=0.95, max_tokens=64),
                            sample_indices=(0, 1), seeds=(11, 12))
    for done in engine.generate([req]):
        print([c.text for c in done])
    engine.close()

Seeds: the seed is sent with every call, but honouring it is up to the
server (vLLM and llama.cpp do; batching on some servers can still make
outputs differ run to run), so identical seeds are a best effort, not a
guarantee.

The API key is read from ``os.environ[engine.api_key_env]`` at each call and
sent as ``Authorization: Bearer``; it is never stored on the engine, logged,
or put into any returned object or exception text.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tts_bench.config.schema import ModelConfig, OpenAIEngineConfig
from tts_bench.engines.base import (
    Capabilities,
    Completion,
    GenerationRequest,
    Message,
    ModelIdentity,
    SamplingParams,
)

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated at runtime
    from typing_extensions import Self

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0  # cap on one computed backoff delay (a server's Retry-After is honoured)
# Fields of a GET /models entry that describe the served weights. "created" is left
# out on purpose: vLLM fills it with the time of the request, which would give the
# same weights a new fingerprint (and a cold cache) on every run.
_MODEL_ENTRY_FIELDS = ("id", "owned_by", "root", "parent")
_DONE = object()


def capabilities_for(engine_cfg: OpenAIEngineConfig) -> Capabilities:
    """Seeds are sent per sample (honouring them is the server's business); logprobs come back."""
    return Capabilities(seed=True, prefix=False, token_ids=False, logprobs=True, min_tokens=False)


class OpenAIEngineError(RuntimeError):
    """A request to the OpenAI-compatible server failed (text never holds the API key)."""


class OpenAIEngine:
    """Engine protocol over an OpenAI-compatible ``/chat/completions`` or ``/completions``."""

    name = "openai"

    @property
    def capabilities(self) -> Capabilities:
        return capabilities_for(self.cfg)

    def __init__(self, engine_cfg: OpenAIEngineConfig, model_cfg: ModelConfig) -> None:
        if engine_cfg.concurrency < 1:
            raise ValueError(f"engine.concurrency must be >= 1, got {engine_cfg.concurrency}")
        if engine_cfg.max_retries < 0:
            raise ValueError(f"engine.max_retries must be >= 0, got {engine_cfg.max_retries}")
        self.cfg = engine_cfg
        self.model_cfg = model_cfg
        self.model_id = engine_cfg.served_model or model_cfg.path
        self.base_url = engine_cfg.base_url.rstrip("/")
        self._identity: ModelIdentity | None = None
        self._rng = random.Random()  # jitter only; never touches the global RNG
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None  # httpx.AsyncClient, created on the loop thread
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ protocol

    def render(self, messages: Sequence[Message]) -> str:
        """Canonical JSON of the messages (chat), or their joined contents (completions)."""
        if self.cfg.use_chat:
            return json.dumps(
                [{"role": m.role, "content": m.content} for m in messages],
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
            )
        return "\n\n".join(m.content for m in messages)

    def identity(self) -> ModelIdentity:
        """Model id, a hash of the server's model entry, and the server's version."""
        if self._identity is None:
            self._identity = self._run(self._fetch_identity())
        return self._identity

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[list[Completion]]:
        """Yield completions in groups as their HTTP calls finish (any order).

        Raises :class:`OpenAIEngineError` when a sample fails for good; samples
        finished before that have already been yielded.
        """
        jobs = [
            (req, idx, seed)
            for req in requests
            for idx, seed in zip(req.sample_indices, req.seeds, strict=True)
        ]
        if not jobs:
            return
        loop = self._ensure_loop()
        results: queue.Queue = queue.Queue()
        fut = asyncio.run_coroutine_threadsafe(self._generate_all(jobs, results), loop)
        try:
            while True:
                try:
                    first = results.get(timeout=0.5)
                except queue.Empty:
                    if fut.done() and results.empty():
                        fut.result()  # re-raises if the coroutine died without reporting
                        return
                    continue
                items = [first]
                while True:
                    try:
                        items.append(results.get_nowait())
                    except queue.Empty:
                        break
                batch = [x for x in items if isinstance(x, Completion)]
                end = next((x for x in items if not isinstance(x, Completion)), None)
                if batch:
                    yield batch
                if isinstance(end, BaseException):
                    raise end
                if end is _DONE:
                    return
        finally:
            fut.cancel()  # consumer stopped early or failed: stop outstanding calls

    def close(self) -> None:
        """Close the HTTP client and stop the background loop."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=10)
            if not loop.is_running():
                loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ request building

    def build_body(self, req: GenerationRequest, seed: int | None) -> dict:
        """The JSON body of one sample's call; every sampling value is explicit."""
        p: SamplingParams = req.params
        body: dict[str, Any] = {
            "model": self.model_id,
            "n": 1,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
            "stop": list(p.stop),
            "stream": False,
        }
        if seed is not None:
            body["seed"] = seed
        # Not OpenAI fields: vLLM, SGLang and llama.cpp read them from the top
        # level. Sent even at their neutral values (explicit_sampler_fields),
        # because each server has its own defaults: llama.cpp top_k=40 and
        # min_p=0.05, vllm serve the model's generation_config.json.
        explicit = self.cfg.explicit_sampler_fields
        if explicit or p.top_k != -1:
            body["top_k"] = p.top_k if p.top_k > 0 else self.cfg.top_k_disabled
        if explicit or p.min_p != 0.0:
            body["min_p"] = p.min_p
        if explicit:
            body["repetition_penalty"] = 1.0  # vLLM / SGLang name
            body["repeat_penalty"] = 1.0  # llama.cpp name
            body["presence_penalty"] = 0.0
            body["frequency_penalty"] = 0.0
        if self.cfg.use_chat:
            body["messages"] = [{"role": m.role, "content": m.content} for m in req.messages]
            if p.logprobs:
                body["logprobs"] = True
                body["top_logprobs"] = 0
        else:
            body["prompt"] = req.prompt
            if p.logprobs:
                body["logprobs"] = 1
        return body

    def parse_choice(
        self, req: GenerationRequest, idx: int, data: dict, latency_s: float
    ) -> Completion:
        """Turn one response (n=1) into a Completion."""
        choices = data.get("choices") or []
        if not choices:
            raise OpenAIEngineError(
                f"server response for request {req.request_id!r} sample {idx} has no choices"
            )
        choice = choices[0]
        if self.cfg.use_chat:
            text = (choice.get("message") or {}).get("content") or ""
        else:
            text = choice.get("text") or ""
        usage = data.get("usage") or {}
        return Completion(
            request_id=req.request_id,
            sample_index=idx,
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason") or "unknown",
            latency_s=latency_s,
            token_logprobs=self._logprobs(choice) if req.params.logprobs else None,
        )

    def _logprobs(self, choice: dict) -> list[float] | None:
        lp = choice.get("logprobs")
        if not lp:
            return None
        if self.cfg.use_chat:
            content = lp.get("content")
            if content is None:
                return None
            return [float(t["logprob"]) for t in content]
        values = lp.get("token_logprobs")
        if values is None:
            return None
        # The first token of an echoed prompt has no logprob; sampled tokens always do.
        return [float(v) for v in values if v is not None]

    # ------------------------------------------------------------------ async machinery

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="tts-bench-openai-http", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()).result()

    def _get_client(self) -> Any:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.cfg.timeout_s),
                limits=httpx.Limits(
                    max_connections=self.cfg.concurrency,
                    max_keepalive_connections=self.cfg.concurrency,
                ),
            )
        return self._client

    async def _aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _generate_all(self, jobs: list, results: queue.Queue) -> None:
        sem = asyncio.Semaphore(self.cfg.concurrency)

        async def one(req: GenerationRequest, idx: int, seed: int | None) -> None:
            async with sem:
                results.put(await self._sample(req, idx, seed))

        tasks = [asyncio.ensure_future(one(*job)) for job in jobs]
        try:
            for fut in asyncio.as_completed(tasks):
                await fut
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # report the first failure to the consumer
            results.put(e)
            raise
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            results.put(_DONE)

    async def _sample(self, req: GenerationRequest, idx: int, seed: int | None) -> Completion:
        path = "/chat/completions" if self.cfg.use_chat else "/completions"
        body = self.build_body(req, seed)
        what = f"request {req.request_id!r} sample {idx}"
        data, latency = await self._request("POST", path, what, json_body=body)
        return self.parse_choice(req, idx, data, latency)

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        return text.replace(key, "***") if key else text

    async def _request(
        self, method: str, path: str, what: str, json_body: dict | None = None
    ) -> tuple[dict, float]:
        """One call with retries; returns the parsed JSON and the successful try's latency.

        Retries 429, 5xx, connection errors and timeouts with exponential
        backoff and jitter (or the server's Retry-After); fails at once on any
        other 4xx.
        """
        import httpx

        url = self.base_url + path
        tries = self.cfg.max_retries + 1
        last = ""
        for attempt in range(tries):
            retry_after: float | None = None
            t0 = time.perf_counter()
            try:
                resp = await self._get_client().request(
                    method, url, json=json_body, headers=self._headers()
                )
            except httpx.TransportError as e:  # connect errors, timeouts, dropped connections
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                latency = time.perf_counter() - t0
                if resp.status_code < 300:
                    try:
                        return resp.json(), latency
                    except ValueError:
                        raise OpenAIEngineError(
                            f"{method} {url} for {what} answered HTTP {resp.status_code} with a "
                            f"body that is not JSON; check that engine.base_url "
                            f"({self.base_url}) is the server's OpenAI API root (usually .../v1)."
                        ) from None
                elif resp.status_code == 429 or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}: {_server_message(resp)}"
                    retry_after = _parse_retry_after(resp.headers.get("retry-after"))
                else:
                    raise OpenAIEngineError(
                        self._redact(
                            f"{method} {url} for {what} was rejected with HTTP "
                            f"{resp.status_code}: {_server_message(resp)}"
                        )
                    )
            if attempt + 1 == tries:
                break
            if retry_after is not None:
                delay = retry_after
            else:
                delay = min(self.cfg.backoff_s * 2**attempt, MAX_BACKOFF_S)
                delay *= 0.5 + self._rng.random()  # jitter: spread clients that failed together
            log.warning(
                "%s %s for %s failed (%s); retry %d/%d in %.2fs",
                method,
                url,
                what,
                self._redact(last),
                attempt + 1,
                tries - 1,
                delay,
            )
            await asyncio.sleep(delay)
        raise OpenAIEngineError(
            self._redact(
                f"{method} {url} for {what} failed after {tries} tries "
                f"(engine.max_retries={self.cfg.max_retries}); last error: {last}. "
                f"Check that the server is running and reachable and that engine.base_url "
                f"({self.base_url}) points at its OpenAI API root (usually ending in /v1)."
            )
        )

    async def _fetch_identity(self) -> ModelIdentity:
        data, _ = await self._request("GET", "/models", "the model list")
        entries = [e for e in data.get("data") or [] if isinstance(e, dict)]
        entry = next((e for e in entries if e.get("id") == self.model_id), None)
        if entry is None:
            if len(entries) == 1:
                # Single-model servers (llama.cpp) answer whatever model name they are sent.
                entry = entries[0]
            else:
                ids = [e.get("id") for e in entries]
                raise OpenAIEngineError(
                    f"the server at {self.base_url} does not serve model {self.model_id!r}; "
                    f"it serves {ids}. Set engine.served_model to one of these."
                )
        described = {k: entry[k] for k in _MODEL_ENTRY_FIELDS if entry.get(k) is not None}
        if self.model_cfg.revision:
            described["revision"] = self.model_cfg.revision
        raw = json.dumps(described, sort_keys=True, separators=(",", ":"))
        return ModelIdentity(
            model_id=self.model_id,
            weights_hash=hashlib.sha256(raw.encode()).hexdigest(),
            engine=self.name,
            engine_version="openai-http/" + (await self._server_version() or "unknown"),
        )

    async def _server_version(self) -> str | None:
        """vLLM and SGLang answer GET /version at the server root; others have none."""
        import httpx

        root = self.base_url.removesuffix("/v1")
        for url in dict.fromkeys([root + "/version", self.base_url + "/version"]):
            try:
                resp = await self._get_client().get(url, headers=self._headers())
                if resp.status_code == 200:
                    version = resp.json().get("version")
                    if version:
                        return str(version)
            except (httpx.HTTPError, ValueError, AttributeError):
                continue
        return None


def _server_message(resp: Any) -> str:
    """The error text a server put in its body (OpenAI, FastAPI or plain shapes)."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        for k in ("message", "detail", "error"):
            if data.get(k):
                return str(data[k])[:500]
    return json.dumps(data)[:500]


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
