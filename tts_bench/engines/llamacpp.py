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

import os
import random
from typing import Iterator, Sequence

from ..config import ConfigError, LlamaCppEngineConfig, ModelConfig
from ..models.files import resolve_model_path, weights_hash
from .base import (
    Capabilities,
    Completion,
    GenerationRequest,
    Message,
    ModelIdentity,
    finish_reason_of,
)
from .llamacpp_batch import BatchDecoder, _Sample


def default_threads() -> int:
    # One core fewer than the machine has: llama.cpp's OpenMP threads spin at
    # barriers, and when any other process (a grading worker, the harness)
    # takes a core, every step stalls. Measured on 2 cores, the default run:
    # quiet, 67-76 tok/s with 1 thread and 116-121 with 2; beside one busy
    # process, 76 with 1 and 14.6 with 2. A dedicated machine sets n_threads.
    return max(1, (os.cpu_count() or 2) - 1)


class LlamaCppEngine:
    name = "llamacpp"
    capabilities = Capabilities(seed=True, prefix=True, token_ids=True, logprobs=True, min_tokens=True)

    def __init__(self, engine_cfg: LlamaCppEngineConfig, model_cfg: ModelConfig):
        engine_cfg.check(model_cfg)
        try:
            import llama_cpp
            from llama_cpp import _internals
            from llama_cpp._logger import set_verbose
        except ImportError:
            raise ConfigError(
                "engine=llamacpp needs llama-cpp-python: pip install -e '.[cpu]'"
            ) from None
        self._llama_cpp = llama_cpp
        self.cfg = engine_cfg
        self.model_cfg = model_cfg
        self.path = resolve_model_path(model_cfg.path)
        set_verbose(engine_cfg.verbose)
        llama_cpp.llama_backend_init()
        self._model = _internals.LlamaModel(
            path_model=str(self.path), params=llama_cpp.llama_model_default_params(),
            verbose=engine_cfg.verbose)
        self.parallel = engine_cfg.parallel_sequences
        self.context_window = model_cfg.context_length  # positions one sequence may fill
        self.kv_cells = engine_cfg.kv_cells or self.parallel * self.context_window
        self.n_threads = engine_cfg.n_threads or default_threads()
        self._ctx = _internals.LlamaContext(model=self._model, params=self._context_params(),
                                            verbose=engine_cfg.verbose)
        self._decoder = BatchDecoder(llama_cpp, self._model, self._ctx.ctx, parallel=self.parallel,
                                     kv_cells=self.kv_cells, n_batch=engine_cfg.n_batch)
        meta = self._model.metadata()
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(f"{self.path.name} has no chat template in its GGUF metadata")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def token_text(key: str) -> str:
            tid = meta.get(key)
            if tid is None:
                return ""
            return self._model.detokenize([int(tid)], special=True).decode("utf-8", "replace")

        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=token_text("tokenizer.ggml.eos_token_id"),
            bos_token=token_text("tokenizer.ggml.bos_token_id"),
            add_generation_prompt=True,
        )

    def _context_params(self):
        lc = self._llama_cpp
        cp = lc.llama_context_default_params()
        cp.n_ctx = self.kv_cells + 1  # + the padding token's cell (a parked prompt is reserved)
        cp.n_batch = self.cfg.n_batch + 1
        cp.n_ubatch = self.cfg.n_batch + 1
        cp.n_seq_max = self.parallel + 2  # + the padding and the parking sequences
        cp.kv_unified = True  # one cell pool: a shared prompt is stored once, not per sequence
        cp.n_threads = self.n_threads
        cp.n_threads_batch = self.n_threads  # every step with several sequences is a "batch"
        cp.flash_attn_type = (lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.cfg.flash_attn
                              else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        cp.no_perf = True
        return cp

    def identity(self) -> ModelIdentity:
        return ModelIdentity(
            model_id=str(self.model_cfg.path),
            weights_hash=weights_hash(self.path),
            engine=self.name,
            engine_version=f"llama-cpp-python/{self._llama_cpp.__version__}",
        )

    def render(self, messages: Sequence[Message]) -> str:
        resp = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        return resp.prompt

    def tokenize(self, text: str) -> list[int]:
        """Token ids of assistant text: no BOS; special-token text maps to its id."""
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ids as completions carry it (special tokens written as nothing)."""
        return self._model.detokenize(list(ids), special=False).decode("utf-8", "replace")

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[list[Completion]]:
        """All requests' samples as parallel sequences; groups of those that finished together.

        See ``llamacpp_batch`` for the schedule, the sampler and what it does
        to reproducibility.
        """
        samples = [s for req in requests for s in self._samples(req)]
        for finished in self._decoder.run(samples):
            yield [self._completion(s) for s in finished]

    def _samples(self, req: GenerationRequest) -> list[_Sample]:
        ids = self._prompt_ids(req.prompt)
        if req.prefix_ids is not None:
            ids = ids + list(req.prefix_ids)
        elif req.prefix:
            ids = ids + self.tokenize(req.prefix)
        p = req.params
        # As create_completion does: never decode past the context window; the
        # cap reads as "length".
        if len(ids) >= self.context_window:
            raise ConfigError(
                f"prompt + prefix of {len(ids)} tokens fills model.context_length={self.context_window}; "
                f"raise model.context_length or shorten the prompt (stored calls are kept)"
            )
        max_tokens = min(p.max_tokens, self.context_window - len(ids))
        held = list(dict.fromkeys([self._model.token_eos(), *p.stop_token_ids]))
        return [
            _Sample(req=req, ids=ids, index=idx, max_tokens=max_tokens, held=held,
                    seed=seed if seed is not None else random.Random().randint(0, 2**31 - 1),
                    logprobs=[] if p.logprobs else None)
            for idx, seed in zip(req.sample_indices, req.seeds)
        ]

    def _completion(self, s: _Sample) -> Completion:
        return Completion(
            request_id=s.req.request_id,
            sample_index=s.index,
            text=s.text,
            prompt_tokens=len(s.ids),
            completion_tokens=len(s.out),
            finish_reason=finish_reason_of(s.stop_reason),
            latency_s=s.latency_s,
            token_logprobs=s.logprobs if s.out else None,
            token_ids=s.out,
            stop_reason=s.stop_reason,
            stop_string=s.stop_string,
        )

    def _prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of the rendered prompt, with exactly one BOS where the model wants one.

        Templates that write the BOS token themselves (Llama 3) would get a
        second one from llama.cpp's own add_bos; SmolLM2 adds none.
        """
        bos = self._formatter.bos_token
        # add_bos lets llama.cpp add BOS where the model's vocabulary asks for it.
        add_bos = not (bos and prompt.startswith(bos))
        return self._model.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def close(self) -> None:
        decoder = getattr(self, "_decoder", None)
        if decoder is not None:
            decoder.close()
            self._decoder = None
        for name in ("_ctx", "_model"):
            obj = getattr(self, name, None)
            if obj is not None:
                obj.close()
                setattr(self, name, None)
