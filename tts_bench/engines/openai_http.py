"""Batch engine for OpenAI-compatible HTTP servers (vllm serve, SGLang, llama.cpp server).

Two modes:

* chat (``use_chat``, the default): messages go to ``/chat/completions`` and
  the server applies its chat template, so the "rendered prompt" this engine
  reports (and the store keys on) is a canonical JSON string of the messages.
  An assistant prefix is continued only with ``continue_final_message``
  (vllm serve): the prefix goes as a final assistant message with
  ``continue_final_message=true, add_generation_prompt=false``.
* completions (``use_chat=false``): the engine renders the chat template
  itself (``engine.chat_template``: a GGUF file, a Hugging Face folder or
  ``pkg:<module>/<file>``; default: model.path's, when it is one of those),
  so ``render`` returns the exact text the model sees, and sends
  ``prompt = rendered + prefix`` to ``/completions``. With no template to be
  found it falls back to the messages' contents joined by blank lines, and
  declares no prefix capability. ``engine_capabilities`` sees only the engine
  config, so it counts on a template only when ``engine.chat_template`` is set
  (engine=openai-llamacpp sets it to ``${model.path}``).

Every sample is one HTTP call with ``n=1`` and that sample's own seed, so
each sample index can be regenerated or resumed on its own. Calls run
concurrently (up to ``engine.concurrency``) on an asyncio loop in a
background thread; finished samples stream back through
:meth:`OpenAIEngine.generate` as they arrive.

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
    req = GenerationRequest(0, engine.render(msgs), msgs,
                            SamplingParams(temperature=0.7, top_p=0.95, max_tokens=64),
                            sample_indices=(0, 1), seeds=(11, 12))
    for done in engine.generate([req]):
        print([c.text for c in done])
    engine.close()

Stop reasons: ``finish_reason="length"`` is ``length``. For ``"stop"``,
vLLM's ``stop_reason`` field says why: None is ``eos``, an int is
``stop_token`` (that id), a string is ``stop_string`` (that string). Servers
without the field (llama.cpp's) cannot tell an EOS from a stop string, so
their ``"stop"`` is reported as ``eos`` even when the text was cut at one of
``params.stop``; the engine never guesses a stop string it was not told.

Sampler fields beyond OpenAI's (top_k, min_p, neutral penalties, and
min_tokens, stop_token_ids, include_stop_str_in_output, ignore_eos when set
away from their defaults) go only with ``explicit_sampler_fields``; the last
three also need ``vllm_fields`` (llama.cpp's server takes min_tokens but
ignores them). A request needing a field the engine may not send fails
before any call. Token ids are never returned (``token_ids`` is not a
capability of this API).

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
import contextlib
import dataclasses
import email.utils
import hashlib
import importlib.util
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tts_bench.config import ConfigError
from tts_bench.config.schema import ModelConfig, OpenAIEngineConfig
from tts_bench.engines.base import (
    STOP_EOS,
    STOP_LENGTH,
    STOP_STRING,
    STOP_TOKEN,
    Capabilities,
    Completion,
    EngineError,
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
    """What the engine can do, from its config alone.

    Seeds are sent per sample (honouring them is the server's business) and
    logprobs come back. A prefix is continued in chat mode with
    ``continue_final_message``, in completions mode over a locally rendered
    chat template: from the engine config alone that is known only when
    ``chat_template`` is set (a template found through model.path is known
    once the engine is built; :attr:`OpenAIEngine.capabilities` says so).
    min_tokens (with stop_token_ids and ignore_eos) needs both
    ``explicit_sampler_fields`` and ``vllm_fields``. Never token ids.
    """
    if engine_cfg.use_chat:
        prefix = bool(engine_cfg.continue_final_message)
    else:
        prefix = engine_cfg.chat_template is not None
    return Capabilities(
        seed=True,
        prefix=prefix,
        token_ids=False,
        logprobs=True,
        min_tokens=bool(engine_cfg.explicit_sampler_fields and engine_cfg.vllm_fields),
    )


# ---------------------------------------------------------------------- chat templates


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """A chat template rendered locally, as the model's own tokenizer would.

    ``tokenizer_adds_bos``: whether the server's tokenizer puts a BOS before
    a text prompt by itself (True/False, None when the files do not say).
    """

    source: str  # where it was read from (for messages)
    bos_token: str
    eos_token: str
    tokenizer_adds_bos: bool | None
    _render: Callable[[list[dict]], str] = dataclasses.field(repr=False, compare=False)

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text: the messages and the assistant generation prompt."""
        return self._render([{"role": m.role, "content": m.content} for m in messages])


def _locate(spec: str) -> Path:
    """A local path, or ``pkg:<module>/<file>`` inside an installed package (need not exist)."""
    if spec.startswith("pkg:"):
        module, _, rel = spec[4:].partition("/")
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise ConfigError(f"{spec}: package '{module}' is not installed")
        return Path(list(found.submodule_search_locations)[0]) / rel
    return Path(spec).expanduser()


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


class _NoTemplate(ConfigError):
    """The file or folder holds no chat template."""


_HF_TEMPLATE_FILES = ("tokenizer_config.json", "chat_template.jinja", "chat_template.json")


def load_chat_template(spec: str, *, required: bool = True) -> ChatTemplate | None:
    """The chat template at ``spec``: a GGUF file, a Hugging Face folder, or ``pkg:...`` of either.

    ``required`` (``engine.chat_template`` was set): anything else fails with
    one :class:`ConfigError` line. Not required (looking at model.path): None
    when ``spec`` is no such file or folder (a hub id) or holds no template.
    """
    what = f"engine.chat_template {spec}"
    try:
        path = _locate(spec)
    except ConfigError as e:
        if required:
            raise ConfigError(f"engine.chat_template {e}") from None
        return None
    try:
        if path.is_file() and _is_gguf(path):
            return _gguf_template(path, what)
        if path.is_dir() and any((path / n).is_file() for n in _HF_TEMPLATE_FILES):
            return _hf_template(path, what)
    except _NoTemplate as e:
        if required:
            raise ConfigError(str(e)) from None
        return None
    if required:
        raise ConfigError(
            f"{what}: {path} is neither a GGUF file nor a Hugging Face folder with a "
            f"tokenizer_config.json"
        )
    return None


def _gguf_template(path: Path, what: str) -> ChatTemplate:
    """tokenizer.chat_template and the BOS/EOS texts from GGUF metadata (vocab only)."""
    try:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    except ImportError:
        raise ConfigError(
            f"{what}: reading a GGUF file needs llama-cpp-python: pip install -e '.[cpu]'"
        ) from None
    try:  # llama.cpp logs a context warning past verbose=False; keep the console clean
        from llama_cpp._utils import suppress_stdout_stderr

        quiet: Any = suppress_stdout_stderr(disable=False)
    except ImportError:
        quiet = contextlib.nullcontext()
    with quiet:
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        meta = llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise _NoTemplate(f"{what}: {path.name} has no tokenizer.chat_template in its metadata")

        def token_text(key: str) -> str:
            tid = meta.get(key)
            if tid is None:
                return ""
            return llm.detokenize([int(tid)], special=True).decode("utf-8", "replace")

        bos, eos = token_text("tokenizer.ggml.bos_token_id"), token_text("tokenizer.ggml.eos_token_id")
        # What the server's tokenizer does to a text prompt (llama.cpp: add_bos=True).
        probe = llm.tokenize(b"a", add_bos=True, special=True)
        adds_bos = bool(probe) and probe[0] == llm.token_bos() and llm.token_bos() >= 0
    finally:
        llm.close()
    # The formatter LlamaCppEngine renders with: the same text for the same GGUF.
    formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos,
                                    add_generation_prompt=True)
    return ChatTemplate(str(path), bos, eos, adds_bos, lambda msgs: formatter(messages=msgs).prompt)


