"""The run directory: its paths, its files, and the one writer of its manifest.

    rd = RunDir(Path("results/runs/<name>"))
    rd.update({"timings": {...}})                  # locked read-modify-write
    rd.add_invocation({"generated": 12, ...})      # every invocation's counts kept
    rd.write_trajectories(rows, shard=(0, 1))
    df = rd.read_trajectories()

Files: ``manifest.json`` (config, model identity, versions, timings, totals,
and ``invocations``: one entry per `tts-bench run` with what it generated),
``config.yaml``, ``plan.parquet`` (the sample keys of a key-sharded strategy
such as parallel), ``problems.parquet`` (reference answers: for grading
only), ``trajectories/part-<i>-of-<n>.parquet`` (what each shard process's
strategy returned), and what grading, metrics and the report write.

Every manifest update holds an exclusive ``flock`` on ``manifest.lock``
around read, merge and atomic replace, so shard processes sharing a run
directory never lose each other's updates.
"""

from __future__ import annotations

import fcntl
import io
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..config import ConfigError
from ..store import atomic_write_bytes


@dataclass
class GenerationStats:
    """What one invocation generated (kept per invocation in the manifest)."""

    planned: int = 0  # samples the strategy asked the call layer for
    cached: int = 0  # of those, answered from the store
    generated: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0  # time spent inside the engine's generator
    shards_written: int = 0
    engine_calls: int = 0
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    """Atomically: another shard process may be reading the run directory."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


@dataclass
class Manifest:
    """What the stages after generation read from ``manifest.json``, typed.

    The file holds more (versions, timings, totals, analysis notes); those
    stay in ``extra``. Runs written before ``strategy`` was recorded read it
    from the config.
    """

    run_name: str
    config: dict  # the composed RunConfig as JSON
    strategy: str  # the strategy's registry name
    task_name: str
    extractor: str
    grader: str
    model_fingerprint: str  # the store partition
    store_dir: str
    model_shape: dict | None = None  # for FLOPs; None for fakes and imports
    invocations: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        known = {"run_name", "config", "strategy", "task", "model", "store_dir", "model_shape", "invocations"}
        return cls(
            run_name=data.get("run_name", ""),
            config=data["config"],
            strategy=data.get("strategy") or data["config"]["strategy"]["name"],
            task_name=data["task"]["name"],
            extractor=data["task"]["extractor"],
            grader=data["task"]["grader"],
            model_fingerprint=data["model"]["fingerprint"],
            store_dir=data["store_dir"],
            model_shape=data.get("model_shape"),
            invocations=list(data.get("invocations") or []),
            extra={k: v for k, v in data.items() if k not in known},
        )


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)

    # -- paths ---------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def trajectories_dir(self) -> Path:
        return self.path / "trajectories"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    # -- manifest ------------------------------------------------------------
    @contextmanager
    def _locked(self):
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "manifest.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read_manifest(self) -> dict:
        if not self.exists():
            raise ConfigError(
                f"{self.path} is not a run directory (no manifest.json); "
                f"runs live under results/runs/ — see `tts-bench cache`"
            )
        return json.loads(self.manifest_path.read_text())

    def manifest(self) -> Manifest:
        """The typed view of manifest.json (a clear error if this is not a run directory)."""
        return Manifest.from_json(self.read_manifest())

    def update(self, fields: dict) -> dict:
        """Merge top-level ``fields`` into the manifest under the lock; returns the new manifest."""
        with self._locked():
            data = json.loads(self.manifest_path.read_text()) if self.exists() else {}
            data.update(fields)
            atomic_write_bytes(self.manifest_path, json.dumps(data, indent=2, default=str).encode())
            return data

    def add_invocation(self, entry: dict) -> None:
        """Append one invocation's record (a rerun or top-up never overwrites an earlier one)."""
        with self._locked():
            data = json.loads(self.manifest_path.read_text()) if self.exists() else {}
            data.setdefault("invocations", []).append(
                {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **entry})
            atomic_write_bytes(self.manifest_path, json.dumps(data, indent=2, default=str).encode())

    # -- trajectories ----------------------------------------------------------
    def write_trajectories(self, rows: list[dict], shard: tuple[int, int]) -> Path:
        index, count = shard
        path = self.trajectories_dir / f"part-{index}-of-{count}.parquet"
        self.trajectories_dir.mkdir(parents=True, exist_ok=True)
        # The shared columns always (an empty part too), then a strategy's own (search scores, tree cost).
        extra = list(dict.fromkeys(k for r in rows for k in r if k not in TRAJECTORY_COLUMNS))
        write_parquet(path, pd.DataFrame(rows, columns=TRAJECTORY_COLUMNS + extra))
        # Parts of another shard count are an earlier split of the same run
        # (deterministic, so superseded once this split's parts exist): drop them
        # so they never merge into this one's tables.
        for old in self.trajectories_dir.glob("part-*-of-*.parquet"):
            if not old.name.endswith(f"-of-{count}.parquet"):
                old.unlink(missing_ok=True)
        return path

    def read_trajectories(self) -> pd.DataFrame | None:
        """Every shard's trajectories, one row per (problem, trajectory, level); None if none."""
        parts = sorted(self.trajectories_dir.glob("part-*.parquet")) if self.trajectories_dir.is_dir() else []
        frames = [pd.read_parquet(p) for p in parts]
        frames = [f for f in frames if len(f)]
        if not frames:
            return None
        df = pd.concat(frames, ignore_index=True)
        if "repeat" not in df.columns:
            df["repeat"] = 0
        df["repeat"] = df["repeat"].fillna(0).astype(int)
        df = df.drop_duplicates(["repeat", "problem_id", "trajectory", "level"], keep="last")
        return df.reset_index(drop=True)


TRAJECTORY_COLUMNS = [
    "repeat", "problem_id", "trajectory", "sample_index", "level", "main", "key", "call_keys", "text",
    "prompt_tokens", "read_tokens", "prefix_tokens", "completion_tokens", "thinking_tokens",
    "answer_tokens", "extension_tokens", "n_calls", "stop_reasons", "finish_reason",
    "mean_logprob", "seed", "latency_s",
]
