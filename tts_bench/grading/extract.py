r"""Answer extraction: pull the final answer out of a model's text.

Extractors are registered by name and stored by name in every grading record,
so a grade can be traced to the rule that produced it::

    from tts_bench.grading import extract_answer, normalize_answer

    extract_answer(r"... so the answer is $\boxed{\dfrac{1}{2}}$.", "boxed")  # '\dfrac{1}{2}'
    extract_answer(r"\boxed{(2,2)} and \boxed{(6,2)}", "boxed")               # '(2,2), (6,2)'
    extract_answer("Final Answer: The largest $n$ is 34.", "boxed")            # '34'
    normalize_answer(r"\dfrac{1}{2}")                                          # '\frac{1}{2}'

Every extractor is a pure function ``text -> str | None``; ``None`` means the
text holds no answer. Each reads only the answer part of a generation (after
``</think>``, see :func:`final_text`). The math extractor returns LaTeX for
math-verify to read (a list of several boxed answers, a math span, a number),
never the sentence around it; its order of preference follows math-verify's
own (boxes and a later final-answer statement, then "answer is", then
whatever is written last), so tts-bench and math-verify read one text alike.

``normalize_answer`` maps surface variants of one answer ("0.50", ".5",
"$0.5$") to one string: samples are graded once per distinct normalized
answer, so the normalization must never merge two answers that mean
different things ("32, 349" is a list, "32,349" a number). It only removes
presentation (delimiters, spacing, ``\left``/``\right``, text wrappers, units
and a percent sign after a number) and writes plain numbers in one canonical
decimal form.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from typing import NamedTuple

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
# subtraction ("3-5") out. A thousands group is a comma and exactly three
# digits with no space: "32, 349" is two numbers.
_NUMBER_RE = re.compile(
    r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d])"
    r"|(?<![\w.])[-−]?\.\d+"
)
# A plain fraction written in prose ("is 2/3."): the only operator read outside math.
_PLAIN_FRACTION_RE = re.compile(r"(?<![\w./])-?\d+\s*/\s*\d+(?![\d/])")
_BARE_FRAC_RE = re.compile(r"(?<![\w\\{])-?\\[dtc]?frac\{-?\d+(?:\.\d+)?\}\{-?\d+(?:\.\d+)?\}")
_WHOLE_NUMBER_RE = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[-+−]?\.\d+")
# Math as written in text: display $$..$$ and \[..\] may span lines; inline $..$
# and \(..\) may not. A "$" right after a digit or a backslash is currency.
_MATH_OPEN_RE = re.compile(r"(?<!\\)(?:\$\$|\\\[|\\\()|(?<![\\\d$])\$")
_MATH_CLOSE = {"$$": "$$", "\\[": "\\]", "\\(": "\\)", "$": "$"}
_BRACE_RE = re.compile(r"\\.|[{}]", re.DOTALL)
_BARE_TOKEN_RE = re.compile(r"[^\s$]+")
# Two plain words in a row outside commands: a "$...$" pair that is prose between
# two currency signs ("$5 and then $7"), not math.
_PROSE_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}\s+[A-Za-z]{2,}(?![A-Za-z])")
# What may stand between several answers that form one list: spacing, commas,
# "and"/"or", math delimiters, and an equation label ("\( y_2 = \boxed{..} \)").
_CONNECTOR_RE = re.compile(
    r"(?:\s|[,;]|\b(?:and|or)\b|\\(?:quad|qquad|[,;: !])(?![A-Za-z])"
    r"|\\(?:text|mbox|mathrm)\s*\{\s*(?:,|and|or)?\s*\}|\$|\\[()\[\]]|\\\\"
    r"|[A-Za-z](?:_\{?\w+\}?)?\s*=)*"
)
# "Final Answer: ...", "The final answer is ...", "the final answers to (a) are: ..."
_FINAL_ANSWER_RE = re.compile(
    r"final\s+answers?(?:\s*:|[^\n.:]{0,60}?\b(?:is|are)\b\s*:?)", re.IGNORECASE
)
_ANSWER_RE = re.compile(r"\banswers?(?:\s*:|[^\n.:]{0,40}?\b(?:is|are)\b\s*:?)", re.IGNORECASE)
# Where a stated answer ends: a full stop, a line break, or "I hope it is correct".
_STATEMENT_END_RE = re.compile(r"\.(?=\s|$)|\n|\bI hope\b")
_STATEMENT_WINDOW = 600  # characters after "answer is" that can hold the answer
_MAX_PLAIN_ANSWER = 60  # a longer statement without math or a number is prose


class _Span(NamedTuple):
    start: int
    end: int
    content: str


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


def final_text(text: str) -> str:
    """The part of a generation that holds its answer: after the last ``</think>``.

    A reasoning model answers after its thinking, and boxes it tried out while
    thinking are not its answer. A ``<think>`` never closed means the
    generation stopped while thinking: there is no answer part (``""``).
    """
    close = text.rfind("</think>")
    if close != -1:
        return text[close + len("</think>") :]
    return "" if "<think>" in text else text


def _closing_braces(text: str, start: int) -> dict[int, int]:
    """Where each ``{`` from ``start`` on is closed: one pass, so a text full of
    unclosed boxes costs its length, not its length times its boxes."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for m in _BRACE_RE.finditer(text, start):
        c = m.group()
        if c == "{":
            stack.append(m.start())
        elif c == "}" and stack:
            pairs[stack.pop()] = m.start()
    return pairs


def _boxes(text: str) -> list[_Span]:
    r"""Every complete, non-empty ``\boxed{...}``/``\fbox{...}``, in order.

    A box whose braces never close (a truncated generation) or an empty box is
    skipped; ``\boxed 5`` (no braces) is read up to the next space.
    """
    found = list(_BOX_RE.finditer(text))
    if not found:
        return []
    pairs = _closing_braces(text, found[0].start())
    out: list[_Span] = []
    for m in found:
        if out and m.start() < out[-1].end:
            continue  # a box inside the previous one
        end = m.end()
        content = None
        if end < len(text) and text[end] == "{":
            close = pairs.get(end)
            if close is not None:
                content, stop = text[end + 1 : close], close + 1
        elif end > m.start() + len(r"\boxed"):  # "\boxed 5": a bare token
            token = _BARE_TOKEN_RE.match(text, end)
            if token:
                content, stop = token.group(0), token.end()
        if content is not None and content.strip():
            out.append(_Span(m.start(), stop, content.strip()))
    return out


def _find_unescaped(text: str, token: str, start: int, stop: int) -> int:
    while True:
        j = text.find(token, start, stop)
        if j <= 0 or text[j - 1] != "\\":
            return j
        start = j + 1


def _math_spans(text: str) -> list[_Span]:
    """Every math span (``$..$``, ``$$..$$``, ``\\(..\\)``, ``\\[..\\]``) that holds math.

    Display spans may cross lines, inline ones may not. One left pass: an
    opener with no closer before its limit (the end of the text, or of the
    line) marks every later opener of its kind up to that limit as unclosed
    too, so unbalanced delimiters never make the scan quadratic.
    """
    out: list[_Span] = []
    unclosed: dict[str, int] = {}  # opener -> no closer of it before this position
    pos, n = 0, len(text)
    while True:
        m = _MATH_OPEN_RE.search(text, pos)
        if m is None:
            return out
        opener, begin = m.group(), m.end()
        stop = n
        if opener in ("$", "\\("):
            line_end = text.find("\n", begin)
            stop = n if line_end == -1 else line_end
        if unclosed.get(opener, -1) >= stop:
            pos = begin
            continue
        closer = _MATH_CLOSE[opener]
        end = _find_unescaped(text, closer, begin, stop)
        if end == -1:
            unclosed[opener] = stop
            pos = begin
            continue
        pos = end + len(closer)
        content = text[begin:end].strip()
        if not content:
            continue
        if opener == "$" and _PROSE_RE.search(_TEXT_WRAPPER_RE.sub(" ", content)):
            continue
        out.append(_Span(m.start(), pos, content))


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    found = None
    for found in pattern.finditer(text):  # noqa: B007 - the loop only runs to the last one
        pass
    return found


def _last_group(text: str, spans: list[_Span], boxes: bool = False) -> list[_Span]:
    """The last span with the spans before it that only connectors separate from it.

    With ``boxes``, boxes inside the same math span as the last box belong to
    it too, whatever stands between them (``$$\\boxed{a} \\text{ for (a) and }
    \\boxed{b}$$``).
    """
    if not spans:
        return []
    group = [spans[-1]]
    home: _Span | None = None
    looked = False
    for prev in reversed(spans[:-1]):
        if not _CONNECTOR_RE.fullmatch(text, prev.end, group[0].start):
            if boxes and not looked:  # only now worth finding the math spans
                looked = True
                last = spans[-1]
                home = next(
                    (w for w in _math_spans(text) if w.start <= last.start and last.end <= w.end),
                    None,
                )
            if home is None or prev.start < home.start:
                break
        group.insert(0, prev)
    return group


def _joined(group: list[_Span]) -> str:
    """Several answers as one list ("(2,2), (6,2)"); a repeated one counts once.

    An item's own trailing separator ("$-14,$ $-7,$") is the list's, not the item's.
    """
    if len(group) == 1:
        return group[0].content
    items = (s.content.rstrip(",; ") for s in group)
    return ", ".join(dict.fromkeys(item for item in items if item))


def _rightmost(text: str) -> str | None:
    """The answer written last: a math span (with the spans listed with it), a bare
    ``\\frac{a}{b}``, a plain fraction or a plain number, whichever ends last."""
    spans = _math_spans(text)
    best: tuple[int, int] | None = None
    answer = None
    if spans:
        group = _last_group(text, spans)
        best, answer = (group[-1].end, -group[0].start), _joined(group)
    for pattern in (_BARE_FRAC_RE, _PLAIN_FRACTION_RE, _NUMBER_RE):
        found = _last_match(pattern, text)
        if found is not None and (best is None or (found.end(), -found.start()) > best):
            best, answer = (found.end(), -found.start()), found.group(0)
    return answer


def _statement_answer(text: str, start: int) -> str | None:
    """The answer stated from ``start`` ("... is $x$. I hope"): its boxes, else what
    is written last before the statement ends, else a short plain answer ("Evelyn")."""
    window = text[start : start + _STATEMENT_WINDOW]
    boxes = _boxes(window)
    covered = [(s.start, s.end) for s in boxes + _math_spans(window)]
    cut = len(window)
    for m in _STATEMENT_END_RE.finditer(window):
        if m.start() > 0 and not any(a <= m.start() < b for a, b in covered):
            cut = m.start()
            break
    tail = window[:cut]
    boxes = [b for b in boxes if b.end <= cut]
    if boxes:
        return _joined(_last_group(tail, boxes, boxes=True))
    found = _rightmost(tail)
    if found is not None:
        return found
    plain = tail.strip().rstrip(".,;:").strip()
    return plain if plain and len(plain) <= _MAX_PLAIN_ANSWER else None


def _last_statement(text: str, pattern: re.Pattern, after: int = 0) -> str | None:
    """The answer of the last statement matching ``pattern`` (starting after
    ``after``) that states one."""
    for m in reversed(list(pattern.finditer(text, after))):
        answer = _statement_answer(text, m.end())
        if answer:
            return answer
    return None


def stated_answer(text: str) -> str | None:
    r"""The answer a text states: its final box(es), unless a later final-answer
    statement corrects them; else what follows "answer is"/"Answer:".

    Boxes listed together (``\boxed{1}, \boxed{2}``, ``\boxed{a} \quad\text{and}
    \quad \boxed{b}``) are one answer, a list: "1, 2". ``text`` is the answer
    part (see :func:`final_text`).
    """
    text = text.replace("**", "")
    group = _last_group(text, _boxes(text), boxes=True)
    if group:
        # only a statement begun after the box can correct it
        final = _last_statement(text, _FINAL_ANSWER_RE, after=group[0].start + 1)
        return final or _joined(group)
    return _last_statement(text, _FINAL_ANSWER_RE) or _last_statement(text, _ANSWER_RE)


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` or ``\fbox{...}``."""
    boxes = _boxes(text)
    return boxes[-1].content if boxes else None


def last_number(text: str) -> str | None:
    """The last plain number in ``text``, as written (commas kept)."""
    found = _last_match(_NUMBER_RE, text)
    return found.group(0) if found else None


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


def _number_value(norm: str):
    """The exact value of a plain number or numeric fraction ("0.5", "1/2", "\\frac12"), else None."""
    num = canonical_number(norm)
    if num is not None:
        return Fraction(num)
    m = _FRAC_RE.match(norm.replace(" ", ""))
    if m:
        p, q = int(m.group(2) or m.group(3)), int(m.group(4) or m.group(5))
        return Fraction(p, q) * (-1 if m.group(1) else 1) if q != 0 else None
    m = _SLASH_RE.match(norm)
    if m and int(m.group(2)) != 0:
        return Fraction(int(m.group(1)), int(m.group(2)))
    return None


def _value_text(value) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def vote_class(norm: str) -> str:
    """The class an answer votes in: equal numbers are one class, whatever their form.

    "0.5", "1/2", "\\frac{1}{2}" and "\\frac12" all vote as "1/2"; "4.0" and "4"
    as "4". A list of plain numbers votes as the set it is graded as: "3,1,2"
    and "1,2,3" as "{1, 2, 3}" (math-verify reads an unbracketed list as a
    set); "32, 349" as "{32, 349}", never with the number 32349. Other answers
    keep their normalized text (two symbolic forms of one expression stay
    apart: a documented limit). Used for every answer, so majority vote counts
    wrong answers that agree as one, as it does right ones.
    """
    value = _number_value(norm)
    if value is not None:
        return _value_text(value)
    if "," in norm:
        items = [_number_value(item) for item in norm.split(",")]
        if len(items) > 1 and None not in items:
            return "{" + ", ".join(_value_text(v) for v in sorted(set(items))) + "}"
    return norm


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
# "32,\\!349" and "32,\\! 349": a comma pulled tight to its digits is a thousands separator.
_THOUSANDS_NEG_SPACE_RE = re.compile(r"(?<=\d),\\!\s*(?=\d{3}(?![\d]))")
_LEFT_RIGHT_RE = re.compile(r"\\\\|\\(?:left|right)(?:\.|(?![A-Za-z]))")


def _sub_keeping_row_breaks(pattern: re.Pattern, repl: str, s: str) -> str:
    return pattern.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else repl, s)


_SPACE_RE = re.compile(r"(\\[A-Za-z]+)?\s+(?=([A-Za-z])?)")
# A comma, a space and exactly three digits: a list ("32, 349"), whose space must
# stay, since without it the comma would read as a thousands separator.
_LIST_OF_GROUP_RE = re.compile(r"\d{3}(?![\d.])")


def _drop_space(m: re.Match) -> str:
    # "\pi r" must keep its space: "\pir" would be another command.
    cmd, next_letter = m.group(1), m.group(2)
    if cmd and next_letter:
        return cmd + " "
    if not cmd and m.start() > 0 and m.string[m.start() - 1] == ",":
        if _LIST_OF_GROUP_RE.match(m.string, m.end()):
            return " "
    return cmd or ""


# A percent sign or word after the answer ("10\%", "28 percent"): presentation, as
# golds of "what percent" questions are plain numbers and math-verify reads "$10\%$" as 10.
_TRAILING_PERCENT_RE = re.compile(r"(?<=\S)\s*(?:%|\b(?:percent(?:age)?|pct)\b)\s*$", re.IGNORECASE)
# "6 and 8", "1, 2, and 3", "1 or -2": list items joined by a word, after a number
# or a closing bracket; the word becomes a comma so spacing cannot glue it on.
_AND_OR_RE = re.compile(r"(?<=[\d}\)\]])\s*,?\s+(?:and|or)\s+(?=[-+\w\\(\[{])")


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
    that ends a command, ``\\pi r``, nor the one in ``32, 349``, a list that
    would otherwise read as 32349), ``\\left``/``\\right``, ``\\!``-style
    spacing, a trailing period, ``\\text{}``-style wrappers, a unit written in
    text after a number, a trailing percent sign or word, ``^\\circ`` after a
    plain number; writes "and"/"or" between list items as a comma; maps
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
    s = _THOUSANDS_NEG_SPACE_RE.sub(",", s)
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
    s = _TRAILING_PERCENT_RE.sub("", s)
    s = _AND_OR_RE.sub(", ", s)
    s = _SPACE_RE.sub(_drop_space, s.strip())
    s = _strip_outer(s, "{", "}")
    s = re.sub(r"(?<!\.)\.$", "", s).rstrip(",;")  # "4," ends a sentence, not a list
    degrees = _DEGREES_RE.match(s)
    if degrees and canonical_number(degrees.group(1)) is not None:
        s = degrees.group(1)
    number = canonical_number(s)
    return number if number is not None else s


# --------------------------------------------------------------------------- extractors


@extractor("boxed")
def extract_boxed(text: str) -> str | None:
    r"""The final answer of a math solution, as LaTeX.

    Read from the answer part (after ``</think>``), in order: the last box, or
    the boxes listed with it, as one list (``\boxed{1}, \boxed{2}`` -> "1, 2"),
    unless a later "final answer is ..." statement corrects it; "answer is
    ..." / "Answer: ..."; else whatever is written last among math spans
    (``$x \geq 5$``, ``\[\begin{pmatrix}..\end{pmatrix}\]``), bare
    ``\frac{a}{b}``, plain fractions and plain numbers. A statement gives the
    answer in it (the last math or number before the sentence ends), not the
    sentence.
    """
    answer = final_text(text)
    return stated_answer(answer) or _rightmost(answer.replace("**", ""))


def _number_in(s: str | None) -> str | None:
    if not s:
        return None
    found = last_number(s.replace("{,}", ","))
    return canonical_number(found) if found else None


@extractor("gsm8k")
def extract_gsm8k(text: str) -> str | None:
    """GSM8K: "#### N", else the stated answer's number (box or "answer is N"), else
    the last number; all in the answer part (after ``</think>``).

    Returns the number in canonical form ("1,000.0" -> "1000").
    """
    text = final_text(text)
    hashes = re.findall(r"####\s*([^\n]*)", text)
    for candidate in reversed(hashes):
        found = _number_in(candidate)
        if found:
            return found
    return _number_in(stated_answer(text)) or _number_in(text)


_CHOICE_BOX_RE = re.compile(r"^\(?([A-D])\)?$")
# "answer is (C)", "Answer: C", "The correct option is B.", "correct choice: D"
_CHOICE_STATED_RE = re.compile(
    r"(?i:answer|option|choice)\s*(?:(?i:is)\b\s*:?|:)\s*(?:(?i:option|choice)\s*)?"
    r"\(?([A-D])\)?(?![A-Za-z])"
)
_CHOICE_PAREN_RE = re.compile(r"\(([A-D])\)")
_CHOICE_LINE_RE = re.compile(r"^[ \t]*\(?([A-D])[).:]?[ \t]*$", re.MULTILINE)
_MARKDOWN_RE = re.compile(r"\*\*|__")


@extractor("choice")
def extract_choice(text: str) -> str | None:
    """A multiple-choice letter A-D, upper case, from the answer part (after ``</think>``).

    In order: a boxed letter; the last "answer is (C)" / "Answer: C" / "the
    correct option is C"; the later of the last "(C)" and the last line
    holding only a letter ("**C**" included).
    """
    text = final_text(text)
    boxed = last_boxed(text)
    if boxed:
        letter = _CHOICE_BOX_RE.match(normalize_answer(boxed))
        if letter:
            return letter.group(1)
    plain = _MARKDOWN_RE.sub("", text).replace("$", "")
    plain = _TEXT_WRAPPER_RE.sub(lambda m: m.group(1), plain)
    stated = _last_match(_CHOICE_STATED_RE, plain)
    if stated is not None:
        return stated.group(1)
    standalone = list(_CHOICE_PAREN_RE.finditer(plain)) + list(_CHOICE_LINE_RE.finditer(plain))
    if standalone:
        return max(standalone, key=lambda m: m.start()).group(1)
    return None


@extractor("number")
def extract_number(text: str) -> str | None:
    """The last plain number of the answer part, in canonical form ("-1,234.50" -> "-1234.5")."""
    found = last_number(final_text(text))
    return canonical_number(found) if found else None
