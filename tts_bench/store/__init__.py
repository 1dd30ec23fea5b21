"""Call store: every engine call's samples on disk, content-addressed, append-only.

    from tts_bench.store import GenerationStore, call_key, CallRecord
"""

from .schema import (
    ARROW_SCHEMA,
    COLUMNS,
    KEY_VERSION,
    ROW_VERSION,
    SCHEMA_VERSION,
    CallRecord,
    call_key,
    derive_seed,
    prompt_sha,
    sample_key,
    schema_doc,
)
from .store import DamagedShardWarning, GenerationStore, atomic_write_bytes

__all__ = [
    "ARROW_SCHEMA",
    "COLUMNS",
    "KEY_VERSION",
    "ROW_VERSION",
    "SCHEMA_VERSION",
    "CallRecord",
    "DamagedShardWarning",
    "GenerationStore",
    "atomic_write_bytes",
    "call_key",
    "derive_seed",
    "prompt_sha",
    "sample_key",
    "schema_doc",
]
