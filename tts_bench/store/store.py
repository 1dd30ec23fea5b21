"""On-disk generation store: append-only Parquet shards, written atomically.

Layout under the store root (``results/store`` by default)::

    generations/<model_fp>/part-<time>-<pid>-<rand>-<sha16>.parquet
    generations/<model_fp>/journal-<time>-<pid>-<rand>.log   one per writing process
    scores/<verifier_fp>/part-...parquet    verifier scores (``scores.py``)
    quarantine/...            damaged shards, moved aside (never deleted)

Each shard is written to a hidden temporary file, fsync'd, then renamed into
place, so a crash never leaves a partial file that looks complete. The first
16 hex digits of the shard's sha256 are in its name: a shard whose bytes no
longer match (truncated, bit-flipped, half-copied) is detected on read, moved
to quarantine/ with a warning, and its samples count as missing, so the next
run regenerates them. Rows are deduplicated by key on read, so two processes
that raced on one sample never double count it.

Writes go to a journal first: each process appends every group it is given
to its own journal file (one frame per group: length, crc32, an Arrow IPC
stream; written with one ``write`` call, so a kill -9 loses nothing written;
fsync'd at most once a second and at every roll, so a power cut loses at most
the last second). Every ``roll_rows`` records (and at ``close``) the journal
becomes one Parquet shard and is deleted, so a store holds about one file per
1,000 samples whatever the engine's group size. Readers read journals as if
they were shards (a torn last frame, from a kill mid-write, is dropped). A
writer holds an exclusive ``flock`` on its journal while it is open; a
journal nobody holds is a crashed writer's, and ``close`` and ``compact``
roll it into a shard (``recover``). Compaction only merges shards, never a
journal still held, and deletes a shard only after the merged one holding its
rows is in place, so it is safe while writers run.

    store = GenerationStore("results/store")
    keys = store.existing_keys(model_fp)
    store.write_shard(model_fp, records)          # list of dicts (schema.py), journaled
    table = store.read(model_fp, keys=wanted, columns=[...])
    store.close()                                 # roll journals into shards (also at exit)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import secrets
import shutil
import struct
import threading
import time
import warnings
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
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
    with atomic_write(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_write(path: Path):
    """A binary file that replaces ``path`` whole when the block ends (nothing, if it raises).

    For outputs too large to hold as bytes first (a 5M-sample Parquet file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


JOURNAL_MAGIC = b"TTSJRNL1"
_FRAME = struct.Struct("<II")  # payload length, crc32 of the payload


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def read_journal_frames(data: bytes) -> tuple[list[pa.Table], int]:
    """The tables of a journal's whole frames, and how many bytes they span.

    Parsing stops at the first frame that is short or fails its crc32: the
    torn tail a kill mid-write leaves (or damage, which it cannot tell apart).
    """
    if not data.startswith(JOURNAL_MAGIC):
        return [], 0
    pos, tables = len(JOURNAL_MAGIC), []
    while pos + _FRAME.size <= len(data):
        n, crc = _FRAME.unpack_from(data, pos)
        body = data[pos + _FRAME.size: pos + _FRAME.size + n]
        if len(body) < n or zlib.crc32(body) != crc:
            break
        tables.append(pa.ipc.open_stream(body).read_all())
        pos += _FRAME.size + n
    return tables, pos


class _Journal:
    """This process's open journal for one partition: an append-only file it holds a lock on."""

    def __init__(self, part: Path):
        part.mkdir(parents=True, exist_ok=True)
        self.stem = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}"
        self.path = part / f"journal-{self.stem}.log"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
        os.write(self.fd, JOURNAL_MAGIC)
        self.pid = os.getpid()  # a forked child inherits the object, never the journal
        self.rows = 0
        self.synced = time.monotonic()

    def append(self, table: pa.Table, fsync_s: float) -> None:
        body = _ipc_bytes(table)
        # One write call per frame: on kill -9 the kernel keeps what it accepted.
        os.write(self.fd, _FRAME.pack(len(body), zlib.crc32(body)) + body)
        self.rows += table.num_rows
        if time.monotonic() - self.synced >= fsync_s:
            os.fsync(self.fd)
            self.synced = time.monotonic()

    def close(self) -> None:
        os.close(self.fd)  # releases the lock


