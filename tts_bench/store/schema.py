"""The call record: one row per engine call's sample, and the keys that address it.

Stored as Parquet shards (see ``store.py``). Two versions, kept apart:

- ``KEY_VERSION`` enters every key. It changes only when the *meaning* of a
  key changes; a new column never changes it, so nothing stored goes missing.
- ``ROW_VERSION`` (alias ``SCHEMA_VERSION``) is the columns' version, written
  in every shard's metadata. Shards of an older row version are read with
  the columns they lack as nulls (version 1 had no lineage, stop reason or
  token ids); shards of a newer one are skipped and left in place.

One dataclass, :class:`CallRecord`, is the schema: its fields (each with its
doc line) produce the Arrow schema, the rows and the field list below.

    rec = CallRecord(key=..., ...)           # every field typed and documented
    ARROW_SCHEMA                             # built from CallRecord's fields
    print(schema_doc())                      # name, type, doc: one line a field

A root call (no prefix, sampling parameters that existed in version 1) has
the very key a version-1 sample had, so stores written before calls existed
are read and reused without regenerating anything.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from typing import Sequence

import pyarrow as pa

KEY_VERSION = 1
ROW_VERSION = 2
SCHEMA_VERSION = ROW_VERSION  # the name version-1 code wrote into shard metadata


def _f(arrow_type: pa.DataType, doc: str, default=None):
    return field(default=default, metadata={"arrow": arrow_type, "doc": doc})


@dataclass
class CallRecord:
    """One sample of one engine call, as stored."""

    key: str = _f(pa.string(), "sha256 hex of the call's identity (see call_key)")
    schema_version: int = _f(pa.int16(), "row version of this record (ROW_VERSION)", ROW_VERSION)
    model_fp: str = _f(pa.string(), "ModelIdentity.fingerprint: model id + weights hash")
    model_id: str = _f(pa.string(), "model path, hub id or served name")
    weights_hash: str = _f(pa.string(), "sha256 of the weights, or the hub revision")
    engine: str = _f(pa.string(), 'engine name ("llamacpp", "vllm", "openai", ...)')
    engine_version: str = _f(pa.string(), "version string of the engine package")
    dataset: str = _f(pa.string(), "task name (informational; not part of the key)")
    problem_id: str = _f(pa.string(), "problem id within the task (informational)")
    prompt_sha: str = _f(pa.string(), "sha256 hex of the rendered prompt")
    sample_index: int = _f(pa.int32(), "0-based index of the sample for this prompt, prefix, parameters")
    base_seed: int = _f(pa.int64(), "the strategy's base seed")
    seed: int | None = _f(pa.int64(), "per-sample seed sent to the engine, or null if it takes none")
    params_json: str = _f(pa.string(), "canonical JSON of every SamplingParams field (as keyed)")
    temperature: float = _f(pa.float32(), "copy of params_json's temperature (filter without parsing)")
    max_tokens: int = _f(pa.int32(), "copy of params_json's max_tokens")
    text: str = _f(pa.string(), "the generated text (the continuation only: never prompt or prefix)")
    prompt_tokens: int = _f(pa.int32(), "tokens the model read: rendered prompt + prefix")
    completion_tokens: int = _f(pa.int32(), "tokens generated (a stop token included)")
    finish_reason: str = _f(pa.string(), '"stop" or "length" (OpenAI spelling)')
    mean_logprob: float | None = _f(pa.float64(), "mean log-probability of the sampled tokens, or null")
    token_logprobs: list | None = _f(pa.list_(pa.float32()), "per-token logprobs, or null unless asked")
    latency_s: float = _f(pa.float32(), "wall time attributed to this sample")
    created_at: float = _f(pa.float64(), "unix time the record was made")
    # -- row version 2: lineage, stop reasons, token ids ---------------------
    prefix_sha: str | None = _f(pa.string(), "sha256 hex of the assistant prefix continued; null: root call")
    prefix_tokens: int | None = _f(pa.int32(), "tokens of the prefix (in prompt_tokens); null: root call")
    parent_key: str | None = _f(pa.string(), "key of the call this one continues or revises; null: root")
    step: int | None = _f(pa.int32(), "the strategy's step of this call (0: root); null in version 1")
    stop_reason: str | None = _f(pa.string(), '"eos", "stop_string", "stop_token" or "length"; null in v1')
    stop_string: str | None = _f(pa.string(), "the stop string (or stop token id) that ended the call")
    token_ids: list | None = _f(pa.list_(pa.int32()), "generated token ids (no EOS/stop token), if given")

    def __post_init__(self) -> None:
        # Every record is built here (engine calls and imports alike), so text
        # Parquet cannot hold never reaches the store write. Not a field.
        self.repaired = 0
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, str):
                fixed, n = repair_text(v)
                if n:
                    setattr(self, f.name, fixed)
                    self.repaired += n

    def row(self) -> dict:
        # Shallow: the fields are plain values (lists of floats at most), and
        # dataclasses.asdict's deep copy was a seventh of a 200k-sample import.
        return {name: getattr(self, name) for name in _field_names(type(self))}


@functools.cache
def _field_names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


# A str can hold UTF-16 surrogate code points (JSON "\ud800" decodes to one,
# and servers send them when they cut a character in two); UTF-8, and so
# Arrow and Parquet, cannot encode them.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def repair_text(text: str) -> tuple[str, int]:
    """``text`` with every lone surrogate replaced by U+FFFD, and how many were replaced."""
    return _SURROGATE.subn(REPLACEMENT, text)


def repair_row(row: dict) -> tuple[dict, int]:
    """A record dict whose strings can be stored (see :func:`repair_text`); the input is not changed."""
    out, total = row, 0
    for k, v in row.items():
        if isinstance(v, str):
            fixed, n = repair_text(v)
            if n:
                out = dict(out) if out is row else out
                out[k] = fixed
                total += n
    return out, total


def arrow_schema_of(record_cls, row_version: int, key_version: int) -> pa.Schema:
    """The Arrow schema of a record dataclass whose fields were declared with ``_f``."""
    return pa.schema(
        [pa.field(f.name, f.metadata["arrow"]) for f in fields(record_cls)],
        metadata={b"tts_bench.schema_version": str(row_version).encode(),
                  b"tts_bench.key_version": str(key_version).encode()},
    )


ARROW_SCHEMA = arrow_schema_of(CallRecord, ROW_VERSION, KEY_VERSION)

COLUMNS = ARROW_SCHEMA.names


def schema_doc(record_cls=CallRecord) -> str:
    """One line per stored field: name, Arrow type, meaning (for docs and `tts-bench cache`)."""
    return "\n".join(f"{f.name:<18} {str(f.metadata['arrow']):<14} {f.metadata['doc']}"
                     for f in fields(record_cls))


def conform(table: pa.Table, schema: pa.Schema = ARROW_SCHEMA) -> pa.Table:
    """A table of any older row version with today's columns (absent ones null), cast."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names
            else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def prompt_sha(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def ids_sha(ids: Sequence[int]) -> str:
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def call_key(model_fp: str, prompt: str, params: dict, base_seed: int, seed: int | None,
             sample_index: int, *, prefix: str = "", prefix_ids: Sequence[int] | None = None) -> str:
    """Content address of one sample of one call.

    Covers the model (id and weights), the exact rendered prompt, the
    assistant prefix (text and, where fed as ids, the ids), every sampling
    parameter, the base and per-sample seed and the sample index: two samples
    share a key only if they are the same draw. Lineage (parent, step) is not
    in the key: the same draw reached by two strategies is stored once.
    """
    ident = {
        "v": KEY_VERSION,
        "model": model_fp,
        "prompt": prompt_sha(prompt),
        "params": params,
        "base_seed": base_seed,
        "seed": seed,
        "index": sample_index,
    }
    if prefix:
        ident["prefix"] = prompt_sha(prefix)
    if prefix_ids is not None:
        ident["prefix_ids"] = ids_sha(prefix_ids)
    raw = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def sample_key(model_fp: str, prompt: str, params: dict, base_seed: int, seed: int | None,
               sample_index: int) -> str:
    """The key of a root call's sample (what version 1 called a sample key)."""
    return call_key(model_fp, prompt, params, base_seed, seed, sample_index)


def derive_seed(base_seed: int, prompt: str, sample_index: int, prefix: str = "") -> int:
    """Per-sample seed: independent across prompts, prefixes and indices, stable across runs."""
    raw = f"{base_seed}:{prompt_sha(prompt)}:{sample_index}"
    if prefix:
        raw += f":{prompt_sha(prefix)}"
    return int.from_bytes(hashlib.sha256(raw.encode()).digest()[:4], "big") & 0x7FFFFFFF
