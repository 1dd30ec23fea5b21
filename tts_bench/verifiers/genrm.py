"""Generative verification (Zhang et al. 2024; the sc-genrm recipe) through any engine.

The verifier model reads ``prompt`` (the question and the solution, ending
"Is the answer correct (Yes/No)?") and answers. A verification's score is
P(Yes): exp(logprob) of the first answer token when it is "Yes"; 1 - P(No)
when it is "No"; else 1 or 0 from the first yes/no word of the text; else
0.5 (no verdict; counted). V verifications per solution are averaged
(``reference/metrics.md`` section 13).

Verifications are calls of the cached call layer, so they are stored and
keyed like any generation: V = 4 after V = 2 draws only the two new ones,
and a rerun draws none.

    verifier = GenRMVerifier(cfg.verifier, CallLayer(engine, store, base_seed=cfg.verifier.seed, ...))
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from typing import Iterator, Sequence

from ..calls import Call
from ..engines.base import Message, SamplingParams
from .base import Score, ScoreRequest, VerifierIdentity, format_of


class GenRMVerifier:
    """P(Yes) verification over a :class:`~tts_bench.calls.CallLayer` (any engine)."""

    def __init__(self, vcfg, layer):
        self.cfg = vcfg
        self.name = vcfg.name
        self.kind = "genrm"
        self.layer = layer
        self.params = SamplingParams(temperature=float(vcfg.temperature), top_p=float(vcfg.top_p),
                                     max_tokens=int(vcfg.max_tokens), logprobs=True)
        self.yes_ids = self._single_tokens(vcfg.yes)
        self.no_ids = self._single_tokens(vcfg.no)
        self.sources: Counter = Counter()  # how each verification was read
        self._verdict = {w.lower(): 1.0 for w in vcfg.yes} | {w.lower(): 0.0 for w in vcfg.no}
        words = "|".join(re.escape(w) for w in self._verdict)
        self._word = re.compile(r"\b(" + words + r")\b", re.IGNORECASE)

    def _single_tokens(self, words: Sequence[str]) -> set[int]:
        """Ids of the one-token spellings of ``words`` (with and without a leading space, any case)."""
        if not self.layer.capabilities.token_ids:
            return set()
        ids: set[int] = set()
        for w in words:
            for form in {w, w.lower(), w.capitalize(), w.upper()}:
                for text in (form, " " + form):
                    toks = self.layer.tokenize(text)
                    if len(toks) == 1:
                        ids.add(toks[0])
        return ids

    def identity(self) -> VerifierIdentity:
        ident = self.layer.identity
        return VerifierIdentity(self.name, self.kind, ident.model_id, ident.weights_hash,
                                format_of(self.cfg))

    def messages(self, req: ScoreRequest) -> tuple[Message, ...]:
        text = self.cfg.prompt.replace("{question}", req.question).replace("{solution}", "".join(req.steps))
        sys = (Message("system", self.cfg.system_prompt),) if self.cfg.system_prompt else ()
        return sys + (Message("user", text),)

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[tuple[int, Score]]]:
        V = int(self.cfg.verifications)
        bs = max(1, int(self.cfg.batch_size))
        for lo in range(0, len(requests), bs):
            t = time.perf_counter()
            chunk = list(enumerate(requests[lo: lo + bs], start=lo))
            calls = [Call(r.problem_id, self.messages(r), self.params, indices=tuple(range(V)))
                     for _, r in chunk]
            results = self.layer.generate(calls)
            dt = (time.perf_counter() - t) / len(chunk)
            out = []
            for (i, _), res in zip(chunk, results):
                read = [self.p_yes(r) for r in res]
                self.sources.update(src for _, src in read)
                ps = [p for p, _ in read]
                out.append((i, Score(
                    step_scores=[sum(ps) / len(ps)],
                    input_tokens=sum(r.prompt_tokens for r in res),
                    output_tokens=sum(r.completion_tokens for r in res),
                    latency_s=dt, verifications=ps, verification_keys=[r.key for r in res],
                    source=Counter(src for _, src in read).most_common(1)[0][0])))
            yield out

    def p_yes(self, result) -> tuple[float, str]:
        """One verification's P(Yes) and how it was read."""
        ids, lps = result.token_ids, result.token_logprobs
        if ids and lps and len(ids) == len(lps):
            for tok, lp in zip(ids, lps):
                if tok in self.yes_ids:
                    return math.exp(lp), "logprob_yes"
                if tok in self.no_ids:
                    return 1.0 - math.exp(lp), "logprob_no"
        m = self._word.search(result.text or "")
        if m:
            return self._verdict[m.group(1).lower()], "text"
        return 0.5, "none"

    def close(self) -> None:
        pass
