"""A persistent cache of grades, so a (gold, answer) pair is graded once, ever.

Key: (grader name, grader version, gold answer, normalized extracted answer).
Value: (correct, status). The grader version is in the key, so a changed
grader never reuses an old verdict::

    cache = GradeCache(Path("results/grade_cache"))
    hit = cache.get("math", "1/math-verify-0.9.0", "\\frac{1}{2}", "0.5")  # CachedGrade | None
    cache.put("math", "1/math-verify-0.9.0", "\\frac{1}{2}", "0.5", correct=True, status="ok")
    cache.flush()                                                         # one new shard

On disk: a folder of Parquet shards ``grades-<time_ns>-<pid>-<sha256[:16]>.parquet``.
Each shard is written whole to a temporary file and renamed into place, so a
reader sees a complete shard or none; the name carries the hash of the
file's bytes, so damage after the write is detected before anything is read
from it. A damaged shard is reported with a :class:`CacheShardWarning` and
moved to ``quarantine/`` (kept for inspection, never half-read); its grades
are simply recomputed. Several processes may share a folder: each writes its
own shards.

Timeouts and errors are cached too, so a pair known to hang is not retried on
every run; ``get(..., retry_failed=True)`` ignores them so they are graded
again. When shards pile up (``compact_at``) they are merged into one.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple

SCHEMA_VERSION = "1"
_META_KEY = b"tts_bench.grade_cache"
_SHARD_RE = re.compile(r"grades-(\d+)-(\d+)-([0-9a-f]{16})\.parquet")
_STATUSES = frozenset({"ok", "timeout", "error"})
_COLUMNS = ("grader", "grader_version", "gold", "answer", "correct", "status")

CacheKey = tuple[str, str, str, str]  # grader, grader_version, gold, answer


class CachedGrade(NamedTuple):
    correct: bool
    status: str  # "ok" | "timeout" | "error"

    @property
    def failed(self) -> bool:
        """A timeout or error: a grade that ``retry_failed`` recomputes."""
        return self.status != "ok"


class CacheShardWarning(UserWarning):
    """A cache shard could not be used (damaged: quarantined; or a newer schema)."""


class GradeCache:
    """The grade cache in folder ``root`` (created if missing), loaded on construction."""

    def __init__(self, root: Path | str, *, compact_at: int = 64) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.compact_at = compact_at
        self.quarantined: list[Path] = []  # where damaged shards were moved, this session
        self._entries: dict[CacheKey, CachedGrade] = {}
        self._shards: list[Path] = []  # shards loaded or written by this object
        self._unsaved: dict[CacheKey, CachedGrade] = {}
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, grader: str, version: str, gold: str, answer: str, *, retry_failed: bool = False
    ) -> CachedGrade | None:
        hit = self._entries.get((grader, version, gold, answer))
        if hit is None or (retry_failed and hit.failed):
            return None
        return hit

    def put(
        self, grader: str, version: str, gold: str, answer: str, *, correct: bool, status: str
    ) -> None:
        if status not in _STATUSES:
            raise ValueError(f"unknown grade status {status!r}")
        key = (grader, version, gold, answer)
        grade = _merge(self._entries.get(key), CachedGrade(bool(correct), status))
        self._entries[key] = grade
        self._unsaved[key] = grade

    def flush(self) -> Path | None:
        """Write the grades put since the last flush as one new shard."""
        if not self._unsaved:
            return None
        path = self._write_shard(self._unsaved)
        self._unsaved = {}
        self._shards.append(path)
        if len(self._shards) >= self.compact_at:
            self.compact()
        return path

    def compact(self) -> Path | None:
        """Merge everything this object knows into one shard; delete the shards it replaces.

        Shards written meanwhile by other processes are not touched.
        """
        if not self._entries:
            return None
        old = list(self._shards)
        path = self._write_shard(self._entries)
        for shard in old:
            try:
                shard.unlink()
            except FileNotFoundError:
                pass
        self._shards = [path]
        self._unsaved = {}
        return path

    # ------------------------------------------------------------------ disk

    def _write_shard(self, entries: dict[CacheKey, CachedGrade]) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        keys = list(entries)
        table = pa.table(
            {
                "grader": pa.array([k[0] for k in keys], pa.string()),
                "grader_version": pa.array([k[1] for k in keys], pa.string()),
                "gold": pa.array([k[2] for k in keys], pa.string()),
                "answer": pa.array([k[3] for k in keys], pa.string()),
                "correct": pa.array([entries[k].correct for k in keys], pa.bool_()),
                "status": pa.array([entries[k].status for k in keys], pa.string()),
            }
        ).replace_schema_metadata({_META_KEY: SCHEMA_VERSION.encode()})
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()[:16]
        path = self.root / f"grades-{time.time_ns():020d}-{os.getpid()}-{digest}.parquet"
        tmp = self.root / f".tmp-{uuid.uuid4().hex}.parquet"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def _load(self) -> None:
        for path in sorted(self.root.glob("grades-*.parquet")):
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # compacted away by another process just now
                continue
            rows, problem, damaged = _read_shard(path.name, data)
            if problem is None:
                for key, grade in rows:
                    self._entries[key] = _merge(self._entries.get(key), grade)
                self._shards.append(path)
            elif damaged:
                self._quarantine(path, problem)
            else:
                warnings.warn(
                    f"grade cache shard {path} skipped: {problem}", CacheShardWarning, stacklevel=3
                )

    def _quarantine(self, path: Path, reason: str) -> None:
        qdir = self.root / "quarantine"
        qdir.mkdir(exist_ok=True)
        dest = qdir / path.name
        if dest.exists():
            dest = qdir / f"{path.name}.{time.time_ns()}"
        try:
            os.replace(path, dest)
        except FileNotFoundError:  # another process moved it first
            return
        self.quarantined.append(dest)
        warnings.warn(
            f"grade cache shard {path.name} is damaged ({reason}); moved to {dest}",
            CacheShardWarning,
            stacklevel=3,
        )


def _merge(old: CachedGrade | None, new: CachedGrade) -> CachedGrade:
    """The newer grade wins, except that a failure never replaces a real verdict."""
    if old is not None and not old.failed and new.failed:
        return old
    return new


def _read_shard(
    name: str, data: bytes
) -> tuple[list[tuple[CacheKey, CachedGrade]], str | None, bool]:
    """Parse and check a whole shard: (rows, problem or None, whether the problem is damage)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    m = _SHARD_RE.fullmatch(name)
    if m and hashlib.sha256(data).hexdigest()[:16] != m.group(3):
        return [], "content does not match the hash in its name", True
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as e:  # noqa: BLE001 - any parse failure means damage
        return [], f"unreadable: {type(e).__name__}: {e}", True
    version = (table.schema.metadata or {}).get(_META_KEY)
    if version is None:
        return [], "not a grade cache shard (no schema version)", True
    if version.decode() != SCHEMA_VERSION:
        return [], f"schema version {version.decode()}, this code reads {SCHEMA_VERSION}", False
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if missing:
        return [], f"missing columns {missing}", True
    cols = {c: table.column(c).to_pylist() for c in _COLUMNS}
    rows = []
    for g, v, gold, answer, correct, status in zip(*(cols[c] for c in _COLUMNS)):
        if None in (g, v, gold, answer, correct) or status not in _STATUSES:
            return [], "null key or unknown status", True
        rows.append(((g, v, gold, answer), CachedGrade(bool(correct), status)))
    return rows, None, False
