"""Hugging Face transformers engine: batched decoding of a causal LM in this process.

    from tts_bench.config import ModelConfig, TransformersEngineConfig
    from tts_bench.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(TransformersEngineConfig(device="cpu"),
                                ModelConfig(path="results/models/smollm2-135m-hf"))
    prompt = engine.render([Message("user", "What is 2 + 2?")])
    for done in engine.generate([request]): ...
    engine.close()

    tts-bench run engine=transformers model=smollm2-135m-hf

For models vLLM does not serve and machines without vLLM (``pip install -e
'.[hf]'``). Samples of all requests are cut into batches of
``engine.batch_size`` rows, left-padded, prefilled in one forward pass and
decoded step by step over the model's KV cache, by this module's own loop,
not ``model.generate``: the model's generation_config (temperature, top_k,
repetition_penalty, ...) never enters, only the request's SamplingParams.

Sampling, per row, in this order: min_tokens holds EOS and stop_token_ids
back (their logits set to -inf); temperature 0 is greedy (argmax); otherwise
the temperature-scaled distribution is sorted (stable, so ties break by token
id), min_p, then top_k, then top_p cut it (vLLM's order; top_p over what
top_k kept) and the token is drawn by inverse CDF with one uniform number.

Seeds: each sample's uniforms come from its own ``torch.Generator`` seeded
with the sample's seed and drawn up front on the CPU, so a sample's random
stream never depends on its batch, its row or the other rows. Its tokens are
then the same at every batch size and with any co-batched requests, up to
floating-point differences between batched kernels (exact on CPU in float32
in the tests; in bf16 on a GPU a near-tie can rarely go the other way).

Logprobs are the raw model's: log_softmax of the unprocessed logits at the
sampled token (before temperature, top-p and min_tokens), as vLLM reports
them by default. Text is the tokenizer's decode of the generated ids with
special tokens kept, so ``text == decode(token_ids)``; EOS and stop tokens are
left out of both.
"""

from __future__ import annotations

import inspect
import math
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, ModelConfig, TransformersEngineConfig
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
)
from .vllm_engine import hf_weights_hash, model_location, render_chat

DTYPES = ("auto", "float32", "bfloat16", "float16")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_config(engine_cfg: TransformersEngineConfig) -> None:
    """Compose-time checks of the engine's own fields (one line each)."""
    if not _DEVICE.fullmatch(engine_cfg.device):
        raise ConfigError(f"engine.device={engine_cfg.device!r}: expected auto, cpu, cuda or cuda:N")
    if engine_cfg.dtype not in DTYPES:
        raise ConfigError(f"engine.dtype={engine_cfg.dtype!r}: expected one of {', '.join(DTYPES)}")
    if engine_cfg.batch_size < 1:
        raise ConfigError(f"engine.batch_size must be at least 1, got {engine_cfg.batch_size}")


def resolve_device(torch: Any, device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"engine.device={device} but torch {torch.__version__} sees no CUDA device; "
                          f"use engine.device=cpu")
    return device


def resolve_dtype(torch: Any, dtype: str, device: str) -> Any:
    if dtype == "auto":
        if device == "cpu":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, dtype)


@dataclass
class _Row:
    """One sample being decoded: its context, parameters, random stream and output so far."""

    request: GenerationRequest
    position: int  # index into request.sample_indices / request.seeds
    context: list[int]  # prompt + prefix ids
    max_new: int  # max_tokens, capped by the context window
    out: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    stop_reason: str | None = None  # set when finished
    stop_string: str | None = None
    text: str | None = None  # set when a stop string cut it


