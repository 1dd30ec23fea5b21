"""Verifiers run by the harness: reward models, generative verifiers, scores in the store.

    verifier, engine = make_verifier(cfg)           # from cfg.verifier (conf/verifier/*.yaml)
    layer = ScoreLayer(verifier, ScoreStore(cfg.store_dir), dataset=cfg.dataset.name)
    scores = layer.score([ScoreRequest(key, problem_id, question, steps)])
    aggregate(scores[0].step_scores, cfg.verifier.aggregate)

Kinds: ``prm`` / ``orm`` (transformers, ``reward_model.py``), ``http``
(vLLM's pooling API, ``http.py``), ``genrm`` (P(Yes) through any engine with
the cached call layer, ``genrm.py``). ``runner/scoring.py`` scores a run.
"""

from __future__ import annotations

import dataclasses

from ..config import ConfigError
from .base import (
    Score,
    ScoreRequest,
    Verifier,
    VerifierError,
    VerifierIdentity,
    aggregate,
    split_steps,
)
from .layer import ScoreLayer, ScoreStats

__all__ = [
    "Score",
    "ScoreLayer",
    "ScoreRequest",
    "ScoreStats",
    "Verifier",
    "VerifierError",
    "VerifierIdentity",
    "aggregate",
    "make_verifier",
    "steps_of",
    "verifier_model_config",
]


def steps_of(vcfg, text: str) -> tuple[str, ...]:
    """How a verifier kind cuts a solution: at the step delimiter (prm, http), or whole (orm, genrm)."""
    if vcfg.kind in ("orm", "genrm"):
        return (text,)
    return split_steps(text, vcfg.step_delimiter)


def verifier_model_config(cfg):
    """The model a genrm verifier runs: the run's own, or ``verifier.model_path``."""
    v = cfg.verifier
    if v.kind != "genrm" or not v.model_path:
        return cfg.model
    return dataclasses.replace(cfg.model, path=v.model_path, name=v.model_name or v.model_path,
                               revision=None, system_prompt=None)


def make_verifier(cfg, *, engine=None, progress=None):
    """The configured verifier and the engine it opened (None unless genrm opened one).

    ``engine``: an already loaded engine for the run's model, reused by a
    genrm verifier of that model instead of loading it twice.
    """
    v = cfg.verifier
    if v.kind == "none":
        raise ConfigError("no verifier configured: pass verifier=<name> (tts-bench list shows them)")
    if v.kind in ("prm", "orm"):
        from .reward_model import RewardModelVerifier

        return RewardModelVerifier(v), None
    if v.kind == "http":
        from .http import HTTPRewardVerifier

        return HTTPRewardVerifier(v), None
    if v.kind == "genrm":
        from ..calls import CallLayer
        from ..engines import make_engine
        from ..store import GenerationStore
        from .genrm import GenRMVerifier

        opened = None
        if engine is None or v.model_path:
            engine = opened = make_engine(cfg.engine, verifier_model_config(cfg))
        layer = CallLayer(engine, GenerationStore(cfg.store_dir), base_seed=int(v.seed),
                          dataset=cfg.dataset.name, batch_size=cfg.engine.batch_size, progress=progress)
        return GenRMVerifier(v, layer), opened
    raise ConfigError(f"unknown verifier.kind '{v.kind}'")
