"""Generation store: every sample on disk, content-addressed, append-only.

    from tts_bench.store import GenerationStore, sample_key
"""

from .schema import ARROW_SCHEMA, COLUMNS, SCHEMA_VERSION, derive_seed, prompt_sha, sample_key
from .store import DamagedShardWarning, GenerationStore, atomic_write_bytes

__all__ = [
    "ARROW_SCHEMA",
    "COLUMNS",
    "SCHEMA_VERSION",
    "DamagedShardWarning",
    "GenerationStore",
    "atomic_write_bytes",
    "derive_seed",
    "prompt_sha",
    "sample_key",
]
