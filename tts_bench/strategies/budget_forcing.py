"""``budget-forcing`` (s1, Muennighoff et al. 2025): thinking capped at each budget of a grid.

At b thinking tokens the thinking stops, the end-of-thinking delimiter and
the answer cue are appended, and the model answers. Where the model ends
its thinking early and extensions remain, the end is dropped and
``extend_with`` ("Wait") appended, and the thinking goes on.

**One generation serves the grid.** A run capped at b is distributed as the
first b tokens of an uncapped one, so per sample the thinking is generated
once, in segments that end exactly at each budget of the grid (the segment
to budget b_k is one call with ``max_tokens = b_k - tokens so far``,
continuing the thinking as token ids, never re-tokenised text). Each budget
then costs one short forced-answer call. Raising the largest budget later
adds one segment that continues the stored thinking; budgets a trace never
reaches (it ended on its own) share one answer call, since their prefixes
are the same.

End of thinking is a token, never a stop string: ``think_close`` (e.g.
``</think>``, which must be one token of the vocabulary) is passed as a stop
token id; without it the model's EOS ends the thinking (models without
thinking tags: the response before the answer cue is the thinking). A Wait
that does not fit in the current segment is appended at the start of the
next one where it fits there (the snapshot at this budget keeps the early
end), so thinking never exceeds a budget.

    tts-bench run strategy=budget-forcing strategy.budgets=[512,1024,2048] model=...
    tts-bench run strategy=budget-forcing-short          # the embedded model, CPU
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..calls import Call, CallLayer, Result
from ..config import ConfigError
from ..engines.base import STOP_EOS, STOP_TOKEN
from .base import Strategy, StrategyProblem, Trajectory, strategy


@dataclass
class _Trace:
    """The thinking of one sample so far."""

    problem: StrategyProblem
    index: int
    ids: list[int] = field(default_factory=list)
    text: str = ""
    calls: list[Result] = field(default_factory=list)
    extensions: int = 0
    extension_tokens: int = 0
    ended: bool = False  # ended on its own with no extension left
    pending_wait: bool = False  # ended early at a budget edge: Wait opens the next segment

    def snapshot(self) -> tuple[tuple[int, ...], str, list[Result], int]:
        return tuple(self.ids), self.text, list(self.calls), self.extension_tokens


@strategy("budget-forcing", needs=("prefix", "token_ids"),
          summary="s1: thinking capped/extended per budget; one generation for the grid")
class BudgetForcing(Strategy):
    def describe(self, problems, layer) -> str:
        return (f"budget-forcing: {len(problems)} problems x n={self.cfg.budget.n} at thinking budgets "
                f"{list(self.s.budgets)} (one thinking generation to {max(self.s.budgets)} tokens "
                f"per sample, plus one answer call per budget)")

    def run(self, problems: Sequence[StrategyProblem], layer: CallLayer) -> list[Trajectory]:
        s = self.s
        budgets = list(s.budgets)
        open_ids = list(layer.tokenize(s.think_open)) if s.think_open else []
        wait_ids = list(layer.tokenize(s.extend_with)) if s.extend_with else []
        close_ids: list[int] = []
        stop_ids: tuple[int, ...] = ()
        if s.think_close:
            close_ids = list(layer.tokenize(s.think_close))
            if len(close_ids) != 1:
                raise ConfigError(
                    f"strategy.think_close '{s.think_close}' is {len(close_ids)} tokens for this model; "
                    f"it must be one token (its end-of-thinking token), or null to end thinking at EOS"
                )
            stop_ids = (close_ids[0],)
        cue_ids = list(layer.tokenize(s.answer_cue)) if s.answer_cue else []
        traces = [_Trace(p, j) for p in problems for j in range(self.cfg.budget.n)]
        snapshots: dict[int, list[tuple]] = {b: [] for b in budgets}
        step = 0
        for b in budgets:
            for t in traces:
                # A Wait postponed at the last budget's edge opens this segment, if it fits.
                if t.pending_wait and not t.ended and b - len(t.ids) > len(wait_ids):
                    self._extend(t, wait_ids, s.extend_with)
            while True:
                live = [t for t in traces if not t.ended and not t.pending_wait and len(t.ids) < b]
                if not live:
                    break
                step += 1
                params = [self.params(max_tokens=b - len(t.ids), stop=(), stop_token_ids=stop_ids)
                          for t in live]
                calls = [Call(t.problem.id, t.problem.messages, p, indices=(t.index,),
                              prefix=s.think_open + t.text, prefix_ids=tuple(open_ids + t.ids),
                              parent_key=t.calls[-1].key if t.calls else None, step=step)
                         for t, p in zip(live, params)]
                for t, [r] in zip(live, layer.generate(calls)):
                    if r is None:
                        raise RuntimeError("a budget-forcing call was left to another shard")
                    t.calls.append(r)
                    ids = list(r.token_ids) if r.token_ids is not None else list(layer.tokenize(r.text))
                    t.ids += ids
                    t.text += r.text
                    if r.stop_reason in (STOP_EOS, STOP_TOKEN):
                        if t.extensions < s.max_extensions:
                            if b - len(t.ids) > len(wait_ids):
                                self._extend(t, wait_ids, s.extend_with)
                            else:
                                t.pending_wait = True
                        else:
                            t.ended = True
            for t in traces:
                snapshots[b].append(t.snapshot())
        # One forced-answer call per (sample, budget); equal prefixes share a key.
        answer_params = self.params(max_tokens=int(s.answer_max_tokens))
        entries, calls = [], []
        for b in budgets:
            for t, (ids, text, tcalls, ext_tokens) in zip(traces, snapshots[b]):
                prefix_text = s.think_open + text + (s.think_close or "") + s.answer_cue
                prefix_ids = tuple(open_ids + list(ids) + close_ids + cue_ids)
                calls.append(Call(t.problem.id, t.problem.messages, answer_params, indices=(t.index,),
                                  prefix=prefix_text, prefix_ids=prefix_ids,
                                  parent_key=tcalls[-1].key if tcalls else None, step=step + 1))
                entries.append((b, t, len(ids), tcalls, ext_tokens, prefix_text))
        out = []
        for (b, t, thinking, tcalls, ext_tokens, prefix_text), [r] in zip(entries, layer.generate(calls)):
            out.append(Trajectory(
                t.problem.id, t.index, b, tcalls + [r], prefix_text + r.text, main=(b == budgets[-1]),
                phase_tokens={"thinking": thinking, "answer": r.completion_tokens,
                              "extension": ext_tokens}))
        return out

    @staticmethod
    def _extend(t: _Trace, wait_ids: list[int], wait_text: str) -> None:
        t.ids += wait_ids
        t.text += wait_text
        t.extensions += 1
        t.extension_tokens += len(wait_ids)
        t.pending_wait = False
