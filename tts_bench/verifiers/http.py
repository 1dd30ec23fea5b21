"""A reward model behind an HTTP endpoint: vLLM's pooling API (``kind: http``).

``vllm serve <prm> --task reward`` answers ``POST /pooling`` with, for each
input, a list of output rows: for a process reward model with step pooling
(vLLM's default for Qwen2.5-Math-PRM) one row per step tag, each the
classes' probabilities. The request is built from the same format fields as
a local reward model (``formats.py``): the chat messages (``input:
messages``; the server applies the model's chat template) or the plain
text (``input: text``, template=plain). The readout is applied to each row
as it comes (``raw`` with ``positive_index: 1`` reads P(+) from rows the
server has already normalised).

    verifier = HTTPRewardVerifier(cfg.verifier)
"""

from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

from ..config import ConfigError
from .base import Score, ScoreRequest, VerifierError, VerifierIdentity, format_of
from .formats import chat_messages, joined_solution, readout, render_text, turn_messages


class HTTPRewardVerifier:
    def __init__(self, vcfg):
        import httpx

        if vcfg.input not in ("messages", "text"):
            raise ConfigError(f"unknown verifier.input '{vcfg.input}'. Valid choices: messages, text")
        if vcfg.input == "text" and vcfg.template != "plain":
            raise ConfigError("verifier.input=text sends the text rendered here: it needs template=plain "
                              "(or input=messages, and the server applies the chat template)")
        self.cfg = vcfg
        self.name = vcfg.name
        self.kind = "http"
        self.url = vcfg.base_url.rstrip("/") + "/" + vcfg.endpoint.lstrip("/")
        key = os.environ.get(vcfg.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(timeout=vcfg.timeout_s, headers=headers, trust_env=False)

    def identity(self) -> VerifierIdentity:
        return VerifierIdentity(self.name, self.kind, self.cfg.served_model, self.cfg.revision or "served",
                                format_of(self.cfg))

    def body(self, req: ScoreRequest) -> dict:
        cfg = self.cfg
        if cfg.input == "text":
            text, _ = render_text(cfg, None, req.question, req.steps)
            return {"model": cfg.served_model, "input": text}
        if cfg.template == "turns":
            msgs = turn_messages(cfg, req.question, req.steps)
        else:
            msgs = chat_messages(cfg, req.question, joined_solution(cfg, req.steps)[0])
        return {"model": cfg.served_model, "messages": msgs}

    def _post(self, body: dict) -> dict:
        import httpx

        delay = 1.0
        for attempt in range(self.cfg.max_retries + 1):
            try:
                r = self._client.post(self.url, json=body)
            except httpx.TransportError as e:
                if attempt == self.cfg.max_retries:
                    raise VerifierError(f"reward model server {self.url} unreachable ({type(e).__name__}); "
                                        f"start it or fix verifier.base_url") from None
            else:
                if r.status_code == 200:
                    return r.json()
                if r.status_code < 500 and r.status_code != 429:
                    raise VerifierError(f"reward model server {self.url} answered {r.status_code}: "
                                        f"{r.text[:200]}")
                if attempt == self.cfg.max_retries:
                    raise VerifierError(f"reward model server {self.url} answered {r.status_code} "
                                        f"{self.cfg.max_retries + 1} times")
            time.sleep(delay * (1 + random.random()))
            delay *= 2
        raise AssertionError("unreachable")

    def _score_one(self, req: ScoreRequest) -> Score:
        t = time.perf_counter()
        reply = self._post(self.body(req))
        try:
            rows = reply["data"][0]["data"]
        except (KeyError, IndexError, TypeError):
            raise VerifierError(f"reward model server {self.url}: no data[0].data in its reply "
                                f"(is it a pooling endpoint?)") from None
        if rows and not isinstance(rows[0], list):
            rows = [rows]
        if self.cfg.score_at == "last":
            rows = rows[-1:]
        elif len(rows) != len(req.steps):
            raise VerifierError(f"reward model server returned {len(rows)} rows for {len(req.steps)} steps; "
                                f"serve the PRM with step pooling (one row per step tag)")
        tokens = int((reply.get("usage") or {}).get("prompt_tokens") or 0)
        return Score(step_scores=[readout(self.cfg, row) for row in rows], input_tokens=tokens,
                     latency_s=time.perf_counter() - t)

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[tuple[int, Score]]]:
        bs = self.cfg.batch_size
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            for lo in range(0, len(requests), bs):
                chunk = list(range(lo, min(lo + bs, len(requests))))
                yield list(zip(chunk, pool.map(lambda i: self._score_one(requests[i]), chunk)))

    def close(self) -> None:
        self._client.close()
