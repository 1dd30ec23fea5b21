"""Score a run's stored samples with a verifier: the stage between generation and grading.

    result = score_run(run_dir, cfg)       # cfg.verifier says which verifier
    # -> <run>/scores.parquet: key, verifier_score, step_scores, verifier tokens

Every score goes through the score layer (``verifiers/layer.py``): computed
once per (verifier, sample, step boundaries), stored as it is made, read back
by every later run. ``tts-bench score RUN verifier=...`` calls this without
generating; ``tts-bench run ... verifier=...`` calls it after generating.
The run's manifest records the verifier (identity, aggregate, model shape)
so cost tables can charge its tokens with its own model's FLOPs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import RunConfig
from ..dataset import load_problems
from ..store import GenerationStore, ScoreStore
from ..verifiers import ScoreLayer, ScoreRequest, ScoreStats, aggregate, make_verifier, steps_of
from .rundir import RunDir, write_parquet

SCORES_FILE = "scores.parquet"


@dataclass
class ScoringResult:
    stats: ScoreStats
    verifier: dict
    seconds: float = 0.0
    missing: int = 0  # samples of the run not in the store yet (not scored)
    sources: dict = field(default_factory=dict)  # genrm: how verifications were read
    verifier_calls: int = 0  # model calls made now: forward passes, requests, or generated verifications


def score_run(run_dir: Path, cfg: RunConfig, *, engine=None, progress: bool = False,
              console=None) -> ScoringResult:
    """Score every stored sample of the run with ``cfg.verifier``; write ``scores.parquet``."""
    from .pipeline import _Progress, collect_samples

    t0 = time.perf_counter()
    rd = RunDir(run_dir)
    manifest = rd.manifest()
    samples, missing = collect_samples(run_dir, GenerationStore(manifest.store_dir),
                                       manifest.model_fingerprint)
    questions = {p.id: _question(p.messages) for p in load_problems(cfg.dataset, cfg.model.system_prompt)}
    v = cfg.verifier
    rows = samples.drop_duplicates("key")
    # A trajectory of several calls is scored as its last call (whose key covers the whole
    # prefix): the key a search used for the same solution, so nothing is scored twice.
    scored_as = [ck[-1] if isinstance(ck, (list, tuple, np.ndarray)) and len(ck) else k for k, ck in
                 zip(rows["key"], rows["call_keys"] if "call_keys" in rows else [None] * len(rows))]
    requests = [ScoreRequest(sk, pid, questions.get(pid, ""), steps_of(v, text or ""))
                for sk, pid, text in zip(scored_as, rows["problem_id"], rows["text"])]
    bar = _Progress(enabled=progress)
    verifier, opened = make_verifier(cfg, engine=engine, progress=bar)
    try:
        layer = ScoreLayer(verifier, ScoreStore(manifest.store_dir), dataset=cfg.dataset.name, progress=bar)
        if console is not None:
            console.print(f"verifier {v.name} ({v.kind}): {len(requests)} samples, "
                          f"{layer.held(requests)} already scored")
        with bar:
            scores = layer.score(requests)
        ident = layer.identity
        calls = int(getattr(verifier, "calls", layer.stats.scored))
    finally:
        verifier.close()
        if opened is not None:
            opened.close()
    out = pd.DataFrame({
        "key": rows["key"].tolist(),
        "verifier_score": [aggregate(s.step_scores, v.aggregate) for s in scores],
        "step_scores": [list(s.step_scores) for s in scores],
        "verifier_input_tokens": [s.input_tokens for s in scores],
        "verifier_output_tokens": [s.output_tokens for s in scores],
        "verifications": [s.verifications for s in scores],
    })
    write_parquet(Path(run_dir) / SCORES_FILE, out)
    info = {"name": v.name, "kind": v.kind, "aggregate": v.aggregate, "fingerprint": ident.fingerprint,
            "model_id": ident.model_id, "weights_hash": ident.weights_hash,
            "config": dataclasses.asdict(v), "model_shape": _verifier_shape(cfg, ident.model_id)}
    result = ScoringResult(layer.stats, info, time.perf_counter() - t0, missing,
                           dict(getattr(verifier, "sources", {}) or {}), calls)
    rd.update({"verifier": info, "scoring": dataclasses.asdict(result.stats) | {
        "seconds": result.seconds, "samples": len(requests), "sources": result.sources,
        "verifier_calls": calls}})
    return result


def _question(messages) -> str:
    """The problem statement a verifier is shown: the last user message the policy saw."""
    users = [m.content for m in messages if m.role == "user"]
    return users[-1] if users else ""


def _verifier_shape(cfg: RunConfig, model_id: str) -> dict | None:
    """The verifier model's shape, for its FLOPs (None when its files are not here)."""
    from ..config import ConfigError
    from ..models import ModelShapeError, shape_for_model

    if cfg.verifier.kind == "http" or cfg.engine.name == "scripted":
        return None
    path = cfg.verifier.path if cfg.verifier.kind in ("prm", "orm") else (
        cfg.verifier.model_path or cfg.model.path)
    try:
        return dataclasses.asdict(shape_for_model(path, getattr(cfg.verifier, "revision", None)))
    except (ModelShapeError, ConfigError, OSError):
        return None
