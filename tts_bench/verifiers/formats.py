"""Reward-model input formats, held as data (``RewardFormatConfig``), not as code branches.

A format says how a (question, steps) pair becomes what the model reads and
where each step's score is read:

* ``template=chat``: [system], user = question, assistant = the steps, each
  followed by ``step_suffix`` and joined by ``step_join`` (Qwen2.5-Math-PRM:
  suffix ``<extra_0>``), rendered with the model's chat template;
* ``template=plain``: ``plain_template`` filled with the question and the
  joined steps (Math-Shepherd: ``"{question} {solution}"``, suffix ``" ки"``,
  join ``"\\n"``);
* ``template=turns``: every step a user turn (the first after the question
  and ``first_step_prefix``), the assistant replying ``turn_reply`` (RLHFlow).

``score_at`` picks the positions: the token that ends each step's suffix
(``separator``), the last token before each assistant reply (``turn``), or
the last token (``last``). ``readout`` turns the model's output there into a
score (see :func:`readout`).

    layout = layout_input(fmt, tokenizer, question, steps, max_length)
    layout.ids, layout.positions          # token ids; one position per scored step
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .base import VerifierError


@dataclass(frozen=True)
class Layout:
    """One solution as the reward model reads it."""

    ids: list[int]
    positions: list[int]  # token index read for each step, in step order
    truncated: bool  # the input was cut at max_length (late steps have no position)


def joined_solution(fmt, steps: Sequence[str]) -> tuple[str, list[int]]:
    """The steps with suffixes and joins, and the char offset just past each step's suffix."""
    out, ends, pos = [], [], 0
    for i, step in enumerate(steps):
        piece = (fmt.step_join if i else "") + step + fmt.step_suffix
        out.append(piece)
        pos += len(piece)
        ends.append(pos)
    return "".join(out), ends


def chat_messages(fmt, question: str, solution: str) -> list[dict]:
    msgs = [{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else []
    return msgs + [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]


def turn_messages(fmt, question: str, steps: Sequence[str]) -> list[dict]:
    msgs = [{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else []
    for i, step in enumerate(steps):
        content = (question + fmt.first_step_prefix + step) if i == 0 else step
        msgs.append({"role": "user", "content": content})
        msgs.append({"role": "assistant", "content": fmt.turn_reply})
    return msgs


def render_text(fmt, tokenizer, question: str, steps: Sequence[str]) -> tuple[str, list[int]]:
    """The input text (chat or plain) and the char offset past each step's suffix in it."""
    solution, ends = joined_solution(fmt, steps)
    if fmt.template == "plain":
        head, _, tail = fmt.plain_template.partition("{solution}")
        head = head.replace("{question}", question)
        text = head + solution + tail.replace("{question}", question)
        return text, [len(head) + e for e in ends]
    text = _apply_template(tokenizer, chat_messages(fmt, question, solution), generation_prompt=False)
    start = text.rfind(solution)
    if start < 0:
        raise VerifierError("the reward model's chat template changed the solution text, so step "
                            "boundaries cannot be found; use template=plain with that model")
    return text, [start + e for e in ends]


def layout_input(fmt, tokenizer, question: str, steps: Sequence[str], max_length: int) -> Layout:
    """Token ids and scored positions of one solution under ``fmt``."""
    if fmt.template == "turns":
        return _layout_turns(fmt, tokenizer, question, steps, max_length)
    text, ends = render_text(fmt, tokenizer, question, steps)
    enc = tokenizer(text, add_special_tokens=_adds_bos(fmt, tokenizer), return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    if fmt.score_at == "last":
        positions = [len(ids) - 1]
    else:
        positions = [_token_at(offsets, end - 1) for end in ends]
    return _cut(ids, positions, max_length)


def _layout_turns(fmt, tokenizer, question: str, steps: Sequence[str], max_length: int) -> Layout:
    msgs = turn_messages(fmt, question, steps)
    ids = _encode_chat(tokenizer, msgs, generation_prompt=False)
    positions = []
    for i in range(len(steps)):
        head = _encode_chat(tokenizer, msgs[: len(msgs) - 2 * (len(steps) - i) + 1], generation_prompt=True)
        if ids[: len(head)] != head:
            raise VerifierError("the reward model's chat template does not render a conversation's "
                                "turns as a prefix of the whole; template=turns cannot find the steps")
        positions.append(len(head) - 1)
    return _cut(ids, positions, max_length)


def _cut(ids: list[int], positions: list[int], max_length: int) -> Layout:
    if len(ids) <= max_length:
        return Layout(ids, positions, False)
    return Layout(ids[:max_length], [p for p in positions if p < max_length], True)


def _token_at(offsets: list[tuple[int, int]], char: int) -> int:
    """Index of the token whose span covers ``char`` (the last one starting at or before it)."""
    best = None
    for i, (a, b) in enumerate(offsets):
        if a <= char < b:
            return i
        if a <= char and b > a:
            best = i
    if best is None:
        raise VerifierError(f"no token covers character {char} of the reward model's input")
    return best


def _adds_bos(fmt, tokenizer) -> bool:
    # A rendered chat already has its special tokens; plain text gets the tokenizer's own (BOS).
    return fmt.template == "plain"


def _apply_template(tokenizer, messages: list[dict], *, generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise VerifierError("the reward model's tokenizer has no chat template; use template=plain")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _encode_chat(tokenizer, messages: list[dict], *, generation_prompt: bool) -> list[int]:
    text = _apply_template(tokenizer, messages, generation_prompt=generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def readout(fmt, row: Sequence[float]) -> float:
    """A step's score from the model's output at its position (a list of floats).

    class_prob: softmax over the head, column ``positive_index``; token_pair:
    ``row`` is (positive token's logit, negative token's logit), the score
    P(positive) in their softmax; sigmoid: sigmoid of output 0; raw: output
    ``positive_index`` as it is.
    """
    if fmt.readout == "class_prob":
        m = max(row)
        exps = [math.exp(x - m) for x in row]
        return exps[fmt.positive_index] / sum(exps)
    if fmt.readout == "token_pair":
        return 1.0 / (1.0 + math.exp(row[1] - row[0]))
    if fmt.readout == "sigmoid":
        return 1.0 / (1.0 + math.exp(-row[0]))
    return float(row[fmt.positive_index])