_HF_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                  "mask_token", "additional_special_tokens")


def _token_content(value: Any) -> Any:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content", "")
    if isinstance(value, list):
        return [_token_content(v) for v in value]
    return value


def _hf_template(folder: Path, what: str) -> ChatTemplate:
    """The template a Hugging Face tokenizer folder holds, rendered as transformers does.

    Newest layout first: chat_template.jinja, chat_template.json, then
    tokenizer_config.json's "chat_template" (a string, or named templates:
    "default" is used). Special tokens come from tokenizer_config.json, then
    special_tokens_map.json.
    """

    def read_json(name: str) -> dict:
        f = folder / name
        if not f.is_file():
            return {}
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{what}: cannot read {f}: {e}") from None
        return data if isinstance(data, dict) else {}

    config = read_json("tokenizer_config.json")
    template: Any = None
    if (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if template is None:
        template = read_json("chat_template.json").get("chat_template")
    if template is None:
        template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if not isinstance(template, str) or not template:
        raise _NoTemplate(f"{what}: {folder} holds no chat template")
    tokens = {k: _token_content(v) for k, v in read_json("special_tokens_map.json").items()
              if k in _HF_TOKEN_KEYS}
    tokens.update({k: _token_content(config[k]) for k in _HF_TOKEN_KEYS if config.get(k) is not None})
    tokens = {k: ("" if v is None else v) for k, v in tokens.items()}
    add_bos = config.get("add_bos_token")
    import jinja2

    try:
        compiled = _hf_environment().from_string(template)
    except jinja2.TemplateError as e:
        raise ConfigError(f"{what}: the chat template does not compile: {e}") from None

    def render(msgs: list[dict]) -> str:
        return compiled.render(messages=msgs, tools=None, documents=None,
                               add_generation_prompt=True, **tokens)

    return ChatTemplate(str(folder), str(tokens.get("bos_token") or ""),
                        str(tokens.get("eos_token") or ""),
                        add_bos if isinstance(add_bos, bool) else None, render)


def _hf_environment() -> Any:
    """The Jinja environment transformers' apply_chat_template compiles templates in."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """transformers' {% generation %} marks assistant tokens; the text passes through."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
               separators: Any = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def stop_of_choice(choice: dict) -> tuple[str, str | None]:
    """Our stop reason and stop string for one choice of an OpenAI-style response.

    ``length`` is the length cap. For ``stop``, vLLM's ``stop_reason`` (None:
    EOS, int: a stop token id, str: a stop string) says which; a server that
    sends no ``stop_reason`` (llama.cpp) gets ``eos``: it cannot tell an EOS
    from a stop string, and the engine does not guess. Anything else: "".
    """
    finish = choice.get("finish_reason")
    if finish == "length":
        return STOP_LENGTH, None
    if finish != "stop":
        return "", None
    why = choice.get("stop_reason")
    if isinstance(why, bool):  # not a token id
        return STOP_EOS, None
    if isinstance(why, int):
        return STOP_TOKEN, str(why)
    if isinstance(why, str) and why:
        return STOP_STRING, why
    return STOP_EOS, None


class OpenAIEngineError(EngineError):
    """A request to the OpenAI-compatible server failed (text never holds the API key)."""


class OpenAIEngine:
    """Engine protocol over an OpenAI-compatible ``/chat/completions`` or ``/completions``."""

    name = "openai"

    @property
    def capabilities(self) -> Capabilities:
        caps = capabilities_for(self.cfg)
        if not self.cfg.use_chat:  # a template found through model.path counts too
            caps = dataclasses.replace(caps, prefix=self.template is not None)
        return caps

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
        # Completions mode renders the chat template here; chat mode leaves it to the server.
        self.template: ChatTemplate | None = None
        if not engine_cfg.use_chat:
            if engine_cfg.chat_template is not None:
                self.template = load_chat_template(engine_cfg.chat_template)
            else:
                self.template = load_chat_template(model_cfg.path, required=False)

    # ------------------------------------------------------------------ protocol

    def render(self, messages: Sequence[Message]) -> str:
        """Canonical JSON of the messages (chat mode); in completions mode the text the model sees.

        Completions mode: the chat template applied locally, generation prompt
        included; without a template, the contents joined by blank lines.
        """
        if self.cfg.use_chat:
            return json.dumps(
                [{"role": m.role, "content": m.content} for m in messages],
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
            )
        if self.template is not None:
            return self.template.render(messages)
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
        for req in requests:
            self.check_request(req)
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

    def check_request(self, req: GenerationRequest) -> None:
        """Fail (one line, before any call) on what this engine cannot send as asked."""
        p = req.params
        where = f"request {req.request_id!r}"
        if req.prefix_ids is not None and not req.prefix:
            raise OpenAIEngineError(
                f"{where}: engine=openai takes no prefix token ids (token_ids is not a capability); "
                f"pass the prefix as text"
            )
        if req.prefix and self.cfg.use_chat and not self.cfg.continue_final_message:
            raise OpenAIEngineError(
                f"{where}: engine=openai cannot continue an assistant prefix in chat mode; set "
                f"engine.continue_final_message=true (vllm serve) or engine.use_chat=false"
            )
        asked = [
            name
            for name, on in (
                ("min_tokens", p.min_tokens > 0),
                ("stop_token_ids", bool(p.stop_token_ids)),
                ("include_stop_str_in_output", p.include_stop_str_in_output),
                ("ignore_eos", p.ignore_eos),
            )
            if on
        ]
        if asked and not self.cfg.explicit_sampler_fields:
            raise OpenAIEngineError(
                f"{where}: engine=openai cannot send {', '.join(asked)} with "
                f"engine.explicit_sampler_fields=false (only OpenAI fields are sent)"
            )
        vllm_only = [n for n in asked if n != "min_tokens"]
        if vllm_only and not self.cfg.vllm_fields:
            raise OpenAIEngineError(
                f"{where}: engine=openai cannot send {', '.join(vllm_only)} with "
                f"engine.vllm_fields=false (the server would ignore them)"
            )

    def prompt_text(self, req: GenerationRequest) -> str:
        """What completions mode sends: the rendered prompt, then the prefix.

        A template that writes the BOS token itself meets a server tokenizer
        that adds one too: vLLM is asked not to (``add_special_tokens=false``,
        as transformers tokenizes a chat), any other server gets the text
        without its leading BOS, so the model reads exactly one.
        """
        text = req.prompt + req.prefix
        t = self.template
        if (t is not None and t.tokenizer_adds_bos and t.bos_token and text.startswith(t.bos_token)
                and not self._no_special_tokens()):
            text = text[len(t.bos_token):]
        return text

    def _no_special_tokens(self) -> bool:
        """Send vLLM's add_special_tokens=false (a locally rendered template, vLLM fields on)."""
        return (self.template is not None and self.cfg.explicit_sampler_fields
                and self.cfg.vllm_fields)

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
            # vLLM's extra fields, only away from their defaults (check_request
            # has refused them where they may not be sent).
            if p.min_tokens > 0:
                body["min_tokens"] = p.min_tokens
            if p.stop_token_ids:
                body["stop_token_ids"] = list(p.stop_token_ids)
            if p.include_stop_str_in_output:
                body["include_stop_str_in_output"] = True
            if p.ignore_eos:
                body["ignore_eos"] = True
        if self.cfg.use_chat:
            body["messages"] = [{"role": m.role, "content": m.content} for m in req.messages]
            if req.prefix:  # continue_final_message (check_request)
                body["messages"].append({"role": "assistant", "content": req.prefix})
                body["continue_final_message"] = True
                body["add_generation_prompt"] = False
            if p.logprobs:
                body["logprobs"] = True
                body["top_logprobs"] = 0
        else:
            body["prompt"] = self.prompt_text(req)
            if self._no_special_tokens():
                body["add_special_tokens"] = False
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
        stop_reason, stop_string = stop_of_choice(choice)
        return Completion(
            request_id=req.request_id,
            sample_index=idx,
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason") or "unknown",
            latency_s=latency_s,
            token_logprobs=self._logprobs(choice) if req.params.logprobs else None,
            stop_reason=stop_reason,
            stop_string=stop_string,
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
