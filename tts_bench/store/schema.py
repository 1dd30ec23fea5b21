"""The generation record: one row per sample, schema version 1.

Stored as Parquet shards (see ``store.py``); ``SCHEMA_VERSION`` is written in
every shard's metadata. Fields:

key              sha256 hex of the sample's identity (see ``sample_key``)
schema_version   int, this file's SCHEMA_VERSION
model_fp         ModelIdentity.fingerprint: model id + weights hash
model_id         model path, hub id or served name
weights_hash     sha256 of the weights, or the hub revision
engine           engine name ("llamacpp", "vllm", "openai", ...)
engine_version   version string of the engine package
dataset          task name (informational; not part of the key)
problem_id       problem id within the task (informational)
prompt_sha       sha256 hex of the rendered prompt
sample_index     0-based index of this sample for this prompt and parameters
base_seed        strategy.seed the run asked for
seed             the per-sample seed sent to the engine, or null if it takes none
params_json      canonical JSON of every SamplingParams field
temperature      copy of params_json's temperature (for filtering without parsing)
max_tokens       copy of params_json's max_tokens
text             the completion text
prompt_tokens    tokens in the rendered prompt
completion_tokens tokens generated
finish_reason    "stop", "length", or the engine's reason
mean_logprob     mean log-probability of the sampled tokens, or null
token_logprobs   per-token log-probabilities, or null unless requested
latency_s        wall time attributed to this sample
created_at       unix time the record was made
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

SCHEMA_VERSION = 1

ARROW_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("schema_version", pa.int16()),
        ("model_fp", pa.string()),
        ("model_id", pa.string()),
        ("weights_hash", pa.string()),
        ("engine", pa.string()),
        ("engine_version", pa.string()),
        ("dataset", pa.string()),
        ("problem_id", pa.string()),
        ("prompt_sha", pa.string()),
        ("sample_index", pa.int32()),
        ("base_seed", pa.int64()),
        ("seed", pa.int64()),
        ("params_json", pa.string()),
        ("temperature", pa.float32()),
        ("max_tokens", pa.int32()),
        ("text", pa.string()),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("mean_logprob", pa.float64()),
        ("token_logprobs", pa.list_(pa.float32())),
        ("latency_s", pa.float32()),
        ("created_at", pa.float64()),
    ],
    metadata={b"tts_bench.schema_version": str(SCHEMA_VERSION).encode()},
)

COLUMNS = ARROW_SCHEMA.names


def prompt_sha(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def sample_key(model_fp: str, prompt: str, params: dict, base_seed: int, seed: int | None,
               sample_index: int) -> str:
    """Content address of one sample.

    Covers the model (id and weights), the exact rendered prompt, every
    sampling parameter, the base and per-sample seed and the sample index:
    two samples share a key only if they are the same draw.
    """
    ident = {
        "v": SCHEMA_VERSION,
        "model": model_fp,
        "prompt": prompt_sha(prompt),
        "params": params,
        "base_seed": base_seed,
        "seed": seed,
        "index": sample_index,
    }
    raw = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def derive_seed(base_seed: int, prompt: str, sample_index: int) -> int:
    """Per-sample seed: independent across prompts and indices, stable across runs."""
    raw = f"{base_seed}:{prompt_sha(prompt)}:{sample_index}".encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:4], "big") & 0x7FFFFFFF
