r"""Answer extraction: pull the final answer out of a model's text.

Extractors are registered by name and stored by name in every grading record,
so a grade can be traced to the rule that produced it::

    from tts_bench.grading import extract_answer, normalize_answer

    extract_answer(r"... so the answer is $\boxed{\dfrac{1}{2}}$.", "boxed")  # '\dfrac{1}{2}'
    normalize_answer(r"\dfrac{1}{2}")                                          # '\frac{1}{2}'

Every extractor is a pure function ``text -> str | None``; ``None`` means the
text holds no answer. ``normalize_answer`` maps surface variants of one answer
("0.50", ".5", "$0.5$") to one string: samples are graded once per distinct
normalized answer, so the normalization must never merge two answers that
mean different things. It only removes presentation (delimiters, spacing,
``\left``/``\right``, text wrappers, units after a number) and writes plain
numbers in one canonical decimal form.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Extractor = Callable[[str], "str | None"]

_EXTRACTORS: dict[str, Extractor] = {}


def extractor(name: str) -> Callable[[Extractor], Extractor]:
    """Register ``fn(text) -> str | None`` under ``name``."""

    def register(fn: Extractor) -> Extractor:
        if name in _EXTRACTORS:
            raise ValueError(f"extractor {name!r} is already registered")
        _EXTRACTORS[name] = fn
        return fn

    return register


def get_extractor(name: str) -> Extractor:
    try:
        return _EXTRACTORS[name]
    except KeyError:
        known = ", ".join(sorted(_EXTRACTORS))
        raise KeyError(f"unknown extractor {name!r}; known: {known}") from None


def list_extractors() -> list[str]:
    return sorted(_EXTRACTORS)


def extract_answer(text: str | None, name: str = "boxed") -> str | None:
    """Run the extractor ``name`` on ``text``; ``None`` for missing text."""
    if not isinstance(text, str):
        return None
    return get_extractor(name)(text)


# --------------------------------------------------------------------------- pieces

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
# A plain number: optional sign, thousands groups or digits, optional decimals.
# The look-behind keeps digits inside identifiers ("x2") and the minus of a
# subtraction ("3-5") out.
_NUMBER_RE = re.compile(
    r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])"
    r"|(?<![\w.])[-−]?\.\d+"
)
_WHOLE_NUMBER_RE = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[-+−]?\.\d+")
_ANSWER_IS_RE = re.compile(r"(?:final\s+answer|answer)\s*(?:is\b\s*:?|:)\s*", re.IGNORECASE)
_MARKDOWN_RE = re.compile(r"\*\*|__")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_MAX_INLINE_ANSWER = 200  # longer "answer is ..." captures are prose, not an answer


def _balanced(text: str, start: int) -> str | None:
    """The text from ``start`` up to the brace closing an already-open ``{``.

    ``\\{`` and ``\\}`` are escaped braces and do not count. ``None`` when the
    braces never balance (a truncated generation).
    """
    depth = 1
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` or ``\fbox{...}``.

    A box whose braces never close, or an empty box, is skipped in favour of
    the one before it. ``\boxed 5`` (no braces) is read up to the next space.
    """
    for m in reversed(list(_BOX_RE.finditer(text))):
        end = m.end()
        if end < len(text) and text[end] == "{":
            content = _balanced(text, end + 1)
        elif end > m.start() + len(r"\boxed") and end < len(text):
            # "\boxed 5": a bare token after whitespace
            token = re.match(r"[^\s$]+", text[end:])
            content = token.group(0) if token else None
        else:
            content = None
        if content is not None and content.strip():
            return content.strip()
    return None


def _strip_inline_math(s: str) -> str:
    r"""The answer at the start of ``s``: inside $...$ / \(...\) when so delimited."""
    s = s.strip()
    for open_, close in (("$$", "$$"), ("$", "$"), (r"\(", r"\)"), (r"\[", r"\]")):
        if s.startswith(open_):
            end = s.find(close, len(open_))
            if end != -1:
                return s[len(open_) : end].strip()
            return s[len(open_) :].strip()
    m = _SENTENCE_END_RE.search(s)
    if m:
        s = s[: m.start()]
    return s.strip().rstrip(".,;:").strip()


def answer_is(text: str) -> str | None:
    """What follows the last "answer is" / "Final Answer:" on its line."""
    plain = _MARKDOWN_RE.sub("", text)
    for m in reversed(list(_ANSWER_IS_RE.finditer(plain))):
        line = plain[m.end() :].split("\n", 1)[0]
        candidate = _strip_inline_math(line)
        if candidate and len(candidate) <= _MAX_INLINE_ANSWER:
            return candidate
    return None


def last_number(text: str) -> str | None:
    """The last plain number in ``text``, as written (commas kept)."""
    matches = list(_NUMBER_RE.finditer(text))
    return matches[-1].group(0) if matches else None


def canonical_number(s: str) -> str | None:
    """Canonical decimal form of a plain number, or ``None`` if ``s`` is not one.

    "1,000" -> "1000", "0.50" -> "0.5", ".5" -> "0.5", "-0" -> "0", "+3." -> "3".
    Thousands separators are only accepted in groups of three, so "1,2" (a
    list) is not a number.
    """
    s = s.strip().replace("−", "-").replace("{,}", ",")
    if not _WHOLE_NUMBER_RE.fullmatch(s):
        return None
    sign = "-" if s.startswith("-") else ""
    digits = s.lstrip("+-").replace(",", "")
    whole, _, frac = digits.partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    out = f"{whole}.{frac}" if frac else whole
    return "0" if out == "0" else sign + out


_FRAC_RE = re.compile(r"^(-?)\\frac\s*(?:\{\s*(-?\d+)\s*\}|(\d))\s*(?:\{\s*(-?\d+)\s*\}|(\d))$")
_SLASH_RE = re.compile(r"^(-?\d+)\s*/\s*(-?\d+)$")


def vote_class(norm: str) -> str:
    """The class an answer votes in: equal numbers are one class, whatever their form.

    "0.5", "1/2", "\\frac{1}{2}" and "\\frac12" all vote as "1/2"; "4.0" and "4"
    as "4". Non-numeric answers keep their normalized text (two symbolic
    forms of one expression stay apart: a documented limit). Used for every
    answer, so majority vote counts wrong answers that agree as one, as it
    does right ones.
    """
    from fractions import Fraction

    value = None
    num = canonical_number(norm)
    if num is not None:
        value = Fraction(num)
    else:
        m = _FRAC_RE.match(norm.replace(" ", ""))
        if m:
            p, q = int(m.group(2) or m.group(3)), int(m.group(4) or m.group(5))
            if q != 0:
                value = Fraction(p, q) * (-1 if m.group(1) else 1)
        else:
            m = _SLASH_RE.match(norm)
            if m and int(m.group(2)) != 0:
                value = Fraction(int(m.group(1)), int(m.group(2)))
    if value is None:
        return norm
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


# --------------------------------------------------------------------------- normalize

_TEXT_WRAPPER_RE = re.compile(
    r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm)\s*\{([^{}]*)\}"
)
# A unit after a number: "5.4\text{ cents}", "15\mbox{ cm}^2", "\frac{270}7\text{ degrees}".
_TRAILING_UNIT_RE = re.compile(
    r"(?<=[\d}])\s*\\(?:text|mbox|mathrm|textrm)\s*\{\s*[A-Za-z]+(?:\s+[A-Za-z]+){0,2}\s*\}"
    r"(?:\^\{?[23]\}?)?\s*$"
)
_DEGREES_RE = re.compile(r"^(.*?)\s*(?:\^\s*\{?\s*\\circ\s*\}?|°)$")
# Each pattern first matches a LaTeX row break (two backslashes) and keeps it, so
# the second backslash of a row break followed by a space is never taken for "\ ".
_SPACING_CMD_RE = re.compile(r"\\\\|\\(?:quad|qquad)(?![A-Za-z])|\\[,;:! ]")
_LEFT_RIGHT_RE = re.compile(r"\\\\|\\(?:left|right)(?:\.|(?![A-Za-z]))")


