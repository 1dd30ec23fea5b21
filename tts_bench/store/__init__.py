"""Call store: every engine call's samples (and verifier scores) on disk, content-addressed.

    from tts_bench.store import GenerationStore, call_key, CallRecord
    from tts_bench.store import ScoreStore, ScoreRecord, score_key
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
from .scores import SCORE_SCHEMA, ScoreRecord, ScoreStore, score_key, steps_sha
from .store import DamagedShardWarning, GenerationStore, ShardStore, atomic_write, atomic_write_bytes

__all__ = [
    "ARROW_SCHEMA",
    "COLUMNS",
    "KEY_VERSION",
    "ROW_VERSION",
    "SCHEMA_VERSION",
    "CallRecord",
    "DamagedShardWarning",
    "GenerationStore",
    "SCORE_SCHEMA",
    "ScoreRecord",
    "ScoreStore",
    "ShardStore",
    "atomic_write",
    "atomic_write_bytes",
    "call_key",
    "derive_seed",
    "prompt_sha",
    "sample_key",
    "schema_doc",
    "score_key",
    "steps_sha",
]
