"""On-disk generation store: append-only Parquet shards, written atomically.

Layout under the store root (``results/store`` by default)::

    generations/<model_fp>/part-<time>-<pid>-<rand>-<sha16>.parquet
    scores/<verifier_fp>/part-...parquet    verifier scores (``scores.py``)
    quarantine/...            damaged shards, moved aside (never deleted)

Each shard is written to a hidden temporary file, fsync'd, then renamed into
place, so a crash never leaves a partial file that looks complete. The first
16 hex digits of the shard's sha256 are in its name: a shard whose bytes no
longer match (truncated, bit-flipped, half-copied) is detected on read, moved
to quarantine/ with a warning, and its samples count as missing, so the next
run regenerates them. Rows are deduplicated by key on read, so two processes
that raced on one sample never double count it.

    store = GenerationStore("results/store")
    keys = store.existing_keys(model_fp)
    store.write_shard(model_fp, records)          # list of dicts (schema.py)
    table = store.read(model_fp, keys=wanted, columns=[...])
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import ARROW_SCHEMA, ROW_VERSION, conform, repair_row


class DamagedShardWarning(UserWarning):
    pass


@dataclass
class ShardInfo:
    path: Path
    rows: int
    bytes: int


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old state or all of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}-{secrets.token_hex(4)}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


class ShardStore:
    """Append-only, checksummed Parquet shards of one record schema, partitioned by a fingerprint.

    Subclasses say which folder, schema and row version they hold; the write,
    verify, quarantine, dedupe and compaction machinery is shared.
    """

    SUBDIR: str  # folder under the store root
    SCHEMA: pa.Schema  # carries b"tts_bench.schema_version" in its metadata
    ROW_VERSION: int
    QUARANTINE = ""  # folder under quarantine/ (generations: none, as written before scores existed)
    INFO_COLUMNS: tuple[str, ...] = ()  # copied from a partition's first row into info()

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.quarantined: list[Path] = []
        # Lone surrogates replaced by U+FFFD in the records this object wrote (see schema.repair_text).
        self.repaired_chars = 0
        self.repaired_rows = 0

    @classmethod
    def conform(cls, table: pa.Table) -> pa.Table:
        """A table of an older row version with today's columns (absent ones null)."""
        return conform(table, cls.SCHEMA)

    # -- paths ---------------------------------------------------------------
    def partition(self, model_fp: str) -> Path:
        return self.root / self.SUBDIR / model_fp

    def partitions(self) -> list[str]:
        gen = self.root / self.SUBDIR
        return sorted(p.name for p in gen.iterdir() if p.is_dir()) if gen.is_dir() else []

    def shards(self, model_fp: str) -> list[Path]:
        part = self.partition(model_fp)
        if not part.is_dir():
            return []
        return sorted(p for p in part.glob("part-*.parquet"))

    # -- writing -------------------------------------------------------------
    def write_shard(self, model_fp: str, records: Sequence[dict] | pa.Table) -> Path | None:
        """Persist records (dicts or a Table) as one new shard; returns its path."""
        if isinstance(records, pa.Table):
            table = self.conform(records)  # an Arrow table holds valid UTF-8 already
        else:
            rows = []
            for r in records:
                row, n = repair_row(r) if isinstance(r, dict) else \
                    ((r.row(), r.repaired) if hasattr(r, "repaired") else repair_row(r.row()))
                self.repaired_chars += n
                self.repaired_rows += bool(n)
                rows.append(row)
            table = pa.Table.from_pylist(rows, schema=self.SCHEMA)
        if table.num_rows == 0:
            return None
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()[:16]
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}-{digest}.parquet"
        path = self.partition(model_fp) / name
        atomic_write_bytes(path, data)
        return path

    def repair_note(self) -> str | None:
        """One line for the user when stored texts had lone surrogates replaced, else None."""
        if not self.repaired_rows:
            return None
        return (f"{self.repaired_rows} sample(s) held {self.repaired_chars} lone surrogate(s) (half of a "
                f"UTF-16 pair, which UTF-8 cannot store); each was stored as U+FFFD, the rest of the "
                f"text as sent")

    # -- reading -------------------------------------------------------------
    def _load_verified(self, path: Path, columns: Sequence[str] | None) -> pa.Table | None:
        """The shard's table, or None (and quarantined) if it is damaged."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # compacted away by another process meanwhile
            return None
        expected = path.stem.rsplit("-", 1)[-1]
        problem = None
        if hashlib.sha256(data).hexdigest()[:16] != expected:
            problem = "checksum mismatch"
        else:
            try:
                pf = pq.ParquetFile(io.BytesIO(data))
                meta = pf.schema_arrow.metadata or {}
                version = int(meta.get(b"tts_bench.schema_version", b"0"))
                if version > self.ROW_VERSION or version < 1:
                    # Written by a newer tts-bench sharing this store: not
                    # damaged, so left in place (this version cannot know what
                    # its columns mean, so its samples count as missing here).
                    warnings.warn(
                        f"shard {path.name} has row version {version}; this tts-bench reads "
                        f"versions 1..{self.ROW_VERSION}, so it skips the shard (left in place)",
                        DamagedShardWarning,
                        stacklevel=3,
                    )
                    return None
                if version == self.ROW_VERSION:
                    return pf.read(columns=list(columns) if columns else None)
                # An older row version: its columns, the newer ones as nulls.
                have = set(pf.schema_arrow.names)
                want = list(columns) if columns else self.SCHEMA.names
                table = self.conform(pf.read(columns=[c for c in want if c in have]))
                return table.select(want)
            except Exception as e:  # unreadable Parquet
                problem = f"unreadable ({type(e).__name__}: {e})"
        self._quarantine(path, problem)
        return None

    def _quarantine(self, path: Path, why: str) -> None:
        dest = self.root / "quarantine" / self.QUARANTINE / path.parent.name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.move(str(path), dest)
        except FileNotFoundError:
            return
        self.quarantined.append(dest)
        warnings.warn(
            f"damaged shard {path.name} ({why}) moved to {dest}; its samples will be regenerated",
            DamagedShardWarning,
            stacklevel=3,
        )

    def iter_tables(self, model_fp: str, columns: Sequence[str] | None = None) -> Iterable[pa.Table]:
        for path in self.shards(model_fp):
            t = self._load_verified(path, columns)
            if t is not None and t.num_rows:
                yield t

    def read(self, model_fp: str, *, keys: set[str] | None = None,
             columns: Sequence[str] | None = None) -> pa.Table:
        """All verified rows of a partition (optionally only ``keys``), one row per key."""
        return self.read_from(self.shards(model_fp), keys=keys, columns=columns)

    def read_from(self, paths: Sequence[Path], *, keys: set[str] | None = None,
                  columns: Sequence[str] | None = None) -> pa.Table:
        """The verified rows of these shards (optionally only ``keys``), one row per key."""
        cols = list(columns) if columns else None
        if cols is not None and "key" not in cols:
            cols = ["key", *cols]
        parts = []
        for path in paths:
            t = self._load_verified(path, cols)
            if t is not None and t.num_rows:
                parts.append(t)
        schema = self.SCHEMA if cols is None else pa.schema([self.SCHEMA.field(c) for c in cols])
        if not parts:
            return schema.empty_table()
        table = pa.concat_tables(parts)
        if keys is not None:
            import pyarrow.compute as pc

            # One set lookup over all the shards: is_in rebuilds its hash
            # table on every call, so filtering shard by shard costs shards x keys.
            table = table.filter(pc.is_in(table["key"], value_set=pa.array(list(keys), pa.string())))
        return _dedupe_by_key(table)

    def key_locations(self, model_fp: str) -> dict[str, Path]:
        """Every stored key of a partition and the shard that holds it (one scan of the key column)."""
        where: dict[str, Path] = {}
        for path in self.shards(model_fp):
            t = self._load_verified(path, ["key"])
            if t is not None:
                for k in t.column("key").to_pylist():
                    where.setdefault(k, path)
        return where

    def existing_keys(self, model_fp: str) -> set[str]:
        keys: set[str] = set()
        for t in self.iter_tables(model_fp, ["key"]):
            keys.update(t.column("key").to_pylist())
        return keys

    # -- maintenance ---------------------------------------------------------
    def info(self) -> list[dict]:
        """One row per partition: shards, rows, bytes (for `tts-bench cache`)."""
        out = []
        for fp in self.partitions():
            shards = self.shards(fp)
            rows = 0
            meta = {}
            for p in shards:
                try:
                    md = pq.read_metadata(p)
                    rows += md.num_rows
                except Exception:
                    continue
            if shards and self.INFO_COLUMNS:
                try:
                    first = pq.read_table(shards[0], columns=list(self.INFO_COLUMNS))
                    if first.num_rows:
                        meta = {c: first.column(c)[0].as_py() for c in first.column_names}
                except Exception:
                    pass
            out.append({"model_fp": fp, "shards": len(shards), "rows": rows,
                        "bytes": sum(p.stat().st_size for p in shards), **meta})
        return out

    def compact(self, model_fp: str, *, max_rows: int = 200_000, min_shards: int = 16) -> int:
        """Merge small shards into larger ones; returns shards removed.

        Crash-safe: the merged shard is written (atomically) before the old
        ones are deleted, and reads dedupe by key in between.
        """
        small = []
        for p in self.shards(model_fp):
            try:
                if pq.read_metadata(p).num_rows < max_rows:
                    small.append(p)
            except Exception:  # unreadable footer: _load_verified quarantines it below
                small.append(p)
        if len(small) < min_shards:
            return 0
        tables = []
        used = []
        for p in small:
            t = self._load_verified(p, None)
            if t is not None:
                tables.append(t)
                used.append(p)
        if not tables:
            return 0
        merged = _dedupe_by_key(pa.concat_tables(tables))
        self.write_shard(model_fp, merged)
        for p in used:
            p.unlink(missing_ok=True)
        return len(used)


class GenerationStore(ShardStore):
    """Engine calls' samples (``schema.CallRecord``), one partition per model fingerprint."""

    SUBDIR = "generations"
    SCHEMA = ARROW_SCHEMA
    ROW_VERSION = ROW_VERSION
    INFO_COLUMNS = ("model_id", "engine", "dataset")


def _dedupe_by_key(table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    keys = table.column("key")
    if pc.count_distinct(keys).as_py() == table.num_rows:
        return table
    idx = pa.array(range(table.num_rows))
    first = (
        pa.table({"key": keys, "i": idx}).group_by("key", use_threads=False).aggregate([("i", "min")])
    )
    rows = first.column("i_min")
    return table.take(pc.take(rows, pc.sort_indices(rows)))