def _close_journals(cls: type, root: Path, journals: dict, lock: threading.Lock) -> None:
    """At exit, or when the store is collected: release this process's journals, then roll them."""
    with lock:
        fps = list(journals)
        for j in journals.values():
            try:
                j.close()
            except OSError:
                pass
        journals.clear()
    if fps:
        store = cls(root)
        for fp in fps:
            store.recover(fp)


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

    def __init__(self, root: str | os.PathLike, *, roll_rows: int = 1000, fsync_s: float = 1.0):
        """``roll_rows``: journaled records per Parquet shard; ``fsync_s``: most seconds between fsyncs."""
        if roll_rows < 1:
            raise ValueError(f"roll_rows must be at least 1 (got {roll_rows}): records per rolled shard")
        self.root = Path(root)
        self.roll_rows = int(roll_rows)
        self.fsync_s = float(fsync_s)
        self.quarantined: list[Path] = []
        self._journals: dict[str, _Journal] = {}
        self._lock = threading.Lock()
        # Journals are rolled at exit too (a kill -9 skips it: the next writer's close or
        # `cache --compact` rolls what a dead process left, see recover).
        self._finalizer = weakref.finalize(self, _close_journals, type(self), self.root, self._journals,
                                           self._lock)
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

    def journals(self, model_fp: str) -> list[Path]:
        part = self.partition(model_fp)
        return sorted(part.glob("journal-*.log")) if part.is_dir() else []

    def files(self, model_fp: str) -> list[Path]:
        """Journals, then shards: listed in this order, a journal rolled meanwhile is seen as its shard."""
        return self.journals(model_fp) + self.shards(model_fp)

    # -- writing -------------------------------------------------------------
    def write_shard(self, model_fp: str, records: Sequence[dict] | pa.Table) -> Path | None:
        """Persist records (dicts or a Table): appended to this process's journal, rolled into a
        shard every ``roll_rows`` records; returns the file they are in now (None if no records)."""
        table = self._table_of(records)
        if table.num_rows == 0:
            return None
        with self._lock:
            j = self._journals.get(model_fp)
            if j is not None and j.pid != os.getpid():  # forked: the parent's journal, not ours
                self._journals.pop(model_fp).close()
                j = None
            if j is None:
                j = self._journals[model_fp] = _Journal(self.partition(model_fp))
            j.append(table, self.fsync_s)
            if j.rows < self.roll_rows:
                return j.path
            return self._roll_own(model_fp)

    def write_parquet_shard(self, model_fp: str, records: Sequence[dict] | pa.Table) -> Path | None:
        """Persist records as one new Parquet shard now (bulk writes: imports, compaction)."""
        return self._write_parquet(model_fp, self._table_of(records))

    def _table_of(self, records: Sequence[dict] | pa.Table) -> pa.Table:
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
        return table

    def _write_parquet(self, model_fp: str, table: pa.Table, stem: str | None = None) -> Path | None:
        if table.num_rows == 0:
            return None
        buf = io.BytesIO()
        # Keys are sha256 hex, never repeated in a shard: a dictionary only slows the key scans.
        pq.write_table(table, buf, compression="zstd",
                       use_dictionary=[c for c in table.column_names if c != "key"])
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()[:16]
        stem = stem or f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}"
        path = self.partition(model_fp) / f"part-{stem}-{digest}.parquet"
        atomic_write_bytes(path, data)
        return path

    # -- journals ------------------------------------------------------------
    def _roll_own(self, model_fp: str) -> Path | None:
        """This process's journal of a partition into a shard (caller holds self._lock)."""
        j = self._journals.pop(model_fp, None)
        if j is None:
            return None
        if j.pid != os.getpid():  # forked: the parent still writes it
            j.close()
            return None
        try:
            path = self._roll_file(model_fp, j.path, j.stem)
        finally:
            j.close()
        return path

    def _roll_file(self, model_fp: str, path: Path, stem: str) -> Path | None:
        """Shard first (atomic, fsync'd), journal deleted after: a crash between leaves both, deduped."""
        tables, _ = read_journal_frames(path.read_bytes())
        tables = [self._conform_journal(t, path) for t in tables]
        tables = [t for t in tables if t is not None]
        shard = self._write_parquet(model_fp, _dedupe_by_key(pa.concat_tables(tables))
                                    if tables else self.SCHEMA.empty_table(), stem)
        path.unlink(missing_ok=True)
        return shard

    def recover(self, model_fp: str) -> int:
        """Roll every journal of the partition no process holds (a crashed writer's); returns how many."""
        rolled = 0
        for path in self.journals(model_fp):
            if any(j.path == path for j in self._journals.values()):
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive
                try:  # rolled and unlinked by another process while we waited?
                    if os.stat(path).st_ino != os.fstat(fd).st_ino:
                        continue
                except FileNotFoundError:
                    continue
                self._roll_file(model_fp, path, path.stem.removeprefix("journal-"))
                rolled += 1
            finally:
                os.close(fd)
        return rolled

    def close(self) -> None:
        """Roll this process's journals into shards, then any a crashed writer left."""
        with self._lock:
            fps = list(self._journals)
            for fp in fps:
                self._roll_own(fp)
        for fp in fps:
            self.recover(fp)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _conform_journal(self, table: pa.Table, path: Path) -> pa.Table | None:
        version = int((table.schema.metadata or {}).get(b"tts_bench.schema_version", b"0"))
        if version > self.ROW_VERSION or version < 1:
            warnings.warn(f"journal {path.name} has row version {version}; this tts-bench reads "
                          f"versions 1..{self.ROW_VERSION}, so it skips those records (left in place)",
                          DamagedShardWarning, stacklevel=4)
            return None
        return self.conform(table) if version < self.ROW_VERSION else table.cast(self.SCHEMA)

    def repair_note(self) -> str | None:
        """One line for the user when stored texts had lone surrogates replaced, else None."""
        if not self.repaired_rows:
            return None
        return (f"{self.repaired_rows} sample(s) held {self.repaired_chars} lone surrogate(s) (half of a "
                f"UTF-16 pair, which UTF-8 cannot store); each was stored as U+FFFD, the rest of the "
                f"text as sent")

    # -- reading -------------------------------------------------------------
    def _load_verified(self, path: Path, columns: Sequence[str] | None) -> pa.Table | None:
        """The shard's (or journal's) table, or None (and quarantined) if it is damaged."""
        if path.name.startswith("journal-"):
            return self._load_journal(path, columns)
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

    def _load_journal(self, path: Path, columns: Sequence[str] | None) -> pa.Table | None:
        """A journal's whole frames; if it was rolled meanwhile, the shard it became."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            stem = path.stem.removeprefix("journal-")
            rolled = sorted(path.parent.glob(f"part-{stem}-*.parquet"))
            return self._load_verified(rolled[0], columns) if rolled else None
        tables = [t for t in (self._conform_journal(t, path) for t in read_journal_frames(data)[0])
                  if t is not None]
        if not tables:
            return None
        table = pa.concat_tables(tables)
        return table.select(list(columns)) if columns else table

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

    def iter_files(self, paths: Sequence[Path], columns: Sequence[str] | None = None
                   ) -> Iterable[tuple[Path, pa.Table]]:
        """(file, verified table) of each of these shards and journals.

        A shard that vanished while we read (merged by a compaction) has its
        rows in a newer shard, as has a journal rolled and then merged: the
        folder is listed again and what is new read too.
        """
        seen = set(paths)
        todo = list(paths)
        for _ in range(4):
            vanished = set()
            for path in todo:
                t = self._load_verified(path, columns)
                if t is None and not path.exists():  # merged away (a journal: rolled, then merged)
                    vanished.add(path.parent)
                if t is not None and t.num_rows:
                    yield path, t
            if not vanished:
                return
            todo = [p for d in sorted(vanished) for p in sorted(d.glob("part-*.parquet")) if p not in seen]
            seen.update(todo)

    def iter_tables(self, model_fp: str, columns: Sequence[str] | None = None) -> Iterable[pa.Table]:
        for _, t in self.iter_files(self.files(model_fp), columns):
            yield t

    def read(self, model_fp: str, *, keys: set[str] | None = None,
             columns: Sequence[str] | None = None) -> pa.Table:
        """All verified rows of a partition (optionally only ``keys``), one row per key."""
        return self.read_from(self.files(model_fp), keys=keys, columns=columns)

    def read_from(self, paths: Sequence[Path], *, keys: set[str] | None = None,
                  columns: Sequence[str] | None = None) -> pa.Table:
        """The verified rows of these shards (optionally only ``keys``), one row per key."""
        _, table = self._listing(paths, columns)
        if not table.num_rows:
            return table
        if keys is None:
            return _dedupe_by_key(table)
        rows = _rows_of(table, pa.array(list(keys), pa.string()))
        return table.take(pa.array(np.unique(rows[rows >= 0])))  # store order, first of duplicates

    def _listing(self, paths: Sequence[Path], columns: Sequence[str] | None
                 ) -> tuple[list[tuple[Path, pa.Table]], pa.Table]:
        """Each verified file with its rows (``columns`` and the key), and all its rows as one table."""
        cols = list(columns) if columns else None
        if cols is not None and "key" not in cols:
            cols = ["key", *cols]
        listed = list(self.iter_files(paths, cols))
        schema = self.SCHEMA if cols is None else pa.schema([self.SCHEMA.field(c) for c in cols])
        return listed, pa.concat_tables([t for _, t in listed]) if listed else schema.empty_table()

    def read_aligned(self, model_fp: str, keys: pa.Array | pa.ChunkedArray,
                     columns: Sequence[str] | None = None) -> "Aligned":
        """The stored row of each of ``keys``, in their order, and where each was stored.

        For a run's plan of millions of keys: Arrow columns all the way, no
        Python set or string join (5M keys in seconds). Ask for the small
        columns only and fetch a large one (``text``) file by file later
        with :meth:`Aligned.column_by_file`, so it is never all in memory.
        """
        listed, table = self._listing(self.files(model_fp), columns)
        rows = _rows_of(table, keys)
        found = rows >= 0
        files = [(path, t.column("key")) for path, t in listed]
        if not (rows.size == table.num_rows and (rows == np.arange(rows.size)).all()):
            table = table.take(pa.array(rows[found]))  # else already in order: no copy
        return Aligned(self, model_fp, table, found, rows[found], files)

    def column_of(self, model_fp: str, path: Path, keys: pa.ChunkedArray | pa.Array,
                  column: str) -> pa.Array:
        """``column`` for the rows ``path`` held when it was listed with these ``keys``, in their order.

        A journal grows and is rolled into a shard, and a compaction merges
        shards, between a listing and a later read: the file's first rows are
        used when they are still those keys, else the keys are looked up in
        the whole partition (a key that is nowhere any more gives null).
        """
        import pyarrow.compute as pc

        if not isinstance(keys, pa.ChunkedArray):
            keys = pa.chunked_array([keys])
        t = self._load_verified(path, ["key", column]) if path.exists() else None
        n = len(keys)
        if t is not None and t.num_rows >= n and t.slice(0, n).column("key").equals(keys):
            return t.column(column).slice(0, n).combine_chunks()
        table = self.read(model_fp, keys=set(keys.to_pylist()), columns=[column])
        if not table.num_rows:
            return pa.nulls(n, self.SCHEMA.field(column).type)
        rows = _rows_of(table, keys)
        out = table.column(column).take(pa.array(np.where(rows >= 0, rows, 0)))
        return pc.if_else(pa.array(rows < 0), pa.scalar(None, out.type), out).combine_chunks()

    def key_locations(self, model_fp: str) -> dict[str, Path]:
        """Every stored key of a partition and the shard that holds it (one scan of the key column)."""
        where: dict[str, Path] = {}
        for path, t in self.iter_files(self.files(model_fp), ["key"]):
            # A key in two files (raced writers, a compaction under way) may point at either:
            # both hold the row.
            where.update(dict.fromkeys(t.column("key").to_pylist(), path))
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
            journals = self.journals(fp)
            rows = 0
            meta = {}
            for p in shards:
                try:
                    md = pq.read_metadata(p)
                    rows += md.num_rows
                except Exception:
                    continue
            for p in journals:
                t = self._load_journal(p, ["key"])
                rows += t.num_rows if t is not None else 0
            if shards and self.INFO_COLUMNS:
                try:
                    first = pq.read_table(shards[0], columns=list(self.INFO_COLUMNS))
                    if first.num_rows:
                        meta = {c: first.column(c)[0].as_py() for c in first.column_names}
                except Exception:
                    pass
            out.append({"model_fp": fp, "shards": len(shards), "journals": len(journals), "rows": rows,
                        "bytes": sum(_size(p) for p in shards + journals), **meta})
        return out

    def compact(self, model_fp: str, *, max_rows: int = 200_000, min_shards: int = 16) -> int:
        """Roll crashed writers' journals, then merge small shards into larger ones; returns shards removed.

        Crash-safe and safe beside running writers: journals a live process
        holds are left alone, shards are immutable, the merged shard is written
        (atomically) before the old ones are deleted, and reads dedupe by key
        in between (and list again when a shard vanishes under them).
        """
        self.recover(model_fp)
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
        self._write_parquet(model_fp, merged)
        for p in used:
            p.unlink(missing_ok=True)
        return len(used)


class GenerationStore(ShardStore):
    """Engine calls' samples (``schema.CallRecord``), one partition per model fingerprint."""

    SUBDIR = "generations"
    SCHEMA = ARROW_SCHEMA
    ROW_VERSION = ROW_VERSION
    INFO_COLUMNS = ("model_id", "engine", "dataset")