class TransformersEngine:
    """Engine protocol over ``transformers.AutoModelForCausalLM`` with this module's decode loop."""

    name = "transformers"
    capabilities = Capabilities(seed=True, prefix=True, token_ids=True, logprobs=True, min_tokens=True)

    def __init__(self, engine_cfg: TransformersEngineConfig, model_cfg: ModelConfig):
        torch, transformers = _import_backend()
        check_config(engine_cfg)
        device = resolve_device(torch, engine_cfg.device)
        dtype = resolve_dtype(torch, engine_cfg.dtype, device)
        location = model_location(model_cfg.path)
        common = {"revision": model_cfg.revision, "trust_remote_code": engine_cfg.trust_remote_code}
        tokenizer = transformers.AutoTokenizer.from_pretrained(engine_cfg.tokenizer or location, **common)
        # transformers 5 renamed torch_dtype to dtype.
        dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        kw: dict[str, Any] = {**common, dtype_kw: dtype}
        if engine_cfg.attn_implementation:
            kw["attn_implementation"] = engine_cfg.attn_implementation
        model = transformers.AutoModelForCausalLM.from_pretrained(location, **kw)
        self._setup(model.to(device), tokenizer, engine_cfg, model_cfg, weights_hash=None)

    @classmethod
    def from_loaded(cls, model: Any, tokenizer: Any, engine_cfg: TransformersEngineConfig,
                    model_cfg: ModelConfig, *, weights_hash: str) -> TransformersEngine:
        """An engine over a model already in memory (weights built in place, e.g. the GPU check)."""
        _import_backend()
        check_config(engine_cfg)
        self = cls.__new__(cls)
        self._setup(model, tokenizer, engine_cfg, model_cfg, weights_hash=weights_hash)
        return self

    def _setup(self, model: Any, tokenizer: Any, engine_cfg: TransformersEngineConfig,
               model_cfg: ModelConfig, *, weights_hash: str | None) -> None:
        import torch
        import transformers

        self._torch = torch
        self._transformers_version = transformers.__version__
        self.cfg = engine_cfg
        self.model_cfg = model_cfg
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._weights_hash = weights_hash
        self.device = next(model.parameters()).device
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and model_cfg.context_length > limit:
            raise ConfigError(f"model.context_length={model_cfg.context_length} exceeds the model's "
                              f"max_position_embeddings={limit}; set model.context_length={limit} or less")
        self.n_ctx = model_cfg.context_length
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
        if tokenizer.eos_token_id is not None:
            eos.append(tokenizer.eos_token_id)
        # The model's own end tokens (Llama 3 has several); its sampling defaults are never read.
        self.eos_ids = tuple(dict.fromkeys(int(t) for t in eos))
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0))
        # transformers 5.24 calls the KV cache argument "cache"; earlier ones "past_key_values".
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)

    def identity(self) -> ModelIdentity:
        if self._weights_hash is None:
            self._weights_hash = hf_weights_hash(self.model_cfg)
        return ModelIdentity(
            model_id=str(self.model_cfg.path),
            weights_hash=self._weights_hash,
            engine=self.name,
            engine_version=f"transformers/{self._transformers_version} torch/{self._torch.__version__}",
        )

    def render(self, messages: Sequence[Message]) -> str:
        if not getattr(self._tokenizer, "chat_template", None):
            raise ConfigError(f"model.path {self.model_cfg.path}: the tokenizer has no chat template; "
                              f"use an instruct model or set engine.tokenizer to one with a template")
        return render_chat(self._tokenizer, messages)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of assistant text, no special tokens added (special-token text maps to its id)."""
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids, special tokens kept, no space clean-up (``text == decode(ids)``)."""
        return self._tokenizer.decode(list(ids), skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False)

    # ------------------------------------------------------------------ generation

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[list[Completion]]:
        ids_cache: dict[str, list[int]] = {}
        rows: list[_Row] = []
        for req in requests:
            if req.prompt not in ids_cache:
                # The rendered prompt holds the template's special tokens (BOS where it has one).
                ids_cache[req.prompt] = self.tokenize(req.prompt)
            ids = ids_cache[req.prompt]
            if req.prefix_ids is not None:
                ids = ids + list(req.prefix_ids)
            elif req.prefix:
                ids = ids + self.tokenize(req.prefix)
            if len(ids) >= self.n_ctx:
                raise ConfigError(
                    f"prompt + prefix of {len(ids)} tokens fills model.context_length={self.n_ctx}; raise "
                    f"model.context_length or shorten the prompt (stored calls are kept)")
            max_new = min(req.params.max_tokens, self.n_ctx - len(ids))
            rows += [_Row(req, i, ids, max_new) for i in range(req.n)]
        for lo in range(0, len(rows), self.cfg.batch_size):
            batch = rows[lo: lo + self.cfg.batch_size]
            t0 = time.perf_counter()
            self._decode_batch(batch)
            per_sample = (time.perf_counter() - t0) / len(batch)
            yield [self._completion(r, per_sample) for r in batch]

    def _decode_batch(self, rows: list[_Row]) -> None:
        """Decode every row to its end: one prefill over the left-padded batch, then one step per token."""
        torch = self._torch
        dev = self.device
        n, width = len(rows), max(len(r.context) for r in rows)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r.context):] = torch.tensor(r.context, dtype=torch.long)
            mask[i, width - len(r.context):] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        sampler = _Sampler(torch, rows, self.eos_ids, dev)
        steps = max(r.max_new for r in rows)
        for r in rows:
            if r.max_new <= 0:
                r.stop_reason = STOP_LENGTH
        kw: dict[str, Any] = {"use_cache": True}
        if self._keep_kw:
            kw[self._keep_kw] = 1
        with torch.inference_mode():
            out = self._model(input_ids=ids, attention_mask=mask, position_ids=positions, **kw)
            for step in range(steps):
                tokens, logprobs = sampler.sample(out.logits[:, -1, :].float(), step)
                tokens_list = tokens.tolist()
                lps = logprobs.tolist() if logprobs is not None else None
                for i, r in enumerate(rows):
                    if r.stop_reason is None:
                        self._advance(r, tokens_list[i], lps[i] if lps is not None else None)
                if all(r.stop_reason is not None for r in rows) or step == steps - 1:
                    break
                mask = torch.cat([mask, mask.new_ones((n, 1))], dim=1)
                positions = positions[:, -1:] + 1
                kw[self._cache_kw] = getattr(out, self._cache_kw)
                out = self._model(input_ids=tokens.unsqueeze(1), attention_mask=mask,
                                  position_ids=positions, **kw)
        del out, kw

    def _advance(self, r: _Row, tok: int, lp: float | None) -> None:
        """Append one sampled token to a row, or end it (EOS, stop token, stop string, length)."""
        p = r.request.params
        free = len(r.out) >= p.min_tokens
        if free and not p.ignore_eos and tok in self.eos_ids:
            r.stop_reason = STOP_EOS
            return
        if free and tok in p.stop_token_ids:
            r.stop_reason, r.stop_string = STOP_TOKEN, str(tok)
            return
        r.out.append(tok)
        if lp is not None:
            r.logprobs.append(lp)
        if p.stop:
            # Only the tail can hold a stop string that this token completed; a
            # character spans at most 4 byte-level tokens.
            longest = max(len(s) for s in p.stop)
            tail = self.decode(r.out[-(4 * longest + 4):])
            if any(s and s in tail for s in p.stop):
                cut, which = match_stop_string(self._text(r), p.stop)
                if which is not None:
                    r.stop_reason, r.stop_string = STOP_STRING, which
                    r.text = cut + (which if p.include_stop_str_in_output else "")
                    return
        if len(r.out) >= r.max_new:
            r.stop_reason = STOP_LENGTH

    def _text(self, r: _Row) -> str:
        """The generated text as it reads after the context (a SentencePiece word keeps its space)."""
        tail = r.context[-4:]
        head, both = self.decode(tail), self.decode(tail + r.out)
        return both[len(head):] if both.startswith(head) else self.decode(r.out)

    def _completion(self, r: _Row, latency_s: float) -> Completion:
        stop = r.stop_reason or STOP_LENGTH
        return Completion(
            request_id=r.request.request_id,
            sample_index=r.request.sample_indices[r.position],
            text=r.text if r.text is not None else self._text(r),
            prompt_tokens=len(r.context),
            completion_tokens=len(r.out),
            finish_reason=finish_reason_of(stop),
            latency_s=latency_s,
            token_logprobs=list(r.logprobs) if r.request.params.logprobs else None,
            token_ids=list(r.out),
            stop_reason=stop,
            stop_string=r.stop_string,
        )

    def close(self) -> None:
        model = getattr(self, "_model", None)
        if model is None:
            return
        self._model = None
        del model
        torch = self._torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class _Sampler:
    """Vectorised sampling of one token per row, each row with its own parameters and random stream."""

    def __init__(self, torch: Any, rows: list[_Row], eos_ids: tuple[int, ...], device: Any):
        self.torch = torch
        params = [r.request.params for r in rows]
        n = len(rows)
        self.greedy = torch.tensor([p.temperature <= 0 for p in params], device=device)
        self.any_sampled = not all(p.temperature <= 0 for p in params)
        self.any_logprobs = any(p.logprobs for p in params)
        f32 = torch.float32
        self.temperature = torch.tensor([p.temperature if p.temperature > 0 else 1.0 for p in params],
                                        dtype=f32, device=device).unsqueeze(1)
        self.top_p = torch.tensor([p.top_p for p in params], dtype=f32, device=device).unsqueeze(1)
        self.min_p = torch.tensor([p.min_p for p in params], dtype=f32, device=device).unsqueeze(1)
        self.top_k = [p.top_k for p in params]
        # One uniform per step per row, from the row's own seeded CPU generator.
        steps = max(1, max(r.max_new for r in rows))
        uniforms = torch.zeros((n, steps), dtype=f32)
        if self.any_sampled:
            for i, r in enumerate(rows):
                seed = r.request.seeds[r.position]
                g = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))
                uniforms[i, : r.max_new] = torch.rand(r.max_new, generator=g, dtype=f32)
        self.uniforms = uniforms.to(device)
        # min_tokens: (row, token) pairs of EOS and stop ids held back while the row is short.
        held = [(i, t, p.min_tokens) for i, p in enumerate(params) if p.min_tokens > 0
                for t in dict.fromkeys([*eos_ids, *p.stop_token_ids])]
        self.hold_until = max((m for _, _, m in held), default=0)
        if held:
            self.held_rows = torch.tensor([i for i, _, _ in held], device=device)
            self.held_tokens = torch.tensor([t for _, t, _ in held], device=device)
            self.held_min = torch.tensor([m for _, _, m in held], device=device)

    def sample(self, logits: Any, step: int) -> tuple[Any, Any]:
        """Token ids [rows] and, when any row asked, raw-model logprobs of them [rows]."""
        torch = self.torch
        raw_lp = torch.log_softmax(logits, dim=-1) if self.any_logprobs else None
        if step < self.hold_until:
            logits = logits.clone()
            cur = logits[self.held_rows, self.held_tokens]
            logits[self.held_rows, self.held_tokens] = torch.where(
                self.held_min > step, torch.full_like(cur, -math.inf), cur)
        tokens = logits.argmax(dim=-1)
        if self.any_sampled:
            tokens = torch.where(self.greedy, tokens, self._draw(logits, step))
        lp = raw_lp.gather(1, tokens.unsqueeze(1)).squeeze(1) if raw_lp is not None else None
        return tokens, lp

    def _draw(self, logits: Any, step: int) -> Any:
        torch = self.torch
        probs = torch.softmax(logits / self.temperature, dim=-1)
        p, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        vocab = p.shape[1]
        ranks = torch.arange(vocab, device=p.device).unsqueeze(0)
        keep = p >= self.min_p * p[:, :1]
        k = torch.tensor([t if t > 0 else vocab for t in self.top_k], device=p.device).unsqueeze(1)
        keep &= ranks < k
        p = p * keep
        cum = p.cumsum(-1)
        # top_p over what min_p and top_k kept: a token stays while the mass before it is short of top_p.
        p = p * ((cum - p) < self.top_p * cum[:, -1:])
        p[:, 0] = torch.where(p[:, 0] > 0, p[:, 0], probs.max(dim=-1).values)  # never an empty row
        cdf = p.cumsum(-1)
        target = self.uniforms[:, step: step + 1] * cdf[:, -1:]
        kept = (p > 0).sum(-1, keepdim=True)
        pick = torch.searchsorted(cdf, target, right=True).clamp(max=kept - 1)
        return order.gather(1, pick).squeeze(1)


def _import_backend() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        raise ConfigError(
            "engine=transformers needs torch and transformers: pip install torch==2.13.0 -e '.[hf]' "
            "(pin the CPU build on machines without a GPU)"
        ) from None
    return torch, transformers
