"""Parallel-sequence decoding for the llamacpp engine: many samples, one ``llama_decode`` per step.

    decoder = BatchDecoder(model, ctx, parallel=16, kv_cells=32768, n_batch=512)
    for finished in decoder.run(samples):   # lists of _Sample, as they end
        ...

Every step builds one ``llama_batch``: the next token of each sequence in
flight (one ``seq_id`` per sample), then prompt tokens of samples being
admitted into free slots. A request's samples admitted together share one
evaluation of the prompt (each prompt token carries all their seq ids); a
sample admitted while a sibling with the same prompt is still in flight gets
the sibling's prompt cells by ``llama_memory_seq_cp`` and evaluates only the
last prompt token. Slots are refilled as samples finish (continuous batching),
so the batch stays full until the queue runs dry.

Sampling happens here, per sequence, through a llama.cpp sampler chain of its
own (top_k, top_p, min_p, temperature, then ``dist`` seeded with the sample's
seed; greedy at temperature 0) -- the chain ``Llama.create_completion`` builds,
minus its neutral stages -- so each sample draws from its own RNG stream.

Reproducibility: the schedule (which sequences share a step, where their
cells sit) is a function of the requests, their order and the settings
alone, so the same requests with the same engine settings give the same
tokens, run after run. Two things make tokens depend on the batch, and so
differ from the single-sequence engine this replaced: llama.cpp on CPU
computes a one-token batch (or a batch with one output row) with other
kernels than a larger one, and logits differ by up to ~1 on SmolLM2-135M
Q4_1 -- measured; with two rows or more, a sequence's logits were the same
bits at 2 to 32 sequences per step, any slot, thread count or hole in the
cache, so every step is kept at two rows (``_two_outputs``) -- and attention
sums over a sequence's cells in cache order, which differs from position
order once freed cells are reused, changing logits by a similar amount.
A seeded draw near a boundary then picks another token, and the sample
diverges from there. Same seed and same logits always give the same token.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .base import STOP_EOS, STOP_LENGTH, STOP_STRING, STOP_TOKEN, GenerationRequest, match_stop_string


@dataclass(eq=False)
class _Sample:
    """One sample in the queue or in flight; ``ids`` is prompt + prefix."""

    req: GenerationRequest
    ids: list[int]
    index: int
    seed: int
    max_tokens: int
    held: list[int]  # token ids held back while fewer than min_tokens are out
    seq: int = -1
    chain: object = None
    out: list[int] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)  # detokenized continuation so far
    logprobs: list[float] | None = None
    next_token: int = -1  # sampled, fed at the next step
    prefilled: bool = False  # its prompt cells are all in the KV cache
    t0: float = 0.0
    stop_reason: str = STOP_LENGTH
    stop_string: str | None = None
    text: str = ""
    latency_s: float = 0.0

    @property
    def reserve(self) -> int:
        """KV cells this sample may come to hold (its shared prompt counted as its own)."""
        return len(self.ids) + self.max_tokens


@dataclass(eq=False)
class _Prefill:
    """Prompt tokens of a group of samples admitted together, fed over one or more steps."""

    members: list[_Sample]
    tokens: list[int]
    pos0: int  # position of tokens[0]
    done: int = 0


class BatchDecoder:
    """Decodes samples as parallel sequences of one llama.cpp context."""

    def __init__(self, llama_cpp, model, ctx, *, parallel: int, kv_cells: int, n_batch: int):
        self._lc = llama_cpp
        self._model = model
        self._ctx = ctx
        self._mem = llama_cpp.llama_get_memory(ctx)
        self._vocab = model.vocab
        self._n_vocab = model.n_vocab()
        self.parallel = parallel
        self.kv_cells = kv_cells
        self.n_batch = n_batch
        self._scratch = parallel  # the seq id of the padding token
        self._park = parallel + 1  # holds a finished sample's prompt cells for its queued siblings
        # (the context holds parallel + 2 sequences)
        self._batch = llama_cpp.llama_batch_init(n_batch + 1, 0, parallel)
        self._pieces: dict[int, bytes] = {}
        # Counters over the decoder's life, for benchmarks and tests.
        self.steps = 0  # llama_decode calls
        self.prompt_tokens = 0  # prompt tokens evaluated (a shared prompt counts once)
        self.max_live = 0  # most sequences in flight at once

    def close(self) -> None:
        if self._batch is not None:
            self._lc.llama_batch_free(self._batch)
            self._batch = None

    # -- the loop ------------------------------------------------------------
    def run(self, samples: list[_Sample]) -> Iterator[list[_Sample]]:
        """Decode every sample; yield the ones that finished at each step."""
        lc = self._lc
        queue = deque(samples)
        free = list(range(self.parallel - 1, -1, -1))  # pop() hands out the lowest seq id
        live: list[_Sample] = []
        prefills: list[_Prefill] = []
        reserved = 0
        self._parked: list[int] | None = None
        lc.llama_memory_clear(self._mem, True)
        try:
            done = [s for s in samples if s.max_tokens <= 0]
            if done:
                for s in done:
                    queue.remove(s)
                yield done
            while queue or live:
                b = self._batch
                b.n_tokens = 0
                if self._parked is not None and (
                        not queue or queue[0].ids != self._parked
                        or (not live and reserved + queue[0].reserve > self.kv_cells)):
                    reserved -= self._unpark()
                rows: list[tuple[int, list[_Sample]]] = []
                for s in live:
                    if s.prefilled:
                        rows.append((self._add(s.next_token, len(s.ids) + len(s.out) - 1, (s.seq,)), [s]))
                # Continue prompts started in earlier steps, then admit new samples.
                for p in prefills:
                    self._feed(p, rows)
                while queue and free and b.n_tokens < self.n_batch:
                    group = self._admit(queue, free, live, reserved)
                    if not group:
                        break
                    reserved += sum(s.reserve for s in group)
                    live.extend(group)
                    p = self._start(group, live)
                    prefills.append(p)
                    self._feed(p, rows)
                prefills = [p for p in prefills if p.done < len(p.tokens)]
                self.max_live = max(self.max_live, len(live))
                padded = self._two_outputs(len(rows))
                rc = lc.llama_decode(self._ctx, b)
                if padded:
                    lc.llama_memory_seq_rm(self._mem, self._scratch, -1, -1)
                self.steps += 1
                if rc != 0:
                    raise RuntimeError(
                        f"llama_decode returned {rc} with {len(live)} sequences in flight and "
                        f"{reserved} of {self.kv_cells} KV cells reserved; lower engine.parallel_sequences")
                finished = self._sample(rows)
                if finished:
                    gone = set(map(id, finished))
                    live = [s for s in live if id(s) not in gone]
                    for s in finished:
                        reserved += self._park_for_siblings(s, queue, live)
                        lc.llama_memory_seq_rm(self._mem, s.seq, -1, -1)
                        free.append(s.seq)
                        reserved -= s.reserve
                        lc.llama_sampler_free(s.chain)
                        s.chain = None
                    free.sort(reverse=True)
                    yield finished
        finally:
            for s in live:
                if s.chain is not None:
                    lc.llama_sampler_free(s.chain)
                    s.chain = None
            lc.llama_memory_clear(self._mem, True)

    # -- admission -----------------------------------------------------------
    def _admit(self, queue: deque, free: list[int], live: list[_Sample], reserved: int) -> list[_Sample]:
        """The head of the queue and its queued siblings that fit now (empty: none fits)."""
        group: list[_Sample] = []
        head = queue[0]
        while queue and free and queue[0].req is head.req:
            s = queue[0]
            if reserved + s.reserve > self.kv_cells:
                break
            queue.popleft()
            reserved += s.reserve
            s.seq = free.pop()
            s.chain = self._chain(s)
            s.t0 = time.perf_counter()
            group.append(s)
        return group

    def _start(self, group: list[_Sample], live: list[_Sample]) -> _Prefill:
        """Prompt tokens the group still needs: all of them, or its last one after a cell copy."""
        ids = group[0].ids
        n = len(ids)
        holder = next((s.seq for s in live if s.prefilled and s.ids == ids), None)
        if holder is None and self._parked == ids:
            holder = self._park
        if holder is not None and n > 1:
            for s in group:
                self._lc.llama_memory_seq_cp(self._mem, holder, s.seq, 0, n - 1)
            return _Prefill(group, ids[n - 1:], n - 1)
        return _Prefill(group, ids, 0)

    def _park_for_siblings(self, s: _Sample, queue: deque, live: list[_Sample]) -> int:
        """Keep a finishing sample's prompt cells if its next sibling would find none; cells taken."""
        if not queue or queue[0].ids != s.ids or self._parked == s.ids or len(s.ids) < 2:
            return 0
        if any(x.prefilled and x.ids == s.ids for x in live):
            return 0
        freed = self._unpark()
        self._lc.llama_memory_seq_cp(self._mem, s.seq, self._park, 0, len(s.ids) - 1)
        self._parked = s.ids
        return len(s.ids) - 1 - freed

    def _unpark(self) -> int:
        """Drop the parked prompt; the cells it held."""
        if self._parked is None:
            return 0
        self._lc.llama_memory_seq_rm(self._mem, self._park, -1, -1)
        n, self._parked = len(self._parked) - 1, None
        return n

    def _feed(self, p: _Prefill, rows: list) -> None:
        """As many of the group's prompt tokens as the batch has room for; logits on the last."""
        b = self._batch
        seqs = tuple(s.seq for s in p.members)
        while p.done < len(p.tokens) and b.n_tokens < self.n_batch:
            i = self._add(p.tokens[p.done], p.pos0 + p.done, seqs, logits=p.done == len(p.tokens) - 1)
            p.done += 1
            self.prompt_tokens += 1
            if p.done == len(p.tokens):
                rows.append((i, p.members))

    def _two_outputs(self, outputs: int) -> bool:
        """Make the step compute at least two output rows; True if a padding token was added.

        llama.cpp computes one row (a one-token batch, or the last layer and
        the logits of a batch with one output) with other kernels than
        several rows: logits differ by up to ~1 on this model. With two rows
        or more, a sequence's logits are the same bits whatever else is in the
        batch, so every step is kept on that arithmetic.
        """
        b = self._batch
        if outputs >= 2:
            return False
        for i in range(b.n_tokens):
            if not b.logits[i]:
                b.logits[i] = True  # an extra row that nobody reads
                return False
        self._add(0, 0, (self._scratch,), logits=True)
        return True

    def _add(self, token: int, pos: int, seqs: tuple[int, ...], logits: bool = True) -> int:
        b = self._batch
        i = b.n_tokens
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = len(seqs)
        for j, s in enumerate(seqs):
            b.seq_id[i][j] = s
        b.logits[i] = logits
        b.n_tokens = i + 1
        return i

    # -- sampling ------------------------------------------------------------
    def _chain(self, s: _Sample):
        """The sample's own sampler chain; every setting explicit, its seed its own RNG."""
        lc = self._lc
        p = s.req.params
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if p.temperature == 0.0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
            return chain
        # The stage order create_completion uses: truncation on the untempered
        # distribution, then temperature, then the seeded draw.
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_k(p.top_k if p.top_k > 0 else 0))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(p.top_p, 1))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_min_p(p.min_p, 1))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(p.temperature))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(s.seed))
        return chain

    def _sample(self, rows: list[tuple[int, list[_Sample]]]) -> list[_Sample]:
        lc = self._lc
        finished: list[_Sample] = []
        for i, members in rows:
            first = members[0]
            p = first.req.params
            logits = None
            lse = 0.0
            if p.logprobs or (p.min_tokens and len(first.out) < p.min_tokens):
                logits = np.ctypeslib.as_array(lc.llama_get_logits_ith(self._ctx, i), shape=(self._n_vocab,))
            if p.logprobs:
                m = float(logits.max())
                lse = m + math.log(float(np.exp(logits.astype(np.float64) - m).sum()))
            if p.min_tokens and len(first.out) < p.min_tokens:
                # Members of a row share the row and its count of tokens out.
                logits[first.held] = -np.inf
            for s in members:
                s.prefilled = True
                tok = lc.llama_sampler_sample(s.chain, self._ctx, i)
                lp = float(logits[tok]) - lse if p.logprobs else None
                if self._step(s, tok, lp):
                    finished.append(s)
        return finished

    def _step(self, s: _Sample, tok: int, lp: float | None) -> bool:
        """Take one sampled token; True when the sample is finished."""
        p = s.req.params
        if not p.ignore_eos and self._lc.llama_vocab_is_eog(self._vocab, tok):
            return self._finish(s, STOP_EOS)
        if tok in p.stop_token_ids:
            return self._finish(s, STOP_TOKEN, str(tok))
        s.out.append(tok)
        if lp is not None and math.isfinite(lp):
            s.logprobs.append(lp)
        s.raw += self._piece(tok)
        if p.stop:
            cut, which = match_stop_string(s.raw.decode("utf-8", "ignore"), p.stop)
            if which is not None:
                s.text = cut + (which if p.include_stop_str_in_output else "")
                return self._finish(s, STOP_STRING, which)
        if len(s.out) >= s.max_tokens:
            return self._finish(s, STOP_LENGTH)
        s.next_token = tok
        return False

    def _piece(self, tok: int) -> bytes:
        """The token's text as llama.cpp's detokenizer writes it (no special tokens)."""
        piece = self._pieces.get(tok)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = self._lc.llama_token_to_piece(self._vocab, tok, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lc.llama_token_to_piece(self._vocab, tok, buf, len(buf), 0, False)
            piece = self._pieces[tok] = buf.raw[:n]
        return piece

    def _finish(self, s: _Sample, reason: str, which: str | None = None) -> bool:
        s.stop_reason, s.stop_string = reason, which
        if reason != STOP_STRING:
            s.text = s.raw.decode("utf-8", "ignore")
        s.latency_s = time.perf_counter() - s.t0
        return True