@dataclass
class Aligned:
    """Stored rows aligned with a list of keys (:meth:`ShardStore.read_aligned`).

    ``table``: the found keys' rows in key order (None once dropped,
    :meth:`locations`); ``found``: a mask over the keys; ``rows``: each found
    key's row in the listing (files in order,
    rows in file order); ``files``: each file listed and the keys it held.
    """

    store: ShardStore
    model_fp: str
    table: pa.Table | None
    found: np.ndarray
    rows: np.ndarray
    files: list[tuple[Path, pa.ChunkedArray]]

    def permuted(self, perm: np.ndarray) -> "Aligned":
        """The same rows reordered: row i of the new is row ``perm[i]`` of this."""
        table = None if self.table is None else self.table.take(pa.array(perm))
        return Aligned(self.store, self.model_fp, table, self.found, self.rows[perm], self.files)

    def locations(self) -> "Aligned":
        """Only where the rows are stored (``table`` dropped, its memory freed once unreferenced)."""
        return Aligned(self.store, self.model_fp, None, self.found, self.rows, self.files)

    def by_file(self) -> Iterable[tuple[Path, pa.ChunkedArray, np.ndarray, np.ndarray]]:
        """Per listed file holding a found key: (path, its keys, positions among the rows, rows in it)."""
        order = np.argsort(self.rows, kind="stable")
        starts = np.cumsum([0] + [len(k) for _, k in self.files])
        cuts = np.searchsorted(self.rows[order], starts)
        for i, (path, keys) in enumerate(self.files):
            pos = order[cuts[i]:cuts[i + 1]]
            if pos.size:
                yield path, keys, pos, self.rows[pos] - starts[i]

    def column_by_file(self, column: str) -> Iterable[tuple[np.ndarray, pa.Array]]:
        """(positions among the rows, the column's values there) one listed file at a time."""
        for path, keys, pos, local in self.by_file():
            yield pos, self.store.column_of(self.model_fp, path, keys, column).take(pa.array(local))


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:  # rolled or merged meanwhile
        return 0


def _rows_of(table: pa.Table, keys) -> np.ndarray:
    """int64 row of ``table`` holding each of ``keys`` (the first such row), -1 where none does."""
    import pyarrow.compute as pc

    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    have = table.column("key").combine_chunks()
    if not len(have):
        return np.full(len(keys), -1, dtype=np.int64)
    # One hash table over the whole partition (index_in gives the first match):
    # lookups shard by shard would rebuild it shards x keys times.
    idx = pc.index_in(keys, value_set=have)
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


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