def _sub_keeping_row_breaks(pattern: re.Pattern, repl: str, s: str) -> str:
    return pattern.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else repl, s)


_SPACE_RE = re.compile(r"(\\[A-Za-z]+)?\s+(?=([A-Za-z])?)")


def _drop_space(m: re.Match) -> str:
    # "\pi r" must keep its space: "\pir" would be another command.
    cmd, next_letter = m.group(1), m.group(2)
    if cmd and next_letter:
        return cmd + " "
    return cmd or ""


def _strip_outer(s: str, open_: str, close: str) -> str:
    while s.startswith(open_) and s.endswith(close) and len(s) >= len(open_) + len(close):
        inner = s[len(open_) : len(s) - len(close)]
        if open_ == "{" and _balanced(inner + "}", 0) != inner:
            break  # "{a}+{b}": the outer braces do not enclose the whole
        s = inner.strip()
    return s


def normalize_answer(s: str | None) -> str:
    """Canonical string for an answer; equal strings mean the same answer.

    Removes ``$`` and ``\\( \\)`` delimiters, whitespace (but not the space
    that ends a command: ``\\pi r``), ``\\left``/``\\right``, ``\\!``-style
    spacing, a trailing period, ``\\text{}``-style wrappers, a unit written in
    text after a number, ``^\\circ`` after a plain number; maps
    ``\\dfrac``/``\\tfrac`` to ``\\frac`` and plain numbers to
    :func:`canonical_number`. ``None`` gives ``""``.
    """
    if s is None:
        return ""
    s = s.strip().replace("−", "-")
    s = s.replace("\\$", "").replace("$", "")  # currency "\$18" and math delimiters
    s = _strip_outer(s.strip(), r"\(", r"\)")
    s = _strip_outer(s, r"\[", r"\]")
    s = _sub_keeping_row_breaks(_LEFT_RIGHT_RE, "", s)
    s = _sub_keeping_row_breaks(_SPACING_CMD_RE, " ", s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\displaystyle(?![A-Za-z])", "", s)
    s = s.replace(r"\%", "%")
    s = s.strip()
    s = re.sub(r"(?<!\.)\.$", "", s).strip()  # "5." -> "5", "1,2,..." kept
    s = _TRAILING_UNIT_RE.sub("", s)
    while True:
        unwrapped = _TEXT_WRAPPER_RE.sub(lambda m: m.group(1), s)
        if unwrapped == s:
            break
        s = unwrapped
    s = _SPACE_RE.sub(_drop_space, s.strip())
    s = _strip_outer(s, "{", "}")
    s = re.sub(r"(?<!\.)\.$", "", s)
    degrees = _DEGREES_RE.match(s)
    if degrees and canonical_number(degrees.group(1)) is not None:
        s = degrees.group(1)
    number = canonical_number(s)
    return number if number is not None else s


# --------------------------------------------------------------------------- extractors


@extractor("boxed")
def extract_boxed(text: str) -> str | None:
    r"""Last ``\boxed{}``/``\fbox{}``; else "answer is X"; else the last number."""
    return last_boxed(text) or answer_is(text) or last_number(text)


def _number_in(s: str | None) -> str | None:
    if not s:
        return None
    found = last_number(s.replace("{,}", ","))
    return canonical_number(found) if found else None


@extractor("gsm8k")
def extract_gsm8k(text: str) -> str | None:
    """GSM8K: "#### N", else a boxed number, else "answer is N", else the last number.

    Returns the number in canonical form ("1,000.0" -> "1000").
    """
    hashes = re.findall(r"####\s*([^\n]*)", text)
    for candidate in reversed(hashes):
        found = _number_in(candidate)
        if found:
            return found
    return _number_in(last_boxed(text)) or _number_in(answer_is(text)) or _number_in(text)


_CHOICE_BOX_RE = re.compile(r"^\(?([A-D])\)?$")
_CHOICE_ANSWER_RE = re.compile(
    r"(?i:answer)\s*(?:(?i:is)\b\s*:?|:)\s*(?:(?i:option|choice)\s*)?\(?([A-D])\)?(?![A-Za-z])"
)
_CHOICE_PAREN_RE = re.compile(r"\(([A-D])\)")
_CHOICE_LINE_RE = re.compile(r"^[ \t]*\(?([A-D])[).:]?[ \t]*$", re.MULTILINE)


@extractor("choice")
def extract_choice(text: str) -> str | None:
    """A multiple-choice letter A-D, upper case.

    In order: a boxed letter; the last "answer is (C)" / "Answer: C"; the
    later of the last "(C)" and the last line holding only a letter.
    """
    boxed = last_boxed(text)
    if boxed:
        letter = _CHOICE_BOX_RE.match(normalize_answer(boxed))
        if letter:
            return letter.group(1)
    plain = _MARKDOWN_RE.sub("", text).replace("$", "")
    plain = _TEXT_WRAPPER_RE.sub(lambda m: m.group(1), plain)
    stated = list(_CHOICE_ANSWER_RE.finditer(plain))
    if stated:
        return stated[-1].group(1)
    standalone = list(_CHOICE_PAREN_RE.finditer(plain)) + list(_CHOICE_LINE_RE.finditer(plain))
    if standalone:
        return max(standalone, key=lambda m: m.start()).group(1)
    return None


@extractor("number")
def extract_number(text: str) -> str | None:
    """The last plain number in canonical form ("-1,234.50" -> "-1234.5")."""
    found = last_number(text)
    return canonical_number(found) if found else None
