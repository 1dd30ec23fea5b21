r"""Graders: decide whether one extracted answer matches the gold answer.

A grader is a pure function ``(gold, answer) -> bool`` registered by name
with a version string; the name and version go into every grade record and
into the grade cache key, so changing a grader's behaviour means bumping its
version::

    @grader("exact", version="1")
    def grade_exact(gold: str, answer: str) -> bool: ...

    get_grader("math")(r"\frac{1}{2}", "0.5")   # True

``answer`` is the *normalized* extracted answer (see
``tts_bench.grading.extract.normalize_answer``): samples are graded once per
distinct normalized answer. Model output is only ever parsed, never executed
or evaluated as code.

Graders run inside the worker processes of ``tts_bench.grading.pool``, which
enforce a per-item timeout by killing the worker; they must not install
timeouts of their own.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from tts_bench.grading.extract import normalize_answer

GradeFn = Callable[[str, str], bool]
_UNESCAPED_DOLLAR_RE = re.compile(r"(?<!\\)\$")


@dataclass(frozen=True)
class Grader:
    """A registered grader: its name, version and function."""

    name: str
    version: str
    fn: GradeFn
    # A (gold, answer) pair a fresh worker grades once before taking work, so
    # one-off start-up costs (parser tables, lazy imports) are not charged to
    # the first item's timeout.
    warmup: tuple[str, str] | None = None

    def __call__(self, gold: str, answer: str) -> bool:
        return bool(self.fn(gold, answer))


_GRADERS: dict[str, Grader] = {}


def grader(
    name: str, *, version: str, warmup: tuple[str, str] | None = None
) -> Callable[[GradeFn], GradeFn]:
    """Register ``fn(gold, answer) -> bool`` under ``name`` at ``version``.

    Names starting with ``_`` are private (test fixtures): they are reachable
    by name but not listed.
    """

    def register(fn: GradeFn) -> GradeFn:
        if name in _GRADERS:
            raise ValueError(f"grader {name!r} is already registered")
        _GRADERS[name] = Grader(name=name, version=version, fn=fn, warmup=warmup)
        return fn

    return register


def get_grader(name: str) -> Grader:
    try:
        return _GRADERS[name]
    except KeyError:
        known = ", ".join(list_graders())
        raise KeyError(f"unknown grader {name!r}; known: {known}") from None


def list_graders() -> list[str]:
    """Public grader names (private ``_``-names are left out)."""
    return sorted(n for n in _GRADERS if not n.startswith("_"))


# --------------------------------------------------------------------------- math


def _math_verify_version() -> str:
    try:
        return metadata.version("math-verify")
    except metadata.PackageNotFoundError:
        return "missing"


class _DropTimeoutDisabledNotice(logging.Filter):
    """math-verify warns once per process that its timeouts are off; ours are on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _logger_name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_logger_name).addFilter(_DropTimeoutDisabledNotice())


@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> list:
    from math_verify import parse

    # parsing_timeout=None: math-verify's own timeout uses SIGALRM and turns a
    # hang into a silent "wrong"; the pool's per-item timeout reports it instead.
    delimited = _UNESCAPED_DOLLAR_RE.search(gold) or "\\boxed" in gold
    parsed = parse(gold if delimited else f"${gold}$", parsing_timeout=None)
    if not parsed:  # e.g. "\$32,\!348": try it without the presentation
        normalized = normalize_answer(gold)
        if normalized and normalized != gold:
            parsed = parse(f"${normalized}$", parsing_timeout=None)
    return parsed


@grader("math", version=f"2/math-verify-{_math_verify_version()}", warmup=(r"\frac{1}{2}", "0.5"))
def grade_math(gold: str, answer: str) -> bool:
    r"""Mathematical equivalence with math-verify.

    The gold is parsed as LaTeX (wrapped in ``$...$`` when it has no
    delimiters), the answer as ``\boxed{answer}``. Equal normalized strings
    are equal without parsing. A gold math-verify cannot parse is tried again
    in its normalized form (``\$32,\!348`` -> ``32348``); if that fails too,
    only the string equality can match.
    """
    from math_verify import parse, verify

    if normalize_answer(gold) == normalize_answer(answer):
        return True
    gold_parsed = _parse_gold(gold)
    if not gold_parsed:
        return False
    pred = parse(f"\\boxed{{{answer}}}", parsing_timeout=None)
    if not pred:
        return False
    return bool(verify(gold_parsed, pred, timeout_seconds=None))


# --------------------------------------------------------------------------- others


def _choice_letter(s: str) -> str:
    s = normalize_answer(s).strip("()").strip()
    return s.upper() if len(s) == 1 else s


@grader("choice", version="2")
def grade_choice(gold: str, answer: str) -> bool:
    """Multiple choice: the same letter ("(C)", "C" and "\\text{C}" agree)."""
    letter = _choice_letter(answer)
    return bool(letter) and letter == _choice_letter(gold)


@grader("exact", version="2")
def grade_exact(gold: str, answer: str) -> bool:
    """String equality after ``normalize_answer`` on both sides."""
    normalized = normalize_answer(answer)
    return bool(normalized) and normalized == normalize_answer(gold)


# --------------------------------------------------------------------------- test fixtures
# Graders that misbehave on purpose, for the pool's tests. Private names: no
# configuration lists them, and they only misbehave on their trigger answer.


@grader("_test_sleep", version="test")
def _grade_test_sleep(gold: str, answer: str) -> bool:
    """Hangs on the answer "HANG"; otherwise exact."""
    if answer == "HANG":
        time.sleep(3600)
    return grade_exact(gold, answer)


@grader("_test_crash", version="test")
def _grade_test_crash(gold: str, answer: str) -> bool:
    """Exits its process on "CRASH", segfaults on "SEGV", raises on "RAISE"; otherwise exact."""
    if answer == "CRASH":
        os._exit(70)
    if answer == "SEGV":
        os.kill(os.getpid(), signal.SIGSEGV)
    if answer == "RAISE":
        raise RuntimeError("grader failure on purpose")
    return grade_exact(gold, answer)
